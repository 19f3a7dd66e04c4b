"""`Store`: every repository and queue over one pair of service clients."""

from __future__ import annotations

from datetime import datetime

from shared.domain.mailbox import Mailbox
from shared.settings import Settings

from .clients import RequestCounter, StorageClients
from .cursors import CursorRepository
from .due import DueIndexRepository
from .intents import IntentRepository
from .keys import due_bucket
from .leases import LeaseRepository
from .links import ItemLinkRepository
from .mailboxes import MailboxRepository
from .pending import PendingItemRepository
from .queues import IntentQueue, SyncJobQueue
from .tracked import TrackedMessageRepository
from .untracked import UntrackedRepository


class Store:
    """The app's state. Build once per process (`Store.from_settings`), close at shutdown."""

    def __init__(
        self, clients: StorageClients, *, sync_queue_name: str, intent_queue_name: str
    ) -> None:
        self.clients = clients
        self.mailboxes = MailboxRepository(clients)
        self.due = DueIndexRepository(clients)
        self.leases = LeaseRepository(clients)
        self.cursors = CursorRepository(clients)
        self.links = ItemLinkRepository(clients)
        self.tracked = TrackedMessageRepository(clients)
        self.untracked = UntrackedRepository(clients)
        self.pending = PendingItemRepository(clients)
        self.intents = IntentRepository(clients)
        self.sync_queue = SyncJobQueue(clients, sync_queue_name)
        self.intent_queue = IntentQueue(clients, intent_queue_name)

    @classmethod
    def from_settings(cls, settings: Settings, *, counter: RequestCounter | None = None) -> Store:
        return cls(
            StorageClients.from_settings(settings, counter=counter),
            sync_queue_name=settings.sync_queue_name,
            intent_queue_name=settings.intent_queue_name,
        )

    async def save_mailbox(self, mailbox: Mailbox, etag: str | None,
                           previous_due: datetime | None) -> str:
        """Write the mailbox and keep the due index in step with it: the new index row is
        written before the mailbox and the old one removed after, so a crash in between
        leaves a duplicate row (harmless: the scheduler leases per mailbox), never none.
        ConcurrencyError when the mailbox changed since `etag` was read."""
        due = mailbox.next_due_at
        if due is not None and due != previous_due:
            await self.due.set_due(mailbox.mailbox_id, due)
        if etag is None:
            new_etag = await self.mailboxes.insert(mailbox)
        else:
            new_etag = await self.mailboxes.update(mailbox, etag)
        if previous_due is not None and (
                due is None or due_bucket(previous_due) != due_bucket(due)):
            # an index row is per minute: a new time in the same minute is the same row
            await self.due.remove(mailbox.mailbox_id, previous_due)
        return new_etag

    @property
    def counter(self) -> RequestCounter:
        return self.clients.counter

    @property
    def request_count(self) -> int:
        """Storage HTTP requests sent so far (retries included)."""
        return self.clients.counter.count

    async def close(self) -> None:
        await self.clients.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = ["Store"]
