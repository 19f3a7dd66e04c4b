"""What the incoming engine remembers about tracked emails, keyed for correlation.

The tracked-messages table answers "is this internetMessageId tracked?" (In-Reply-To and
dedupe). Conversation correlation needs the other key: Exchange's conversationId. This small
table maps a conversation to the first tracked email of it, so a later message of the same
thread inherits its regarding record without a Dataverse query.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from azure.data.tables import UpdateMode

from shared.domain.correlation import RegardingRef, TrackedRef
from shared.store.documents import TableRepository
from shared.store.keys import safe_key
from shared.store.tracked import Regarding

_NAMESPACE = uuid.UUID("9b0e4a52-5f2d-4f57-9c55-3f8a1d8b7c11")
_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|vs|antw|fw|fwd|wg|tr|rv|odp|ynt)\s*(\[\d+\])?\s*:",
                           re.IGNORECASE)
CONVERSATION_HEADER_BYTES = 22


def activity_id_for(internet_message_id: str) -> str:
    """The email activity's id, derived from the message id: two mailboxes (or a rerun after
    a crash) creating the same email collide in Dataverse (412) instead of duplicating it."""
    return str(uuid.uuid5(_NAMESPACE, "email:" + internet_message_id))


def record_id_for(table: str, address: str) -> str:
    """Deterministic id of an automatically created contact/lead: a rerun cannot duplicate."""
    return str(uuid.uuid5(_NAMESPACE, f"{table}:{address.lower()}"))


def likely_reply(message: Mapping[str, Any]) -> bool:
    """Whether threading headers are worth fetching: a reply prefix, or a conversation index
    longer than its 22-byte header (Exchange appends a block per reply)."""
    if _REPLY_PREFIX.match(str(message.get("subject") or "")):
        return True
    raw = message.get("conversationIndex")
    if not raw:
        return False
    try:
        return len(base64.b64decode(raw, validate=True)) > CONVERSATION_HEADER_BYTES
    except (binascii.Error, ValueError):
        return False


def to_regarding(ref: RegardingRef | None) -> Regarding | None:
    return Regarding(table=ref.table, id=ref.id) if ref else None


class ConversationRepository(TableRepository):
    """conversationId -> the tracked email that started tracking the thread."""

    table_name = "conversations"

    async def get(self, conversation_id: str) -> TrackedRef | None:
        entity = await self._get("c", safe_key(conversation_id))
        if entity is None:
            return None
        regarding = None
        if entity.get("regardingTable") and entity.get("regardingId"):
            regarding = RegardingRef(str(entity["regardingTable"]), str(entity["regardingId"]))
        return TrackedRef(str(entity["activityId"]), regarding,
                          entity.get("internetMessageId"))

    async def remember(self, conversation_id: str, ref: TrackedRef, now: datetime) -> None:
        await self._upsert(self._entity(conversation_id, ref, now))

    async def remember_many(self, items: dict[str, TrackedRef], now: datetime) -> None:
        """One transaction per 100 rows (one partition): a page costs one request, not 100."""
        await self._upsert_many((self._entity(c, ref, now) for c, ref in items.items()),
                                mode=UpdateMode.REPLACE)

    @staticmethod
    def _entity(conversation_id: str, ref: TrackedRef, now: datetime) -> dict[str, Any]:
        return {
            "PartitionKey": "c", "RowKey": safe_key(conversation_id),
            "activityId": ref.activity_id, "internetMessageId": ref.internet_message_id or "",
            "regardingTable": ref.regarding.table if ref.regarding else "",
            "regardingId": ref.regarding.id if ref.regarding else "", "at": now,
        }


__all__ = ["ConversationRepository", "activity_id_for", "likely_reply", "record_id_for",
           "to_regarding"]
