"""One mailbox job from the sync queue: take the lease, run the due channels, record the
outcome on the mailbox (next due time from the interval policy or the back-off), release.

A duplicate delivery finds the lease held by the live run and returns; a delivery after the
run finished finds the mailbox no longer due. Failures are recorded per channel with the
mailbox's lifecycle rules (transient: back off, honouring Retry-After; permanent: disable).
The outgoing channel runs first, so Pending Send email goes out whatever the others do. The
next due counts from the cycle's planned start (shared/domain/cadence.py), and a cycle whose
successor the ticks cannot release in time releases it itself.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.domain.cadence import cycle_start, due_before, handoff_start, not_early
from shared.domain.interval import IntervalPolicy, backoff_due, next_due, next_interval
from shared.domain.mailbox import RETRYABLE_KINDS, Channel, Mailbox, MailboxError
from shared.domain.ncrontab import Schedule
from shared.errors import ErrorKind, UpstreamError
from shared.store import Lease
from shared.store.errors import ConcurrencyError, StoreError

from .context import SyncContext
from .incoming import IncomingEngine
from .intents import run_pending_intents
from .leasing import hand_over, job_message, take_over_job_lease
from .lifecycle import MailboxService
from .outgoing import OutgoingEngine

log = logging.getLogger("sss.worker")

ChannelRunner = Callable[[SyncContext, Mailbox], Awaitable[int]]
# Appointments, contacts and tasks are another issue: register its engine here. Until then
# the channel records an empty cycle so its cadence (and the mailbox's due time) moves on.
CHANNEL_RUNNERS: dict[Channel, ChannelRunner] = {}
# Pending Send first: mail a user sent must not wait behind (or fall with) a long or failing
# incoming cycle, nor be cut off when the cycle runs out of lease.
CHANNEL_ORDER = (Channel.OUTGOING, Channel.INCOMING, Channel.ACT)


class LeaseLost(Exception):
    """Another worker took the mailbox over (our lease expired): stop touching it."""


@dataclass
class ChannelOutcome:
    moved: int = 0
    error: UpstreamError | None = None
    next_slot_at: datetime | None = None
    item_errors: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class JobOutcome:
    status: str  # ran | leased_elsewhere | not_due | missing | lease_lost
    mailbox_id: str
    channels: dict[Channel, ChannelOutcome] = field(default_factory=dict)


class LeaseKeeper:
    """Renews the lease between pages once a third of it has passed."""

    def __init__(self, ctx: SyncContext, lease: Lease) -> None:
        self.ctx = ctx
        self.lease = lease
        self.renewed_at = ctx.clock()
        self.handed_over = False  # the lease went to the next cycle's job: do not release it

    async def renew(self) -> None:
        now = self.ctx.clock()
        if (now - self.renewed_at).total_seconds() < self.ctx.settings.lease_seconds / 3:
            return
        renewed = await self.ctx.store.leases.renew(self.lease, now,
                                                    self.ctx.settings.lease_seconds)
        if renewed is None:
            raise LeaseLost(self.lease.mailbox_id)
        self.lease, self.renewed_at = renewed, now


def _as_upstream(error: Exception) -> UpstreamError:
    if isinstance(error, UpstreamError):
        return error
    if isinstance(error, ConcurrencyError):
        return UpstreamError("store: changed concurrently", kind=ErrorKind.CONFLICT,
                             service="store")
    if isinstance(error, StoreError):
        return UpstreamError("store unavailable", kind=ErrorKind.TRANSIENT, service="store")
    # unknown failures are retried like transient ones, so a bug cannot disable every mailbox
    # at once; the transient limit still stops a mailbox that fails forever
    return UpstreamError(f"internal error {type(error).__name__}", kind=ErrorKind.TRANSIENT,
                         service="worker")


def _in_order(mailbox: Mailbox) -> list[Channel]:
    return sorted(mailbox.channels, key=lambda c: CHANNEL_ORDER.index(c)
                  if c in CHANNEL_ORDER else len(CHANNEL_ORDER))


async def run_channels(ctx: SyncContext, mailbox: Mailbox, *, now: datetime,
                       keeper: LeaseKeeper | None = None, outgoing: bool | None = None,
                       before: datetime | None = None) -> dict[Channel, ChannelOutcome]:
    """Run every enabled channel due at `now` (or, given `before`, due before it), outgoing
    first; each channel's failure stays its own."""
    outcomes: dict[Channel, ChannelOutcome] = {}
    renew = keeper.renew if keeper else None
    for channel in _in_order(mailbox):
        status = mailbox.channels[channel]
        due = status.next_due_at
        if not status.enabled or due is None or (due >= before if before else due > now):
            continue
        outcome = ChannelOutcome()
        try:
            if channel is Channel.INCOMING:
                outcome.moved = (await IncomingEngine(ctx, mailbox, renew=renew).run()).moved
                # add-in actions the retry queue gave up on: the cycle carries them out
                outcome.moved += await run_pending_intents(ctx, mailbox.mailbox_id)
            elif channel is Channel.OUTGOING:
                if outgoing is not False:  # the tick's scan saw nothing pending: no query
                    result = await OutgoingEngine(ctx, mailbox).run()
                    outcome.moved = result.moved
                    outcome.next_slot_at = result.next_slot_at
                    outcome.item_errors = result.errors
            elif channel in CHANNEL_RUNNERS:
                outcome.moved = await CHANNEL_RUNNERS[channel](ctx, mailbox)
        except LeaseLost:
            raise
        except Exception as error:  # noqa: BLE001 - recorded on the mailbox, never lost
            outcome.error = _as_upstream(error)
            if not isinstance(error, UpstreamError):
                log.exception("mailbox %s channel %s failed", mailbox.mailbox_id, channel.value)
            else:
                log.warning("mailbox %s channel %s failed: %s", mailbox.mailbox_id,
                            channel.value, outcome.error.summary())
        outcomes[channel] = outcome
    return outcomes


def apply_outcomes(mailbox: Mailbox, outcomes: Mapping[Channel, ChannelOutcome],
                   now: datetime, settings: Any, *, started: datetime | None = None) -> None:
    """Record each channel's cycle, which ended at `now`, on the mailbox (pure: the caller
    saves it). The next due counts from `started` (the cycle's start; `now` if unknown); a
    back-off or a send slot counts from `now` and is never released early."""
    policy = IntervalPolicy.from_settings(settings)
    schedule = Schedule.parse(settings.scheduler_schedule)
    for channel, outcome in outcomes.items():
        status = mailbox.channels.get(channel)
        if status is None:
            continue
        for activity_id, reason in outcome.item_errors:
            mailbox._remember(MailboxError(  # noqa: SLF001 - email-level error, not a failure
                at=now, channel=channel, kind=ErrorKind.PERMANENT,
                message=f"email {activity_id}: {reason}"))
        if outcome.error is None:
            empties = 0 if outcome.moved > 0 else status.consecutive_empty_cycles + 1
            interval = next_interval(status.interval_minutes, outcome.moved, empties, policy)
            due = next_due(started or now, interval, policy)
            if outcome.next_slot_at is not None:
                due = min(due, not_early(outcome.next_slot_at, schedule))
            mailbox.record_success(channel, outcome.moved, now, due, interval)
            continue
        error = outcome.error
        disabled = mailbox.record_failure(channel, error.kind, error.summary(), now,
                                          settings.transient_retry_limit,
                                          settings.transient_retry_minutes)
        if not disabled and mailbox.enabled and error.kind in RETRYABLE_KINDS:
            status.next_due_at = not_early(backoff_due(
                now, error.retry_after, settings.transient_retry_minutes), schedule)


async def run_job(ctx: SyncContext, job: Mapping[str, Any], *, run_id: str | None = None
                  ) -> JobOutcome:
    """Run one queued job (see module docstring)."""
    mailbox_id = str(job["mailbox_id"])
    run_owner = run_id or f"run:{uuid.uuid4().hex}"
    now = ctx.clock()
    settings = ctx.settings
    lease = await take_over_job_lease(ctx.store.leases, mailbox_id,
                                      str(job.get("lease_owner") or ""), run_owner, now,
                                      settings.lease_seconds)
    if lease is None:
        return JobOutcome("leased_elsewhere", mailbox_id)
    keeper = LeaseKeeper(ctx, lease)
    try:
        outcome = await _leased_run(ctx, mailbox_id, keeper, job)
    except Exception:
        await ctx.store.leases.release(keeper.lease)
        raise
    # a BaseException (host shutdown, cancellation, a killed worker) skips this on purpose:
    # the lease then expires and a later tick takes the mailbox over
    if not keeper.handed_over:
        await ctx.store.leases.release(keeper.lease)
    return outcome


async def _leased_run(ctx: SyncContext, mailbox_id: str, keeper: LeaseKeeper,
                      job: Mapping[str, Any]) -> JobOutcome:
    now = ctx.clock()
    settings = ctx.settings
    schedule = Schedule.parse(settings.scheduler_schedule)
    planned = _planned_start(job)
    before = due_before(now, planned, schedule)
    found = await ctx.store.mailboxes.get(mailbox_id)
    if found is None:
        return JobOutcome("missing", mailbox_id)
    mailbox = found[0]
    due = mailbox.next_due_at
    if not mailbox.enabled or due is None or due >= before:
        return JobOutcome("not_due", mailbox_id)
    await ctx.checkpoint("worker:leased")
    try:
        outcomes = await run_channels(ctx, mailbox, now=now, keeper=keeper,
                                      outgoing=job.get("outgoing"), before=before)
    except LeaseLost:
        log.warning("mailbox %s: lease lost mid-cycle; another worker has it", mailbox_id)
        return JobOutcome("lease_lost", mailbox_id)
    await ctx.checkpoint("worker:before-record")
    finished = ctx.clock()
    service = MailboxService(settings, ctx.store, ctx.graph, ctx.dataverse,
                             clock=ctx.clock)
    started = cycle_start(planned, now, schedule)
    recorded = await service.mutate(
        mailbox_id, lambda current: apply_outcomes(current, outcomes, finished, settings,
                                                   started=started))
    await _hand_over_next(ctx, keeper, recorded.next_due_at, finished, schedule)
    log.info("mailbox %s cycle done: %s", mailbox_id,
             {c.value: (o.moved, o.error.kind.value if o.error else "ok")
              for c, o in outcomes.items()})
    return JobOutcome("ran", mailbox_id, outcomes)


def _planned_start(job: Mapping[str, Any]) -> datetime | None:
    try:
        planned = datetime.fromisoformat(str(job["start_at"]))
    except (KeyError, ValueError):
        return None  # a job queued before planned starts existed: count from its start
    return planned if planned.tzinfo is not None else None


async def _hand_over_next(ctx: SyncContext, keeper: LeaseKeeper, due: datetime | None,
                          finished: datetime, schedule: Schedule) -> None:
    """Release the next cycle now when no tick can release it in time (cadence.py)."""
    start = handoff_start(due, finished, schedule)
    if start is None or due is None:
        return
    delay = math.ceil(max(0.0, (start - finished).total_seconds()))
    owner = f"handoff:{uuid.uuid4().hex}:{keeper.lease.mailbox_id}"
    until = finished + timedelta(seconds=delay + ctx.settings.lease_seconds)
    lease = await hand_over(ctx.store.leases, keeper.lease, owner, until)
    if lease is None:
        return  # lost meanwhile: whoever holds it now runs the mailbox
    keeper.lease = lease  # should the send fail, run_job gives this lease back for a tick
    await ctx.store.sync_queue.send(
        job_message(lease.mailbox_id, owner, due, finished, start, None),
        visibility_timeout=delay or None)
    keeper.handed_over = True


__all__ = ["CHANNEL_RUNNERS", "ChannelOutcome", "JobOutcome", "LeaseKeeper", "LeaseLost",
           "apply_outcomes", "run_channels", "run_job"]
