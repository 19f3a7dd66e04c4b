"""One row per internetMessageId: the tracking state every participant's mailbox sees.

`claim` is a conditional insert, so when two mailboxes sync copies of the same message at the
same time exactly one of them creates the CRM activity; the other reads the winner's row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from .documents import TableRepository, pack, unpack
from .errors import AlreadyExists
from .keys import sha256_hex, utc

ROW = "message"
TrackState = Literal["pending", "tracked", "untracked"]


class Regarding(BaseModel):
    table: str
    id: str
    name: str | None = None


class TrackedMessage(BaseModel):
    internet_message_id: str
    state: TrackState = "pending"
    activity_id: str | None = None
    regarding: Regarding | None = None
    tracked_by: str | None = None  # Entra object id of the user who tracked it
    tracked_at: datetime | None = None
    claimed_by: str | None = None  # mailbox that is creating the activity
    claimed_at: datetime | None = None
    copies: dict[str, str | None] = Field(default_factory=dict)  # mailbox id -> item id


@dataclass(frozen=True)
class Claim:
    message: TrackedMessage
    etag: str
    won: bool  # True: this mailbox creates the activity; False: use message as it is


def _key(internet_message_id: str) -> str:
    return sha256_hex(internet_message_id)


class TrackedMessageRepository(TableRepository):
    table_name = "tracked"

    @staticmethod
    def _entity(message: TrackedMessage) -> dict[str, object]:
        return {
            "PartitionKey": _key(message.internet_message_id), "RowKey": ROW,
            "state": message.state, **pack(message),
        }

    async def get(self, internet_message_id: str) -> tuple[TrackedMessage, str] | None:
        entity = await self._get(_key(internet_message_id), ROW)
        if entity is None:
            return None
        return unpack(entity, TrackedMessage), entity.metadata["etag"]

    async def claim(
        self,
        internet_message_id: str,
        mailbox_id: str,
        now: datetime,
        item_id: str | None = None,
    ) -> Claim:
        """Create the pending row for this message, or return the row someone else created."""
        message = TrackedMessage(
            internet_message_id=internet_message_id, claimed_by=mailbox_id,
            claimed_at=utc(now), copies={mailbox_id: item_id},
        )
        try:
            etag = await self._create(self._entity(message))
            return Claim(message, etag, won=True)
        except AlreadyExists:
            pass
        existing = await self.get(internet_message_id)
        if existing is None:  # deleted between our create and read: try once more
            etag = await self._create(self._entity(message))
            return Claim(message, etag, won=True)
        return Claim(existing[0], existing[1], won=False)

    async def update(self, message: TrackedMessage, etag: str) -> str:
        """Replace if unchanged since read; ConcurrencyError otherwise."""
        return await self._replace(self._entity(message), etag)

    async def delete(self, internet_message_id: str, etag: str | None = None) -> None:
        await self._delete(_key(internet_message_id), ROW, etag)


__all__ = ["Claim", "Regarding", "TrackState", "TrackedMessage", "TrackedMessageRepository"]
