"""The due index: which mailboxes the scheduler should look at now.

Partition = the UTC minute a mailbox is due ('YYYYMMDDHHMM'), row = mailbox id. Since keys sort
lexically, `PartitionKey le '<now>'` reads only the due rows, so a scheduler tick costs storage
reads proportional to the mailboxes due, not to every mailbox registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .documents import TableRepository
from .errors import mapped_errors
from .keys import due_bucket, utc


@dataclass(frozen=True)
class DueEntry:
    mailbox_id: str
    due_at: datetime


class DueIndexRepository(TableRepository):
    table_name = "due"

    async def set_due(
        self, mailbox_id: str, due_at: datetime, old_due_at: datetime | None = None
    ) -> None:
        """Move a mailbox to its new due time.

        Writes the new row before deleting the old one: a crash in between leaves a duplicate
        (harmless: the scheduler takes a lease per mailbox) rather than a lost mailbox.
        """
        due_at = utc(due_at)
        await self._upsert(
            {"PartitionKey": due_bucket(due_at), "RowKey": mailbox_id, "dueAt": due_at}
        )
        if old_due_at is not None and due_bucket(old_due_at) != due_bucket(due_at):
            await self.remove(mailbox_id, old_due_at)

    async def remove(self, mailbox_id: str, due_at: datetime) -> None:
        await self._delete(due_bucket(due_at), mailbox_id)

    async def list_due(self, now: datetime, limit: int = 1000) -> list[DueEntry]:
        """Up to `limit` entries due at or before `now`, oldest first."""
        now = utc(now)
        table = await self._table()
        pager = table.query_entities(
            "PartitionKey le @bucket",
            parameters={"bucket": due_bucket(now)},
            results_per_page=min(limit, 1000),
            select=["PartitionKey", "RowKey", "dueAt"],
        ).by_page()
        entries: list[DueEntry] = []
        with mapped_errors(self.table_name):
            async for page in pager:
                async for entity in page:
                    due_at = utc(entity["dueAt"])
                    if due_at > now:  # later in the current minute: the next tick takes it
                        continue
                    entries.append(DueEntry(str(entity["RowKey"]), due_at))
                    if len(entries) >= limit:
                        return entries
        return entries


__all__ = ["DueEntry", "DueIndexRepository"]
