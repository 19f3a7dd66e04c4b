"""Mailbox rows: the whole `Mailbox` model as JSON, plus a few plain columns to filter on.

The address lives only inside the JSON; the `emailKey` column holds its sha256 so lookups by
address work without a readable address in any column.
"""

from __future__ import annotations

import base64
import json
from typing import Any, cast

from azure.core.async_paging import AsyncPageIterator

from shared.domain.mailbox import Mailbox

from .documents import TableRepository, etag_of, pack, unpack
from .errors import mapped_errors
from .keys import email_key

PARTITION = "mailbox"


def _encode_token(token: Any) -> str | None:
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode()


def _decode_token(token: str | None) -> Any:
    if not token:
        return None
    return json.loads(base64.urlsafe_b64decode(token.encode()))


class MailboxRepository(TableRepository):
    """CRUD over mailboxes with ETag-guarded updates and opaque-token paging."""

    table_name = "mailboxes"

    @staticmethod
    def _entity(mailbox: Mailbox) -> dict[str, Any]:
        return {
            "PartitionKey": PARTITION,
            "RowKey": mailbox.mailbox_id,
            "enabled": mailbox.enabled,
            "approved": mailbox.approved,
            "kind": mailbox.kind.value,
            "emailKey": email_key(mailbox.email),
            "ownerObjectId": mailbox.owner_object_id,
            "updatedAt": mailbox.updated_at,
            **pack(mailbox),
        }

    async def get(self, mailbox_id: str) -> tuple[Mailbox, str] | None:
        entity = await self._get(PARTITION, mailbox_id)
        if entity is None:
            return None
        return unpack(entity, Mailbox), etag_of(entity)

    async def insert(self, mailbox: Mailbox) -> str:
        """Create; raises AlreadyExists when the mailbox is registered already."""
        return await self._create(self._entity(mailbox))

    async def update(self, mailbox: Mailbox, etag: str) -> str:
        """Replace if unchanged since read; raises ConcurrencyError otherwise."""
        return await self._replace(self._entity(mailbox), etag)

    async def delete(self, mailbox_id: str, etag: str | None = None) -> None:
        await self._delete(PARTITION, mailbox_id, etag)

    async def list(
        self,
        page_size: int = 100,
        continuation_token: str | None = None,
        *,
        enabled: bool | None = None,
        approved: bool | None = None,
        continuation: str | None = None,
    ) -> tuple[list[Mailbox], str | None]:
        """One page for the admin API; pass the returned token back for the next page.

        `continuation` is an alias of `continuation_token` (the admin API's name for it)."""
        continuation_token = continuation_token or continuation
        clauses = ["PartitionKey eq @pk"]
        parameters: dict[str, Any] = {"pk": PARTITION}
        if enabled is not None:
            clauses.append("enabled eq @enabled")
            parameters["enabled"] = enabled
        if approved is not None:
            clauses.append("approved eq @approved")
            parameters["approved"] = approved
        table = await self._table()
        pager = cast(AsyncPageIterator[Any], table.query_entities(
            " and ".join(clauses), parameters=parameters, results_per_page=page_size
        ).by_page(continuation_token=_decode_token(continuation_token)))
        items: list[Mailbox] = []
        with mapped_errors(self.table_name):
            async for page in pager:
                items.extend([unpack(entity, Mailbox) async for entity in page])
                if items or not pager.continuation_token:
                    break  # a filtered page may come back empty with a token: go on
        return items, _encode_token(pager.continuation_token)

    async def find_by_email(self, email: str) -> tuple[Mailbox, str] | None:
        """The mailbox of an address (case-insensitive), matched by hash."""
        async for entity in self._query(
            "PartitionKey eq @pk and emailKey eq @key",
            {"pk": PARTITION, "key": email_key(email)},
        ):
            return unpack(entity, Mailbox), etag_of(entity)
        return None


__all__ = ["MailboxRepository"]
