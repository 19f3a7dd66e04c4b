"""One mailbox job from the sync queue: take the lease, run the due channels, record the
outcome on the mailbox (next due time from the interval policy or the back-off), release.

A duplicate delivery finds the lease held by the live run and returns; a delivery after the
run finished finds the mailbox no longer due. Failures are recorded per channel with the
mailbox's lifecycle rules (transient: back off, honouring Retry-After; permanent: disable).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.domain.interval import IntervalPolicy, backoff_due, next_due, next_interval
from shared.domain.mailbox import RETRYABLE_KINDS, Channel, Mailbox, MailboxError
from shared.errors import ErrorKind, UpstreamError
from shared.store import Lease
from shared.store.errors import ConcurrencyError, StoreError

from .context import SyncContext
from .incoming import IncomingEngine
from .intents import run_pending_intents
from .leasing import take_over_job_lease
from .lifecycle import MailboxService
from .outgoing import OutgoingEngine

log = logging.getLogger("sss.worker")

ChannelRunner = Callable[[SyncContext, Mailbox], Awaitable[int]]
# Appointments, contacts and tasks are another issue: register its engine here. Until then
# the channel records an empty cycle so its cadence (and the mailbox's due time) moves on.
CHANNEL_RUNNERS: dict[Channel, ChannelRunner] = {}


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


async def run_channels(ctx: SyncContext, mailbox: Mailbox, *, now: datetime,
                       keeper: LeaseKeeper | None = None, outgoing: bool | None = None
                       ) -> dict[Channel, ChannelOutcome]:
    """Run every enabled channel that is due; each channel's failure stays its own."""
    outcomes: dict[Channel, ChannelOutcome] = {}
    renew = keeper.renew if keeper else None
    for channel, status in mailbox.channels.items():
        if not status.enabled or status.next_due_at is None or status.next_due_at > now:
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
                   now: datetime, settings: Any) -> None:
    """Record each channel's cycle on the mailbox (pure: the caller saves it)."""
    policy = IntervalPolicy.from_settings(settings)
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
            due = next_due(now, interval, policy)
            if outcome.next_slot_at is not None:
                due = min(due, outcome.next_slot_at)
            mailbox.record_success(channel, outcome.moved, now, due, interval)
            continue
        error = outcome.error
        disabled = mailbox.record_failure(channel, error.kind, error.summary(), now,
                                          settings.transient_retry_limit,
                                          settings.transient_retry_minutes)
        if not disabled and mailbox.enabled and error.kind in RETRYABLE_KINDS:
            status.next_due_at = backoff_due(now, error.retry_after,
                                             settings.transient_retry_minutes)


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
    await ctx.store.leases.release(keeper.lease)
    return outcome


async def _leased_run(ctx: SyncContext, mailbox_id: str, keeper: LeaseKeeper,
                      job: Mapping[str, Any]) -> JobOutcome:
    now = ctx.clock()
    settings = ctx.settings
    found = await ctx.store.mailboxes.get(mailbox_id)
    if found is None:
        return JobOutcome("missing", mailbox_id)
    mailbox = found[0]
    due = mailbox.next_due_at
    if not mailbox.enabled or due is None or due > now:
        return JobOutcome("not_due", mailbox_id)
    await ctx.checkpoint("worker:leased")
    try:
        outcomes = await run_channels(ctx, mailbox, now=now, keeper=keeper,
                                      outgoing=job.get("outgoing"))
    except LeaseLost:
        log.warning("mailbox %s: lease lost mid-cycle; another worker has it", mailbox_id)
        return JobOutcome("lease_lost", mailbox_id)
    finished = ctx.clock()
    service = MailboxService(settings, ctx.store, ctx.graph, ctx.dataverse,
                             clock=ctx.clock)
    await ctx.checkpoint("worker:before-record")
    await service.mutate(mailbox_id,
                         lambda current: apply_outcomes(current, outcomes, finished,
                                                        settings))
    log.info("mailbox %s cycle done: %s", mailbox_id,
             {c.value: (o.moved, o.error.kind.value if o.error else "ok")
              for c, o in outcomes.items()})
    return JobOutcome("ran", mailbox_id, outcomes)


__all__ = ["CHANNEL_RUNNERS", "ChannelOutcome", "JobOutcome", "LeaseKeeper", "LeaseLost",
           "apply_outcomes", "run_channels", "run_job"]
