"""Messages a mailbox's user untracked: the sync cycle must not track them again by itself.

A row per (mailbox, message) in the mailbox's own partition, so a cycle reads all of its
mailbox's markers with one query (users untrack rarely) and never per message. Tracking the
message again on purpose (the add-in, or putting the category back) removes the marker.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from .documents import TableRepository
from .keys import sha256_hex, utc


def marker_key(internet_message_id: str) -> str:
    return sha256_hex(internet_message_id)


class UntrackedRepository(TableRepository):
    table_name = "untracked"

    async def add(self, mailbox_ids: Iterable[str], internet_message_id: str,
                  now: datetime) -> None:
        key, at = marker_key(internet_message_id), utc(now)
        await self._upsert_many({"PartitionKey": m, "RowKey": key, "at": at}
                                for m in mailbox_ids)

    async def remove(self, mailbox_id: str, internet_message_id: str) -> None:
        await self._delete(mailbox_id, marker_key(internet_message_id))

    async def keys(self, mailbox_id: str) -> set[str]:
        """Every marker of the mailbox (compare with `marker_key`)."""
        return {str(e["RowKey"]) async for e in self._query(
            "PartitionKey eq @pk", {"pk": mailbox_id}, page_size=1000, select=["RowKey"])}


__all__ = ["UntrackedRepository", "marker_key"]
