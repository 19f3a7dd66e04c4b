"""Handing a mailbox lease from the scheduler tick to the worker that runs the job.

The tick leases a mailbox under a per-job owner and enqueues the job. The worker swaps that
owner for its own run id with the row's ETag: a second delivery of the same job then finds
the lease held by a live run and does nothing, and a job whose lease expired and was taken by
a later tick is stale. Only the Table Storage ETag decides, so two workers never both win.
"""

from __future__ import annotations

from datetime import datetime, timedelta

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


__all__ = ["take_over_job_lease"]
