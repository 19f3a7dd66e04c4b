"""Cadence end to end: the next due counts from the cycle's start, the tick that falls on it
releases the next cycle (not the tick after), a cycle that overran releases its successor
itself, and the outgoing channel runs first. Time is driven through the SyncContext clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.sync_support import (
    ALEX,
    ALEX_UPN,
    context,
    deliver,
    enable,
    mailbox_status,
    queued_jobs,
    tick_and_drain,
)
from tests.e2e.test_sync_outgoing import outbox, pending_send
from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def on_the_minute(after: datetime) -> datetime:
    return after.replace(second=0, microsecond=0) + timedelta(minutes=1)


class Clock:
    """The fake time of one worker: set by the test, moved on at a named step of the cycle."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.at_step: dict[str, datetime] = {}

    def __call__(self) -> datetime:
        return self.now

    def hook(self, point: str) -> None:
        if point in self.at_step:
            self.now = self.at_step.pop(point)


async def tick_and_run(ctx: Any, clock: Clock, tick_at: datetime, *,
                       began: Callable[[datetime], datetime] = lambda t: t,
                       cycle: timedelta = timedelta(0)) -> tuple[Any, list[dict[str, Any]]]:
    """A tick at `tick_at`, then each job it released: begun at `began(tick)`, ending
    `cycle` later."""
    from shared.sync.scheduler import run_tick
    from shared.sync.worker import run_job

    tick = await run_tick(ctx.settings, ctx.store, tick_at, dataverse=ctx.dataverse)
    jobs = await queued_jobs()
    for job in jobs:
        clock.now = began(tick_at)
        clock.at_step["worker:before-record"] = clock.now + cycle
        assert (await run_job(ctx, job)).status == "ran"
    return tick, jobs


async def channels(host: FunctionHost) -> dict[str, dict[str, Any]]:
    found = (await mailbox_status(host, ALEX))["channels"]
    return {name: status for name, status in found.items() if status["enabled"]}


async def test_function_app_cycle_counts_its_next_due_from_its_start(
        app_host: FunctionHost) -> None:
    await enable(app_host, ALEX)
    [job] = await tick_and_drain(app_host)  # scheduler_tick and sync_mailbox, real clock
    started = at(job["start_at"])
    for name, status in (await channels(app_host)).items():
        finished = at(status["last_cycle_at"])
        interval = timedelta(minutes=status["interval_minutes"])
        assert finished > started, name
        assert at(status["next_due_at"]) == started + interval, name


async def test_next_cycle_starts_exactly_one_interval_after_the_last_started(
        app_host: FunctionHost) -> None:
    await enable(app_host, ALEX)
    ctx = await context()
    clock = Clock(datetime.now(UTC))
    ctx.clock = clock
    ctx.hooks.append(clock.hook)
    t0 = on_the_minute(datetime.now(UTC))
    # the worker takes the job 2 s after the tick and the cycle lasts 40 s
    tick, _ = await tick_and_run(ctx, clock, t0, began=lambda t: t + timedelta(seconds=2),
                                 cycle=timedelta(seconds=40))
    assert tick.enqueued == 1
    status = await channels(app_host)
    due = {name: at(s["next_due_at"]) for name, s in status.items()}
    for name, s in status.items():
        assert due[name] == t0 + timedelta(minutes=s["interval_minutes"]), name
    first_due = min(due.values())
    assert first_due.second == 0  # on a tick: the tick at that minute releases it
    before, _ = await tick_and_run(ctx, clock, first_due - timedelta(minutes=1))
    assert before.enqueued == 0
    on_time, [job] = await tick_and_run(ctx, clock, first_due)
    assert on_time.enqueued == 1 and at(job["start_at"]) == first_due


async def test_a_cycle_longer_than_its_interval_releases_the_next_as_it_ends(
        app_host: FunctionHost) -> None:
    await enable(app_host, ALEX)
    ctx = await context()
    clock = Clock(datetime.now(UTC))
    ctx.clock = clock
    ctx.hooks.append(clock.hook)
    t0 = on_the_minute(datetime.now(UTC))
    overran = t0 + timedelta(minutes=13)  # longer than any interval
    _, [first] = await tick_and_run(ctx, clock, t0, cycle=overran - t0)
    assert at(first["start_at"]) == t0
    [handed] = await queued_jobs()  # the ending cycle released its successor at once
    assert at(handed["start_at"]) == overran
    assert handed["lease_owner"].startswith("handoff:")
    from shared.sync.scheduler import run_tick
    from shared.sync.worker import run_job

    tick = await run_tick(ctx.settings, ctx.store, on_the_minute(overran),
                          dataverse=ctx.dataverse)
    assert tick.enqueued == 0 and tick.leased_elsewhere == 1  # the handed-over job holds it
    clock.now = overran + timedelta(seconds=1)
    assert (await run_job(ctx, handed)).status == "ran"
    for name, s in (await channels(app_host)).items():
        assert at(s["next_due_at"]) == overran + timedelta(minutes=s["interval_minutes"]), name


async def test_pending_send_goes_out_even_when_the_worker_dies_in_the_incoming_channel(
        app_host: FunctionHost) -> None:
    for n in range(3):
        deliver(app_host, to=[ALEX_UPN], subject=f"Extra {n}", **{"from": "ana@fabrikam.com"})
    await enable(app_host, ALEX, tracking_option="all")
    pending_send(app_host)
    ctx = await context()

    def killed(point: str) -> None:
        if point.startswith("incoming:"):
            raise KeyboardInterrupt(point)  # not an Exception: the cycle stops here

    ctx.hooks.append(killed)
    from shared.sync.scheduler import run_tick
    from shared.sync.worker import run_job

    now = datetime.now(UTC)
    ctx.clock = lambda: now
    await run_tick(ctx.settings, ctx.store, now, dataverse=ctx.dataverse)
    [job] = await queued_jobs()
    with pytest.raises(KeyboardInterrupt):
        await run_job(ctx, job)
    assert [m["subject"] for m in outbox(app_host)] == ["Proposal"]
