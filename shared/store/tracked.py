"""One row per internetMessageId: the tracking state every participant's mailbox sees.

`claim` is a conditional insert, so when two mailboxes sync copies of the same message at the
same time exactly one of them creates the CRM activity; the other reads the winner's row.

Layout, chosen so a sync cycle writes a whole delta page in a few batch transactions instead
of one request per message (each SDK request costs ~2 ms of CPU):
- PartitionKey: one of `BUCKETS` buckets of the message-id digest, RowKey: the digest. Point
  reads stay point reads; a page's rows fall into at most `BUCKETS` partitions, so they are
  written with at most `BUCKETS` transactions (of up to 100 rows each).
- Plain columns, not a JSON document, so a cycle can MERGE only what it knows (state, activity,
  regarding, its own copy) without reading the row and without overwriting who tracked it.
- Each participant's copy is its own column (`c_` + hex of the mailbox id), so two mailboxes
  recording their copies at once never overwrite each other.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from azure.core.exceptions import HttpResponseError
from azure.data.tables import UpdateMode
from pydantic import BaseModel, Field

from .documents import TableRepository
from .errors import AlreadyExists, ConcurrencyError
from .keys import sha256_hex, utc

log = logging.getLogger("sss.store")
TrackState = Literal["pending", "tracked", "untracked"]
BUCKETS = 4  # 4 partitions x 2,000 rows/s each: far above any tenant's tracking rate
COPY_PREFIX = "c_"
MAX_COPY_COLUMNS = 200  # an entity holds at most 252 properties of its own
MORE_COPIES = "more_copies"  # the rest, as JSON (one string property: 32K characters)
MORE_COPIES_CHARS = 30_000


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
    claim_intent: str | None = None  # the add-in intent that claimed it (its replays know)
    copies: dict[str, str | None] = Field(default_factory=dict)  # mailbox id -> item id


@dataclass(frozen=True)
class Claim:
    message: TrackedMessage
    etag: str
    won: bool  # True: this mailbox creates the activity; False: use message as it is


@dataclass(frozen=True)
class TrackedPatch:
    """What a sync cycle knows about a tracked message: merged in, never read first.

    `regarding` None leaves the stored regarding alone; `tracked_by` None leaves who tracked
    it alone (a cycle that only found the activity does not know)."""

    internet_message_id: str
    activity_id: str
    mailbox_id: str
    item_id: str | None
    regarding: Regarding | None = None
    tracked_by: str | None = None
    tracked_at: datetime | None = None


def row_keys(internet_message_id: str) -> tuple[str, str]:
    digest = sha256_hex(internet_message_id)
    return f"b{int(digest[0], 16) % BUCKETS}", digest


def copy_column(mailbox_id: str) -> str:
    return COPY_PREFIX + mailbox_id.encode("utf-8").hex()


def _regarding_columns(regarding: Regarding | None) -> dict[str, Any]:
    if regarding is None:
        return {}
    out = {"reg_table": regarding.table, "reg_id": regarding.id}
    if regarding.name is not None:
        out["reg_name"] = regarding.name
    return out


def _entity(message: TrackedMessage) -> dict[str, Any]:
    pk, rk = row_keys(message.internet_message_id)
    columns: dict[str, Any] = {
        "PartitionKey": pk, "RowKey": rk, "imid": message.internet_message_id,
        "state": message.state, "activity_id": message.activity_id,
        "tracked_by": message.tracked_by, "claimed_by": message.claimed_by,
        "claim_intent": message.claim_intent,
        "tracked_at": utc(message.tracked_at) if message.tracked_at else None,
        "claimed_at": utc(message.claimed_at) if message.claimed_at else None,
        **_regarding_columns(message.regarding),
    }
    copies = list(message.copies.items())
    for mailbox_id, item_id in copies[:MAX_COPY_COLUMNS]:
        columns[copy_column(mailbox_id)] = item_id or ""
    more: dict[str, str | None] = {}
    for mailbox_id, item_id in copies[MAX_COPY_COLUMNS:]:
        more[mailbox_id] = item_id
        if len(json.dumps(more)) > MORE_COPIES_CHARS:
            more.pop(mailbox_id)
            log.warning("tracked message with %d copies: %d not recorded", len(copies),
                        len(copies) - MAX_COPY_COLUMNS - len(more))
            break
    if more:
        columns[MORE_COPIES] = json.dumps(more)
    return {k: v for k, v in columns.items() if v is not None}


def _patch_entity(patch: TrackedPatch) -> dict[str, Any]:
    pk, rk = row_keys(patch.internet_message_id)
    columns: dict[str, Any] = {
        "PartitionKey": pk, "RowKey": rk, "imid": patch.internet_message_id,
        "state": "tracked", "activity_id": patch.activity_id,
        copy_column(patch.mailbox_id): patch.item_id or "",
        **_regarding_columns(patch.regarding),
    }
    if patch.tracked_by is not None:
        columns["tracked_by"] = patch.tracked_by
    if patch.tracked_at is not None:
        columns["tracked_at"] = utc(patch.tracked_at)
    return columns


def _message(entity: Mapping[str, Any]) -> TrackedMessage:
    regarding = (Regarding(table=entity["reg_table"], id=entity["reg_id"],
                           name=entity.get("reg_name"))
                 if entity.get("reg_table") and entity.get("reg_id") else None)
    copies: dict[str, str | None] = json.loads(entity.get(MORE_COPIES) or "{}")
    for column, value in entity.items():
        if column.startswith(COPY_PREFIX):
            copies[bytes.fromhex(column[len(COPY_PREFIX):]).decode("utf-8")] = value or None
    return TrackedMessage(
        internet_message_id=entity["imid"], state=entity.get("state") or "pending",
        activity_id=entity.get("activity_id"), regarding=regarding,
        tracked_by=entity.get("tracked_by"), tracked_at=entity.get("tracked_at"),
        claimed_by=entity.get("claimed_by"), claimed_at=entity.get("claimed_at"),
        claim_intent=entity.get("claim_intent"), copies=copies)


class TrackedMessageRepository(TableRepository):
    table_name = "trackedmessages"

    async def get(self, internet_message_id: str) -> tuple[TrackedMessage, str] | None:
        entity = await self._get(*row_keys(internet_message_id))
        if entity is None or "imid" not in entity:
            return None
        return _message(entity), entity.metadata["etag"]

    async def claim(
        self,
        internet_message_id: str,
        mailbox_id: str,
        now: datetime,
        item_id: str | None = None,
        intent_id: str | None = None,
    ) -> Claim:
        """Create the pending row for this message, or return the row someone else created."""
        message = TrackedMessage(
            internet_message_id=internet_message_id, claimed_by=mailbox_id,
            claimed_at=utc(now), claim_intent=intent_id, copies={mailbox_id: item_id},
        )
        try:
            etag = await self._create(_entity(message))
            return Claim(message, etag, won=True)
        except AlreadyExists:
            pass
        existing = await self.get(internet_message_id)
        if existing is None:  # deleted between our create and read: try once more
            etag = await self._create(_entity(message))
            return Claim(message, etag, won=True)
        return Claim(existing[0], existing[1], won=False)

    async def update(self, message: TrackedMessage, etag: str) -> str:
        """Replace if unchanged since read; ConcurrencyError otherwise."""
        return await self._replace(_entity(message), etag)

    async def put(self, message: TrackedMessage) -> str:
        """Replace whatever is there (a row this process alone decides, e.g. an email it sent)."""
        return await self._upsert(_entity(message))

    async def delete(self, internet_message_id: str, etag: str | None = None) -> None:
        await self._delete(*row_keys(internet_message_id), etag)

    async def merge_many(self, patches: Sequence[TrackedPatch]) -> None:
        """Merge a page's worth of tracked messages: one transaction per bucket (per 100)."""
        entities = [_patch_entity(patch) for patch in patches]
        try:
            await self._upsert_many(entities)
        except HttpResponseError as error:
            if error.status_code != 400:
                raise
            # a row with too many columns (a message copied to hundreds of mailboxes) fails
            # its whole transaction: write the rows one by one, that row without its copy
            log.warning("tracked rows: transaction refused (%s); writing one by one",
                        error.status_code)
            for entity in entities:
                try:
                    await self._upsert(entity, mode=UpdateMode.MERGE)
                except HttpResponseError as one:
                    if one.status_code != 400:
                        raise
                    await self._upsert({k: v for k, v in entity.items()
                                        if not k.startswith(COPY_PREFIX)},
                                       mode=UpdateMode.MERGE)

    async def drop_copy(self, internet_message_id: str, mailbox_id: str,
                        known: tuple[TrackedMessage, str] | None = None
                        ) -> TrackedMessage | None:
        """Forget one mailbox's copy (its user removed the category), keeping the activity.
        `known`: the row and ETag just read, written without reading it again."""
        for _ in range(5):
            found, known = known or await self.get(internet_message_id), None
            if found is None or mailbox_id not in found[0].copies:
                return found[0] if found else None
            message, etag = found
            message.copies.pop(mailbox_id)
            try:
                await self.update(message, etag)
                return message
            except ConcurrencyError:
                continue
        raise ConcurrencyError("tracked row kept changing")


__all__ = ["BUCKETS", "Claim", "Regarding", "TrackState", "TrackedMessage",
           "TrackedMessageRepository", "TrackedPatch", "copy_column", "row_keys"]
