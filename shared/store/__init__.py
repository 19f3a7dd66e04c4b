"""State in Table Storage and work in Storage queues (Azurite locally).

`Store.from_settings(settings)` gives every repository; repositories raise only the errors
below, never azure-core's.
"""

from .clients import RequestCounter, StorageClients
from .cursors import Cursor, CursorRepository
from .due import DueEntry, DueIndexRepository
from .errors import AlreadyExists, ConcurrencyError, NotFound, StoreError
from .intents import Intent, IntentRepository, intent_id_for
from .keys import due_bucket, email_key, safe_key
from .leases import Lease, LeaseRepository
from .links import ItemLink, ItemLinkRepository
from .mailboxes import MailboxRepository
from .pending import PendingItem, PendingItemRepository
from .queues import IntentQueue, JsonQueue, SyncJobQueue
from .store import Store
from .tracked import (
    Claim,
    Regarding,
    TrackedMessage,
    TrackedMessageRepository,
    TrackedPatch,
)
from .untracked import UntrackedRepository

__all__ = [
    "AlreadyExists",
    "Claim",
    "ConcurrencyError",
    "Cursor",
    "CursorRepository",
    "DueEntry",
    "DueIndexRepository",
    "Intent",
    "IntentQueue",
    "IntentRepository",
    "ItemLink",
    "ItemLinkRepository",
    "JsonQueue",
    "Lease",
    "LeaseRepository",
    "MailboxRepository",
    "NotFound",
    "PendingItem",
    "PendingItemRepository",
    "Regarding",
    "RequestCounter",
    "StorageClients",
    "Store",
    "StoreError",
    "SyncJobQueue",
    "TrackedMessage",
    "TrackedMessageRepository",
    "TrackedPatch",
    "UntrackedRepository",
    "due_bucket",
    "email_key",
    "intent_id_for",
    "safe_key",
]
