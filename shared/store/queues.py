"""Queues of sync jobs and add-in retries: JSON, base64-encoded as the Functions trigger expects."""

from __future__ import annotations

import json
from typing import Any

from .clients import StorageClients
from .errors import mapped_errors


class JsonQueue:
    """Send JSON messages to one queue, created on first use."""

    def __init__(self, clients: StorageClients, name: str) -> None:
        self._clients = clients
        self.name = name

    async def send(
        self,
        message: dict[str, Any],
        visibility_timeout: int | None = None,
        time_to_live: int | None = None,
    ) -> str:
        """Enqueue; `visibility_timeout` (seconds) delays delivery, e.g. for a retry back-off.
        Returns the message id."""
        queue = await self._clients.queue(self.name)
        with mapped_errors(f"queue {self.name}"):
            sent = await queue.send_message(
                json.dumps(message, separators=(",", ":"), default=str),
                visibility_timeout=visibility_timeout,
                time_to_live=time_to_live,
            )
        return str(sent.id)


class SyncJobQueue(JsonQueue):
    """Per-mailbox sync jobs the scheduler fans out."""


class IntentQueue(JsonQueue):
    """Add-in actions to retry after the immediate attempt missed its deadline."""


__all__ = ["IntentQueue", "JsonQueue", "SyncJobQueue"]
