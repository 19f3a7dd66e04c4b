"""Per-mailbox leases so exactly one worker syncs a mailbox at a time.

Acquire = create the row (only one create can win) or, when the holder's lease has expired,
replace it with the ETag just read (only one replace can win). Time is passed in, so tests
prove takeover without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .documents import TableRepository
from .errors import AlreadyExists, ConcurrencyError
from .keys import utc

PARTITION = "lease"


@dataclass(frozen=True)
class Lease:
    mailbox_id: str
    owner: str
    expires_at: datetime
    etag: str


class LeaseRepository(TableRepository):
    table_name = "leases"

    @staticmethod
    def _entity(mailbox_id: str, owner: str, expires_at: datetime) -> dict[str, object]:
        return {
            "PartitionKey": PARTITION, "RowKey": mailbox_id, "owner": owner,
            "expiresAt": expires_at,
        }

    async def try_acquire(
        self, mailbox_id: str, owner: str, now: datetime, lease_seconds: int
    ) -> Lease | None:
        """The lease, or None while another owner holds an unexpired one."""
        now = utc(now)
        expires_at = now + timedelta(seconds=lease_seconds)
        entity = self._entity(mailbox_id, owner, expires_at)
        current = await self._get(PARTITION, mailbox_id)
        try:
            if current is None:
                etag = await self._create(entity)
            else:
                held_by_other = current.get("owner") != owner
                if held_by_other and utc(current["expiresAt"]) > now:
                    return None
                etag = await self._replace(entity, current.metadata["etag"])
        except (AlreadyExists, ConcurrencyError):
            return None  # another worker won the race
        return Lease(mailbox_id, owner, expires_at, etag)

    async def renew(self, lease: Lease, now: datetime, lease_seconds: int) -> Lease | None:
        """Extend a lease still held; None when it was lost (expired and taken over)."""
        expires_at = utc(now) + timedelta(seconds=lease_seconds)
        try:
            etag = await self._replace(
                self._entity(lease.mailbox_id, lease.owner, expires_at), lease.etag
            )
        except ConcurrencyError:
            return None
        return Lease(lease.mailbox_id, lease.owner, expires_at, etag)

    async def release(self, lease: Lease) -> None:
        """Give the lease back; if it was already lost there is nothing to give back."""
        try:
            await self._delete(PARTITION, lease.mailbox_id, lease.etag)
        except ConcurrencyError:
            pass


__all__ = ["Lease", "LeaseRepository"]
