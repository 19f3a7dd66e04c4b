"""Delta cursors per mailbox and stream ("incoming:inbox", "incoming:folder:<id>", ...).

The engine writes a cursor only after every message it covers is recorded as done or pending,
and with the ETag it read, so a cycle that lost its lease cannot move the cursor.
"""

from __future__ import annotations

from dataclasses import dataclass

from .documents import TableRepository
from .errors import AlreadyExists, ConcurrencyError
from .keys import safe_key


@dataclass(frozen=True)
class Cursor:
    stream: str
    value: str  # a Graph deltaLink, or a nextLink of a delta round still in progress
    etag: str


class CursorRepository(TableRepository):
    table_name = "cursors"

    async def get(self, mailbox_id: str, stream: str) -> Cursor | None:
        entity = await self._get(mailbox_id, safe_key(stream))
        if entity is None:
            return None
        return Cursor(stream, str(entity["value"]), entity.metadata["etag"])

    async def put(self, mailbox_id: str, stream: str, value: str, etag: str | None) -> str:
        """Create (etag None) or replace (etag read); ConcurrencyError if someone else wrote."""
        entity = {
            "PartitionKey": mailbox_id, "RowKey": safe_key(stream), "stream": stream,
            "value": value,
        }
        if etag is None:
            try:
                return await self._create(entity)
            except AlreadyExists as error:
                raise ConcurrencyError("cursor was created concurrently") from error
        return await self._replace(entity, etag)

    async def reset(self, mailbox_id: str, stream: str | None = None) -> None:
        """Forget one stream's cursor (410 Gone) or all of a mailbox's (re-enable)."""
        if stream is not None:
            await self._delete(mailbox_id, safe_key(stream))
            return
        async for entity in self._query(
            "PartitionKey eq @pk", {"pk": mailbox_id}, select=["PartitionKey", "RowKey"]
        ):
            await self._delete(mailbox_id, str(entity["RowKey"]))

    async def list(self, mailbox_id: str) -> dict[str, Cursor]:
        return {
            str(entity["stream"]): Cursor(
                str(entity["stream"]), str(entity["value"]), entity.metadata["etag"]
            )
            async for entity in self._query("PartitionKey eq @pk", {"pk": mailbox_id})
        }


__all__ = ["Cursor", "CursorRepository"]
