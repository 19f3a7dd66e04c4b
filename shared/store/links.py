"""Links between an Exchange item and a CRM record, per mailbox and channel.

Each link remembers what both sides looked like at the last sync (change key, record ETag,
a hash per field): the base of the three-way merge. One partition per mailbox+channel holds
an item row ('i:'+encoded item id, the link itself) and a record row ('r:'+record id, a pointer
to the item row), written in one transaction so lookups work from either side.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import UpdateMode
from pydantic import BaseModel, Field

from .documents import TableRepository, pack, unpack
from .errors import ConcurrencyError, mapped_errors
from .keys import safe_key


class ItemLink(BaseModel):
    mailbox_id: str
    channel: str
    item_id: str  # Exchange (Graph) id
    record_table: str  # CRM table, e.g. "email", "appointment", "contact", "task"
    record_id: str
    change_key: str | None = None  # Exchange side at the last sync
    record_etag: str | None = None  # CRM side at the last sync
    field_hashes: dict[str, str] = Field(default_factory=dict)
    updated_at: datetime | None = None


def _partition(mailbox_id: str, channel: str) -> str:
    return f"{mailbox_id}:{channel}"


def _item_row(item_id: str) -> str:
    return f"i:{safe_key(item_id)}"


def _record_row(record_id: str) -> str:
    return f"r:{safe_key(record_id.lower())}"  # GUIDs compare case-insensitively


class ItemLinkRepository(TableRepository):
    table_name = "links"

    async def get_by_item(
        self, mailbox_id: str, channel: str, item_id: str
    ) -> tuple[ItemLink, str] | None:
        entity = await self._get(_partition(mailbox_id, channel), _item_row(item_id))
        if entity is None:
            return None
        return unpack(entity, ItemLink), entity.metadata["etag"]

    async def get_by_record(
        self, mailbox_id: str, channel: str, record_id: str
    ) -> tuple[ItemLink, str] | None:
        """Follow the record row to the item row; a stale pointer reads as no link."""
        pointer = await self._get(_partition(mailbox_id, channel), _record_row(record_id))
        if pointer is None:
            return None
        entity = await self._get(_partition(mailbox_id, channel), str(pointer["itemRow"]))
        if entity is None:
            return None
        link = unpack(entity, ItemLink)
        if link.record_id.lower() != record_id.lower():
            return None
        return link, entity.metadata["etag"]

    async def upsert(self, link: ItemLink, etag: str | None = None) -> str:
        """Create the link (etag None: AlreadyExists if one exists) or replace it if unchanged
        since read (else ConcurrencyError). Returns the item row's new ETag."""
        partition = _partition(link.mailbox_id, link.channel)
        item_row = _item_row(link.item_id)
        item: dict[str, Any] = {
            "PartitionKey": partition, "RowKey": item_row, "recordId": link.record_id,
            **pack(link),
        }
        pointer = {
            "PartitionKey": partition, "RowKey": _record_row(link.record_id),
            "itemRow": item_row,
        }
        if etag is None:
            first: tuple[Any, ...] = ("create", item)
        else:
            first = (
                "update", item,
                {"mode": UpdateMode.REPLACE, "etag": etag,
                 "match_condition": MatchConditions.IfNotModified},
            )
        table = await self._table()
        with mapped_errors(self.table_name, missing=ConcurrencyError):
            results = await table.submit_transaction(
                [first, ("upsert", pointer, {"mode": UpdateMode.REPLACE})]
            )
        return str(results[0]["etag"])

    async def delete(self, mailbox_id: str, channel: str, item_id: str,
                     etag: str | None = None) -> None:
        """Remove the link (gone already is fine) and its record pointer."""
        partition = _partition(mailbox_id, channel)
        current = await self._get(partition, _item_row(item_id))
        if current is None:
            return
        await self._delete(partition, _item_row(item_id), etag)
        await self._delete(partition, _record_row(str(current["recordId"])))

    async def list(self, mailbox_id: str, channel: str) -> list[tuple[ItemLink, str]]:
        """Every link of a mailbox channel (full re-sync dedupes against these)."""
        return [
            (unpack(entity, ItemLink), entity.metadata["etag"])
            async for entity in self._query(
                "PartitionKey eq @pk and RowKey ge 'i:' and RowKey lt 'i;'",
                {"pk": _partition(mailbox_id, channel)},
            )
        ]


__all__ = ["ItemLink", "ItemLinkRepository"]
