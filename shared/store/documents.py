"""Pydantic models as JSON inside table entities, and the small base every repository shares.

A string property holds at most 64 KiB (32K UTF-16 chars), so long documents are split over
`doc`, `doc1`, `doc2`... and joined back on read; a REPLACE update drops stale chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient
from pydantic import BaseModel

from .clients import StorageClients
from .errors import ConcurrencyError, NotFound, mapped_errors

CHUNK_CHARS = 30_000
TRANSACTION_ROWS = 100  # Table Storage's limit per batch transaction
DOC = "doc"

M = TypeVar("M", bound=BaseModel)


def pack(model: BaseModel) -> dict[str, str]:
    text = model.model_dump_json()
    chunks = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]
    return {(DOC if i == 0 else f"{DOC}{i}"): chunk for i, chunk in enumerate(chunks)}


def unpack(entity: Mapping[str, Any], model: type[M]) -> M:
    parts = [entity[DOC]]
    index = 1
    while f"{DOC}{index}" in entity:
        parts.append(entity[f"{DOC}{index}"])
        index += 1
    return model.model_validate_json("".join(parts))


def etag_of(entity_or_metadata: Any) -> str:
    metadata = getattr(entity_or_metadata, "metadata", None)
    if metadata is not None:
        return str(metadata["etag"])
    return str(entity_or_metadata["etag"])


class TableRepository:
    """Shared plumbing: the lazily created table and ETag-conditional writes."""

    table_name: str = ""

    def __init__(self, clients: StorageClients) -> None:
        self._clients = clients

    async def _table(self) -> TableClient:
        return await self._clients.table(self.table_name)

    async def _get(self, partition_key: str, row_key: str) -> Any | None:
        table = await self._table()
        try:
            with mapped_errors(self.table_name):
                return await table.get_entity(partition_key, row_key)
        except NotFound:
            return None

    async def _create(self, entity: dict[str, Any]) -> str:
        table = await self._table()
        with mapped_errors(self.table_name):
            return etag_of(await table.create_entity(entity))

    async def _replace(self, entity: dict[str, Any], etag: str) -> str:
        """Replace only if unchanged since read; a vanished row is a lost race too."""
        table = await self._table()
        with mapped_errors(self.table_name, missing=ConcurrencyError):
            metadata = await table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        return etag_of(metadata)

    async def _upsert(self, entity: dict[str, Any], mode: UpdateMode = UpdateMode.REPLACE) -> str:
        table = await self._table()
        with mapped_errors(self.table_name):
            return etag_of(await table.upsert_entity(entity, mode=mode))

    async def _upsert_many(self, entities: Iterable[dict[str, Any]],
                           mode: UpdateMode = UpdateMode.MERGE) -> int:
        """Upserts as batch transactions (one partition, up to 100 rows each), sent together:
        a page of rows costs a few requests, not one per row. A transaction may not touch a
        row twice, so repeats are merged (the later one wins per column). Returns the rows."""
        by_partition: dict[str, dict[str, dict[str, Any]]] = {}
        for entity in entities:
            rows = by_partition.setdefault(str(entity["PartitionKey"]), {})
            row = str(entity["RowKey"])
            rows[row] = {**rows[row], **entity} if row in rows else entity
        chunks = [list(rows.values())[i:i + TRANSACTION_ROWS]
                  for rows in by_partition.values()
                  for i in range(0, len(rows), TRANSACTION_ROWS)]
        if not chunks:
            return 0
        table = await self._table()

        async def submit(chunk: list[dict[str, Any]]) -> None:
            with mapped_errors(self.table_name):
                if len(chunk) == 1:  # a one-row transaction costs more than a plain upsert
                    await table.upsert_entity(chunk[0], mode=mode)
                else:
                    await table.submit_transaction(
                        [("upsert", row, {"mode": mode}) for row in chunk])

        await asyncio.gather(*(submit(chunk) for chunk in chunks))
        return sum(len(chunk) for chunk in chunks)

    async def _delete(self, partition_key: str, row_key: str, etag: str | None = None) -> None:
        """Delete (already gone is fine); with an ETag only if unchanged."""
        table = await self._table()
        options: dict[str, Any] = {}
        if etag is not None:
            options = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        with mapped_errors(self.table_name):
            await table.delete_entity(partition_key, row_key, **options)

    async def _query(
        self,
        query_filter: str,
        parameters: dict[str, Any] | None = None,
        *,
        page_size: int | None = None,
        select: list[str] | None = None,
    ) -> AsyncIterator[Any]:
        table = await self._table()
        pages = table.query_entities(
            query_filter, parameters=parameters or {}, results_per_page=page_size,
            select=select,
        )
        with mapped_errors(self.table_name):
            async for entity in pages:
                yield entity


__all__ = ["TableRepository", "etag_of", "pack", "unpack"]
