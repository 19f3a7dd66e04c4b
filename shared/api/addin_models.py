"""Request and response bodies of the Outlook add-in API.

Unknown fields are refused (400 naming the field), not ignored: should-track in particular must
never receive a body or anything beyond sender, recipients and subject, and refusing extra
fields is how we prove it does not. Nothing is coerced: bodies are validated in strict mode
from the JSON (see `ApiRequest.model`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from shared.api.admin_models import EMAIL_PATTERN, Strict, bare_guid
from shared.domain.folder_rules import (
    EXCHANGE_ID_PATTERN,
    GUID_PATTERN,
    MAX_FOLDER_NAME,
    TABLE_PATTERN,
    FolderRule,
)
from shared.domain.mailbox import AutoCreate
from shared.settings import TrackingOption

ItemType = Literal["message", "event"]
# Exchange ids are URL-safe base64 (immutable or regular); bounded so a key never overflows.
ITEM_ID_PATTERN = EXCHANGE_ID_PATTERN
MAX_ADDRESSES = 100


class RecordRef(Strict):
    """A CRM record: logical table name and id."""

    table: str = Field(..., pattern=TABLE_PATTERN, description="Logical table name, e.g. "
                       "`contact`; must be one of REGARDING_TABLES.")
    id: str = Field(..., pattern=GUID_PATTERN, description="The record's GUID.")

    @field_validator("id")
    @classmethod
    def _bare(cls, value: str) -> str:
        return bare_guid(value)


class ItemRequest(Strict):
    """An item of the caller's own mailbox, by its Exchange id (as Office.js gives it)."""

    item_id: str = Field(..., pattern=ITEM_ID_PATTERN,
                         description="Exchange item id (REST/immutable form).")
    item_type: ItemType = Field("message", description="`message` (email) or `event` "
                                "(appointment).")


class TrackRequest(ItemRequest):
    regarding: RecordRef | None = Field(None, description="Optional regarding record.")


class SetRegardingRequest(ItemRequest):
    regarding: RecordRef = Field(..., description="The new regarding record.")


class UntrackRequest(ItemRequest):
    pass


class StatusQuery(Strict):
    internet_message_id: str | None = Field(None, min_length=3, max_length=320,
                                            description="internetMessageId of an email.")
    ical_uid: str | None = Field(None, min_length=1, max_length=300,
                                 description="iCalUId of a meeting.")

    @model_validator(mode="after")
    def _one(self) -> StatusQuery:
        if (self.internet_message_id is None) == (self.ical_uid is None):
            raise ValueError("give internet_message_id or ical_uid (one of them)")
        return self


Address = str


class ShouldTrackRequest(Strict):
    """Only what Outlook may send to decide: sender, recipients, subject. Nothing else."""

    sender: str = Field(..., pattern=EMAIL_PATTERN, max_length=320)
    to: list[str] = Field(default_factory=list, max_length=MAX_ADDRESSES)
    cc: list[str] = Field(default_factory=list, max_length=MAX_ADDRESSES)
    subject: str = Field("", max_length=800)

    @field_validator("to", "cc")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        import re

        for value in values:
            if len(value) > 320 or not re.match(EMAIL_PATTERN, value):
                raise ValueError("every entry must be an email address")
        return values


class ShouldTrackResponse(BaseModel):
    track: bool
    reason: str = Field(..., description="Machine reason code.")
    explanation: str
    tracking_option: TrackingOption


class LookupRequest(Strict):
    addresses: list[str] = Field(..., min_length=1, max_length=MAX_ADDRESSES)

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        import re

        for value in values:
            if len(value) > 320 or not re.match(EMAIL_PATTERN, value):
                raise ValueError("every entry must be an email address")
        return values


class RecordView(BaseModel):
    """Only what the add-in needs: no company data beyond the record's name."""

    table: str
    id: str
    name: str | None = None


class LookupResult(BaseModel):
    address: str
    record: RecordView | None = Field(None, description="The record the address resolves to "
                                      "(Dynamics' order), or null.")
    matches: list[RecordView] = Field(default_factory=list)


class LookupResponse(BaseModel):
    results: list[LookupResult]


class TrackingStatus(BaseModel):
    """What every participant who is a user sees for a message or meeting."""

    key: str = Field(..., description="internetMessageId, or `ical:<iCalUId>` for meetings.")
    tracked: bool
    state: Literal["pending", "tracked", "untracked", "not_tracked"]
    activity_id: str | None = None
    activity_table: Literal["email", "appointment"] | None = None
    regarding: RecordView | None = None
    tracked_by: str | None = Field(None, description="Entra object id of the user who "
                                   "tracked it.")
    tracked_at: datetime | None = None


class ActionResponse(BaseModel):
    """The answer to track / set-regarding / untrack (also stored on the intent)."""

    intent_id: str
    state: Literal["done", "pending", "failed"]
    outcome: str | None = Field(None, description="track: `created` or `existing`; "
                                "untrack: `deleted` or `unlinked`; set-regarding: `updated`.")
    status: TrackingStatus | None = None


class IntentView(BaseModel):
    intent_id: str
    action: Literal["track", "set_regarding", "untrack"]
    state: Literal["pending", "done", "failed"]
    attempts: int
    result: dict[str, object] | None = None
    last_error: str | None = None
    reason: str | None = Field(None, description="Why a failed intent failed, when nobody "
                               "could finish it: `mailbox_not_enabled`.")
    created_at: datetime
    updated_at: datetime


class FolderRuleIn(Strict):
    """A folder rule as the add-in writes it; checked against today's rules by
    `shared.domain.folder_rules` (allowed tables included) before it is stored."""

    folder_id: str = Field(..., pattern=EXCHANGE_ID_PATTERN,
                           description="Exchange id of the folder (REST/immutable form).")
    folder_name: str = Field("", max_length=MAX_FOLDER_NAME)
    regarding: RecordRef | None = None

    def rule(self) -> FolderRule:
        regarding = self.regarding
        return FolderRule(folder_id=self.folder_id, folder_name=self.folder_name,
                          regarding_table=regarding.table if regarding else None,
                          regarding_id=regarding.id if regarding else None)


class RecordRefView(BaseModel):
    table: str
    id: str


class FolderRuleView(BaseModel):
    """A stored folder rule; `invalid` says why today's rules refuse one stored before them."""

    folder_id: str
    folder_name: str = ""
    regarding: RecordRefView | None = None
    invalid: str | None = Field(None, description="Set on a rule stored before today's rules "
                                "that they refuse: why. The sync cycle skips it; replace it.")


class MyOptions(BaseModel):
    tracking_option: TrackingOption
    auto_create_records: AutoCreate
    folder_rules: list[FolderRuleView]


class UpdateMyOptions(Strict):
    tracking_option: TrackingOption | None = None
    auto_create_records: AutoCreate | None = None
    folder_rules: list[FolderRuleIn] | None = Field(None, max_length=25)

    @model_validator(mode="after")
    def _something(self) -> UpdateMyOptions:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} may not be null")
        return self


__all__ = [
    "ActionResponse",
    "FolderRuleIn",
    "FolderRuleView",
    "IntentView",
    "ItemRequest",
    "LookupRequest",
    "LookupResponse",
    "LookupResult",
    "MyOptions",
    "RecordRef",
    "RecordView",
    "SetRegardingRequest",
    "ShouldTrackRequest",
    "ShouldTrackResponse",
    "StatusQuery",
    "TrackRequest",
    "TrackingStatus",
    "UntrackRequest",
    "UpdateMyOptions",
]
