"""The scheduler tick: find the mailboxes due before the next tick, lease each, enqueue one
job per mailbox (released now, so a cycle starts up to a tick early, never a tick late; see
shared/domain/cadence.py).

Reads go through the due index (`PartitionKey le <bucket of the next tick>`), so a tick costs
storage requests proportional to the mailboxes due, not to the mailboxes registered. A lease per
mailbox (ETag-guarded) makes overlapping ticks harmless: the second finds the lease held and
skips. A mailbox whose worker died keeps its due row; once the lease expires the next tick
takes it over.

Pending Send: the tick's one org-wide query of emails waiting to be sent also brings forward
the outgoing channel of a sender's mailbox that is not due (at most once per
`SYNC_INTERVAL_MIN_MINUTES`), so an email goes out within a tick instead of waiting for a quiet
mailbox's next cycle (up to `SYNC_INTERVAL_MAX_MINUTES`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.dataverse import DataverseClient
from shared.domain.cadence import released_by_tick
from shared.domain.mailbox import Channel, Mailbox
from shared.domain.ncrontab import Schedule
from shared.errors import UpstreamError
from shared.settings import Settings
from shared.store import ConcurrencyError, DueEntry, Store
from shared.store.keys import due_bucket

from .batching import in_filter
from .leasing import job_message

log = logging.getLogger("sss.scheduler")

DEFAULT_LIMIT = 5000
CONCURRENCY = 32


@dataclass
class TickResult:
    tick_id: str
    due: int = 0
    enqueued: int = 0
    leased_elsewhere: int = 0
    stale: int = 0
    sent_early: int = 0  # mailboxes brought forward for Pending Send email
    storage_requests: int = 0
    mailbox_ids: list[str] = field(default_factory=list)


def _is_current(entry: DueEntry, mailbox: Mailbox | None, now: datetime,
                schedule: Schedule) -> bool:
    """Whether an index row still stands for an enabled mailbox this tick releases."""
    if mailbox is None or not mailbox.enabled:
        return False
    due = mailbox.next_due_at
    return due is not None and released_by_tick(due, now, schedule) \
        and due_bucket(due) == due_bucket(entry.due_at)


async def pending_send_senders(dataverse: DataverseClient | None) -> set[str] | None:
    """System user ids that have email in Pending Send (or stuck in Sending): one org-wide
    query per tick, so an idle mailbox's cycle never asks Dataverse. None when unknown."""
    if dataverse is None:
        return None
    senders: set[str] = set()
    try:
        async for row in dataverse.list(
            "emails", select=["activityid"],
            filter="statuscode eq 6 or statuscode eq 7",
            expand="email_activity_parties($select=_partyid_value,participationtypemask)",
        ):
            for party in row.get("email_activity_parties") or ():
                if party.get("participationtypemask") == 1 and party.get("_partyid_value"):
                    senders.add(str(party["_partyid_value"]).lower())
    except UpstreamError as error:
        log.warning("pending-send scan failed: %s", error.summary())
        return None
    return senders


async def _bring_forward(settings: Settings, store: Store, dataverse: DataverseClient,
                         systemuser_ids: set[str], now: datetime) -> list[DueEntry]:
    """Make the outgoing channel of these senders' mailboxes due now (one Dataverse query
    maps system users to their Entra object ids, the mailboxes' ids)."""
    if not systemuser_ids:
        return []
    try:
        owners = [str(row["azureactivedirectoryobjectid"]).lower() async for row in
                  dataverse.list("systemusers", select=["azureactivedirectoryobjectid"],
                                 filter=in_filter("systemuserid", sorted(systemuser_ids)))
                  if row.get("azureactivedirectoryobjectid")]
    except UpstreamError as error:
        log.warning("pending-send owners not found: %s", error.summary())
        return []
    quiet_for = timedelta(minutes=settings.sync_interval_min_minutes)

    async def one(owner: str) -> DueEntry | None:
        found = await store.mailboxes.get(owner)
        if found is None:
            return None
        mailbox, etag = found
        status = mailbox.channels.get(Channel.OUTGOING)
        if not mailbox.enabled or status is None or not status.enabled \
                or status.next_due_at is None or status.next_due_at <= now \
                or (status.last_cycle_at is not None and now - status.last_cycle_at < quiet_for):
            return None
        previous = mailbox.next_due_at
        status.next_due_at = now
        try:
            await store.save_mailbox(mailbox, etag, previous)
        except ConcurrencyError:  # changed meanwhile (a cycle just ran): the next tick sees
            return None           # it; the extra index row is dropped as stale then
        return DueEntry(mailbox.mailbox_id, now)

    entries = await asyncio.gather(*(one(owner) for owner in owners))
    return [e for e in entries if e is not None]


async def run_tick(
    settings: Settings, store: Store, now: datetime, *,
    dataverse: DataverseClient | None = None, limit: int = DEFAULT_LIMIT,
    tick_id: str | None = None,
) -> TickResult:
    """One scheduler tick at `now` (see module docstring)."""
    result = TickResult(tick_id or uuid.uuid4().hex)
    start = store.request_count
    schedule = Schedule.parse(settings.scheduler_schedule)
    # everything due before the next tick (list_due is inclusive, so stop a microsecond short)
    horizon = schedule.next_fire(now) - timedelta(microseconds=1)
    entries = await store.due.list_due(horizon, limit)
    result.due = len(entries)
    senders = await pending_send_senders(dataverse)
    gate = asyncio.Semaphore(CONCURRENCY)
    seen: set[str] = set()
    seen_senders: set[str] = set()

    async def one(entry: DueEntry) -> None:
        async with gate:
            found = await store.mailboxes.get(entry.mailbox_id)
            mailbox = found[0] if found else None
            if not _is_current(entry, mailbox, now, schedule):
                result.stale += 1
                if mailbox is None or mailbox.next_due_at is None or \
                        due_bucket(mailbox.next_due_at) != due_bucket(entry.due_at):
                    await store.due.remove(entry.mailbox_id, entry.due_at)
                return
            assert mailbox is not None
            if mailbox.mailbox_id in seen:  # a duplicate index row (crash between writes)
                return
            seen.add(mailbox.mailbox_id)
            seen_senders.add((mailbox.systemuser_id or "").lower())
            owner = f"{result.tick_id}:{mailbox.mailbox_id}"
            lease = await store.leases.try_acquire(
                mailbox.mailbox_id, owner, now, settings.lease_seconds)
            if lease is None:
                result.leased_elsewhere += 1
                return
            outgoing = None if senders is None else (
                (mailbox.systemuser_id or "").lower() in senders)
            await store.sync_queue.send(
                job_message(mailbox.mailbox_id, owner, entry.due_at, now, now, outgoing))
            result.enqueued += 1
            result.mailbox_ids.append(mailbox.mailbox_id)

    await asyncio.gather(*(one(entry) for entry in entries))
    if senders and dataverse is not None:
        early = await _bring_forward(settings, store, dataverse, senders - seen_senders, now)
        result.due += len(early)
        result.sent_early = len(early)
        await asyncio.gather(*(one(entry) for entry in early))
    result.storage_requests = store.request_count - start
    log.info("scheduler tick %s: due=%d enqueued=%d leased_elsewhere=%d stale=%d requests=%d",
             result.tick_id, result.due, result.enqueued, result.leased_elsewhere,
             result.stale, result.storage_requests)
    return result


__all__ = ["TickResult", "pending_send_senders", "run_tick"]
