"""Handing a mailbox lease from the scheduler tick to the worker that runs the job.

The tick leases a mailbox under a per-job owner and enqueues the job. The worker swaps that
owner for its own run id with the row's ETag: a second delivery of the same job then finds
the lease held by a live run and does nothing, and a job whose lease expired and was taken by
a later tick is stale. Only the Table Storage ETag decides, so two workers never both win.

A cycle that must release its successor itself (shared/domain/cadence.py `handoff_start`)
hands its own lease to the successor's job the same way, so no tick can slip in between.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.store import Lease, LeaseRepository
from shared.store.errors import AlreadyExists, ConcurrencyError
from shared.store.keys import utc
from shared.store.leases import PARTITION


async def take_over_job_lease(
    leases: LeaseRepository, mailbox_id: str, job_owner: str, run_owner: str,
    now: datetime, lease_seconds: int,
) -> Lease | None:
    """The lease for this run, or None when another live run (or a newer job) holds it.

    No row: the job already ran (or never leased); take a fresh lease and let the caller's
    due check decide. Row of our job: swap in the run owner. Row of someone else: only once
    it has expired (a worker that died mid-cycle).
    """
    now = utc(now)
    current = await leases._get(PARTITION, mailbox_id)  # noqa: SLF001 - same store layer
    if current is None or current.get("owner") != job_owner:
        if current is not None and utc(current["expiresAt"]) > now:
            return None
        return await leases.try_acquire(mailbox_id, run_owner, now, lease_seconds)
    expires_at = now + timedelta(seconds=lease_seconds)
    entity = {"PartitionKey": PARTITION, "RowKey": mailbox_id, "owner": run_owner,
              "expiresAt": expires_at}
    try:
        etag = await leases._replace(entity, current.metadata["etag"])  # noqa: SLF001
    except (ConcurrencyError, AlreadyExists):
        return None
    return Lease(mailbox_id, run_owner, expires_at, etag)


def job_message(mailbox_id: str, lease_owner: str, due_at: datetime, now: datetime,
                start_at: datetime, outgoing: bool | None) -> dict[str, Any]:
    """The sync job: whose lease it carries, what was due, and its planned start (which the
    next due counts from)."""
    return {"mailbox_id": mailbox_id, "lease_owner": lease_owner,
            "due_at": due_at.isoformat(), "enqueued_at": now.isoformat(),
            "start_at": start_at.isoformat(), "outgoing": outgoing}


async def hand_over(leases: LeaseRepository, lease: Lease, job_owner: str, until: datetime
                    ) -> Lease | None:
    """Give a run's lease to the job of the next cycle (held until `until`); None when the
    lease was lost meanwhile."""
    entity = {"PartitionKey": PARTITION, "RowKey": lease.mailbox_id, "owner": job_owner,
              "expiresAt": utc(until)}
    try:
        etag = await leases._replace(entity, lease.etag)  # noqa: SLF001 - same store layer
    except ConcurrencyError:
        return None
    return Lease(lease.mailbox_id, job_owner, utc(until), etag)


__all__ = ["hand_over", "job_message", "take_over_job_lease"]
