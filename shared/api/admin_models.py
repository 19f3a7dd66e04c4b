"""Request and response bodies of the admin API: unknown fields are refused, not ignored,
and nothing is coerced (validated in strict mode from the JSON, see `ApiRequest.model`)."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from shared.domain.folder_rules import (
    EXCHANGE_ID_PATTERN,
    GUID_PATTERN,
    MAX_FOLDER_NAME,
    TABLE_PATTERN,
    FolderRule,
    problem_of,
)
from shared.domain.mailbox import (
    AutoCreate,
    Channel,
    DeliveryMethod,
    Mailbox,
    MailboxKind,
)
from shared.settings import TrackingOption

EMAIL_PATTERN = r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]+$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _whole_number(value: Any) -> Any:
    """A query string's number: plain ASCII digits only ("1e2", " 5", "+5", "٥" are not)."""
    if isinstance(value, str):
        if not (1 <= len(value) <= 6 and value.isascii() and value.isdigit()):
            raise ValueError("must be a whole number written in digits")
        return int(value)
    return value


QueryInt = Annotated[int, BeforeValidator(_whole_number)]

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")


def _rfc3339(value: Any) -> Any:
    """A date-time is written as one (RFC 3339, with its offset): "1767225600" is no date."""
    if isinstance(value, str):
        if not _RFC3339.fullmatch(value.upper()):
            raise ValueError("must be an RFC 3339 date-time with a time zone, e.g. "
                             "2026-01-01T00:00:00Z")
        return datetime.fromisoformat(value.upper())
    return value


DateTime = Annotated[datetime, BeforeValidator(_rfc3339)]


def bare_guid(value: str) -> str:
    """A GUID as Dataverse keys it: no braces, lower case."""
    return value.strip("{}").lower()


class AdminFolderRule(Strict):
    """A folder rule as the admin API writes it (the stored shape); checked against today's
    rules by `shared.domain.folder_rules` (allowed tables included) before it is stored."""

    folder_id: str = Field(..., pattern=EXCHANGE_ID_PATTERN,
                           description="Exchange id of the folder (REST/immutable form).")
    folder_name: str = Field("", max_length=MAX_FOLDER_NAME)
    regarding_table: str | None = Field(None, pattern=TABLE_PATTERN,
                                        description="One of REGARDING_TABLES.")
    regarding_id: str | None = Field(None, pattern=GUID_PATTERN)

    @field_validator("regarding_id")
    @classmethod
    def _bare(cls, value: str | None) -> str | None:
        return bare_guid(value) if value is not None else None

    def rule(self) -> FolderRule:
        return FolderRule(**self.model_dump())


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
    process_email_from: DateTime | None = None
    folder_rules: list[AdminFolderRule] | None = Field(None, max_length=25)

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
    page_size: QueryInt = Field(50, ge=1, le=500)
    continuation: str | None = Field(None, max_length=2048)


class AdminFolderRuleView(FolderRule):
    """A stored folder rule as the admin API shows it."""

    invalid: str | None = Field(None, description="Set on a rule stored before today's rules "
                                "that they refuse: why. The sync cycle skips it; replace it.")


class MailboxView(Mailbox):
    """What the admin API answers: the mailbox, each folder rule flagged when invalid."""

    folder_rules: list[AdminFolderRuleView] = Field(  # type: ignore[assignment]
        default_factory=list)


def mailbox_view(mailbox: Mailbox, regarding_tables: Collection[str]) -> dict[str, Any]:
    """What an admin sees: configuration, approval and each channel's status; a folder rule
    stored before today's rules that they refuse is flagged `invalid` (why), never a 500."""
    data = mailbox.model_dump(mode="json")
    data["next_due_at"] = mailbox.next_due_at.isoformat() if mailbox.next_due_at else None
    for view, rule in zip(data["folder_rules"], mailbox.folder_rules, strict=True):
        problem = problem_of(rule, regarding_tables)
        if problem is not None:
            view["invalid"] = str(problem)
    return data
