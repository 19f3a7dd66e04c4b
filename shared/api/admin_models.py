"""Request and response bodies of the admin API; unknown fields are refused, not ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain.mailbox import (
    AutoCreate,
    Channel,
    DeliveryMethod,
    FolderRule,
    Mailbox,
    MailboxKind,
)
from shared.settings import TrackingOption

EMAIL_PATTERN = r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]+$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelsIn(Strict):
    incoming: DeliveryMethod | None = None
    outgoing: DeliveryMethod | None = None
    act: DeliveryMethod | None = None

    def as_map(self) -> dict[Channel, DeliveryMethod]:
        values = {Channel.INCOMING: self.incoming, Channel.OUTGOING: self.outgoing,
                  Channel.ACT: self.act}
        return {k: v for k, v in values.items() if v is not None}


class RegisterMailbox(Strict):
    owner_object_id: UUID | None = None
    email: str | None = Field(None, pattern=EMAIL_PATTERN, max_length=320)
    kind: MailboxKind = MailboxKind.USER
    channels: ChannelsIn = Field(default_factory=ChannelsIn)
    tracking_option: TrackingOption | None = None

    @model_validator(mode="after")
    def _one_identity(self) -> RegisterMailbox:
        if self.owner_object_id is None and self.email is None:
            raise ValueError("give owner_object_id or email")
        return self


class UpdateMailbox(Strict):
    channels: ChannelsIn | None = None
    tracking_option: TrackingOption | None = None
    auto_create_records: AutoCreate | None = None
    process_email_from: datetime | None = None
    folder_rules: list[FolderRule] | None = Field(None, max_length=25)

    @model_validator(mode="after")
    def _something(self) -> UpdateMailbox:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        if self.process_email_from is not None and self.process_email_from.tzinfo is None:
            raise ValueError("process_email_from must carry a time zone")
        return self


class DisableMailbox(Strict):
    reason: str = Field("disabled by an administrator", min_length=1, max_length=300)


class ImportMailboxes(Strict):
    business_unit_id: UUID | None = None
    all_active_users: bool = False

    @model_validator(mode="after")
    def _scope(self) -> ImportMailboxes:
        if (self.business_unit_id is None) == (not self.all_active_users):
            raise ValueError("give business_unit_id or all_active_users=true (one of them)")
        return self


class ListQuery(Strict):
    page_size: int = Field(50, ge=1, le=500)
    continuation: str | None = Field(None, max_length=2048)


def mailbox_view(mailbox: Mailbox) -> dict[str, Any]:
    """What an admin sees: configuration, approval and each channel's status."""
    data = mailbox.model_dump(mode="json")
    data["next_due_at"] = mailbox.next_due_at.isoformat() if mailbox.next_due_at else None
    return data
