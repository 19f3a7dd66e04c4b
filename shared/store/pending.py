"""Items a delta round listed but the engine has not finished yet.

A cursor may move past an item only once the item is durably done or recorded here; the next
cycle retries what is pending first. Rows are upserted with MERGE so listing the same item again
keeps its attempt count.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from azure.data.tables import UpdateMode
from pydantic import BaseModel

from .documents import TableRepository
from .keys import safe_key, utc

BATCH_LIMIT = 100  # Table Storage transactions hold at most 100 operations


class PendingItem(BaseModel):
    mailbox_id: str
    stream: str
    item_id: str
    removed: bool = False  # delta reported the item as deleted
    attempts: int = 0
    last_error: str | None = None
    added_at: datetime | None = None


def _row(stream: str, item_id: str) -> str:
    return f"{safe_key(stream)}|{safe_key(item_id)}"


def _from_entity(entity: Any) -> PendingItem:
    return PendingItem(
        mailbox_id=str(entity["PartitionKey"]),
        stream=str(entity["stream"]),
        item_id=str(entity["itemId"]),
        removed=bool(entity.get("removed", False)),
        attempts=int(entity.get("attempts", 0) or 0),
        last_error=entity.get("lastError"),
        added_at=entity.get("addedAt"),
    )


class PendingItemRepository(TableRepository):
    table_name = "pending"

    async def add_many(self, items: Iterable[PendingItem], now: datetime) -> int:
        """Record items in transactions of up to 100 per mailbox; returns how many."""
        now = utc(now)
        return await self._upsert_many({
            "PartitionKey": item.mailbox_id, "RowKey": _row(item.stream, item.item_id),
            "stream": item.stream, "itemId": item.item_id, "removed": item.removed,
            "addedAt": item.added_at or now,
        } for item in items)

    async def list(self, mailbox_id: str, stream: str | None = None) -> list[PendingItem]:
        """Pending items of a mailbox, optionally of one stream (a row-key range)."""
        if stream is None:
            query, parameters = "PartitionKey eq @pk", {"pk": mailbox_id}
        else:
            prefix = safe_key(stream)
            query = "PartitionKey eq @pk and RowKey gt @low and RowKey lt @high"
            parameters = {"pk": mailbox_id, "low": f"{prefix}|", "high": f"{prefix}}}"}
        return [_from_entity(entity) async for entity in self._query(query, parameters)]

    async def record_attempt(self, item: PendingItem, error: str | None) -> PendingItem:
        """Count a failed attempt (the caller holds the mailbox lease, so no ETag race)."""
        updated = item.model_copy(update={"attempts": item.attempts + 1, "last_error": error})
        await self._upsert(
            {
                "PartitionKey": item.mailbox_id, "RowKey": _row(item.stream, item.item_id),
                "stream": item.stream, "itemId": item.item_id, "removed": item.removed,
                "attempts": updated.attempts, "lastError": error,
            },
            mode=UpdateMode.MERGE,
        )
        return updated

    async def remove(self, mailbox_id: str, stream: str, item_id: str) -> None:
        await self._delete(mailbox_id, _row(stream, item_id))


__all__ = ["PendingItem", "PendingItemRepository"]
