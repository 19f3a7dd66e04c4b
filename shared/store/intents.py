"""Add-in requests (track, set regarding, untrack), written before they are attempted.

The row key is a hash of the caller and their idempotency key, so a retried request finds the
intent it created the first time instead of acting twice. Partition = mailbox, so a cycle lists
a mailbox's pending intents without reading anyone else's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from .documents import TableRepository, pack, unpack
from .errors import AlreadyExists
from .keys import sha256_hex, utc

IntentAction = Literal["track", "set_regarding", "untrack"]
IntentState = Literal["pending", "done", "failed"]


class Intent(BaseModel):
    intent_id: str
    idempotency_key: str
    user_object_id: str
    mailbox_id: str
    action: IntentAction
    payload: dict[str, Any] = Field(default_factory=dict)
    state: IntentState = "pending"
    attempts: int = 0
    result: dict[str, Any] | None = None
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime


def intent_id_for(user_object_id: str, idempotency_key: str) -> str:
    """Scoped per user: two users choosing the same key never share an intent."""
    return sha256_hex(f"{user_object_id}\n{idempotency_key}")[:40]


class IntentRepository(TableRepository):
    table_name = "intents"

    @staticmethod
    def _entity(intent: Intent) -> dict[str, Any]:
        return {
            "PartitionKey": intent.mailbox_id, "RowKey": intent.intent_id,
            "state": intent.state, **pack(intent),
        }

    async def create_or_get(
        self,
        idempotency_key: str,
        *,
        user_object_id: str,
        mailbox_id: str,
        action: IntentAction,
        payload: dict[str, Any],
        now: datetime,
    ) -> tuple[Intent, str, bool]:
        """(intent, etag, created): the same key always yields the same intent."""
        now = utc(now)
        intent = Intent(
            intent_id=intent_id_for(user_object_id, idempotency_key),
            idempotency_key=idempotency_key, user_object_id=user_object_id,
            mailbox_id=mailbox_id, action=action, payload=payload,
            created_at=now, updated_at=now,
        )
        try:
            return intent, await self._create(self._entity(intent)), True
        except AlreadyExists:
            existing = await self.get(mailbox_id, intent.intent_id)
            if existing is None:  # deleted in between: create again
                return intent, await self._create(self._entity(intent)), True
            return existing[0], existing[1], False

    async def get(self, mailbox_id: str, intent_id: str) -> tuple[Intent, str] | None:
        entity = await self._get(mailbox_id, intent_id)
        if entity is None:
            return None
        return unpack(entity, Intent), entity.metadata["etag"]

    async def update(self, intent: Intent, etag: str) -> str:
        """Replace if unchanged since read; ConcurrencyError otherwise."""
        return await self._replace(self._entity(intent), etag)

    async def delete(self, intent: Intent, etag: str) -> None:
        """Remove an intent as written (taken back before anything was attempted)."""
        await self._delete(intent.mailbox_id, intent.intent_id, etag)

    async def list_pending(self, mailbox_id: str) -> list[tuple[Intent, str]]:
        return [
            (unpack(entity, Intent), entity.metadata["etag"])
            async for entity in self._query(
                "PartitionKey eq @pk and state eq 'pending'", {"pk": mailbox_id}
            )
        ]


__all__ = ["Intent", "IntentAction", "IntentRepository", "IntentState", "intent_id_for"]
