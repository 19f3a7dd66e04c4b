"""Faults: throttling, 5xx, dropped connections and expired delta state at the upstream calls
of a cycle, workers killed at each step, duplicate and concurrent deliveries. After each,
every message that should be tracked is tracked exactly once, with its category."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.e2e.sync_support import (
    ALEX,
    ALEX_UPN,
    ANA,
    CATEGORY,
    context,
    crm,
    cycle_at,
    deliver,
    enable,
    mailbox_status,
    messages,
    parties,
    queued_jobs,
    tick_and_drain,
)
from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e
EXPECTED = {"Renewal quote", "Weekly news", "Extra 0", "Extra 1", "Extra 2"}


async def _arrange(host: FunctionHost) -> None:
    for n in range(3):
        deliver(host, to=[ALEX_UPN], subject=f"Extra {n}", **{"from": "ana@fabrikam.com"})
    await enable(host, ALEX, tracking_option="all")


def assert_tracked_exactly_once(host: FunctionHost) -> None:
    received = [e for e in crm(host, "emails") if e.get("statuscode") == 4
                and not e["subject"].startswith("Server-side synchronization")]
    counts = Counter(e["messageid"] for e in received)
    assert all(n == 1 for n in counts.values()), counts
    assert {e["subject"] for e in received} == EXPECTED
    for e in received:
        if e["subject"] != "Weekly news":
            assert parties(e, 1)[0]["_partyid_value"] == ANA
    for message in messages(host, ALEX_UPN, "inbox"):
        if message["subject"] in EXPECTED:
            assert CATEGORY in message["categories"], message["subject"]


@pytest.mark.parametrize("service", ["graph", "dataverse"])
@pytest.mark.parametrize("fault", [
    {"kind": "status", "status": 429, "retry_after": 0},
    {"kind": "status", "status": 503, "retry_after": 0},
    {"kind": "drop"},
])
@pytest.mark.parametrize("count", [1, 3, 8])
async def test_upstream_faults_then_recovery(app_host: FunctionHost, service: str,
                                             fault: dict, count: int) -> None:
    await _arrange(app_host)
    app_host.sandbox.faults({"service": service, **fault, "count": count})
    await cycle_at(0)
    app_host.sandbox.clear_faults()
    status = (await mailbox_status(app_host, ALEX))["channels"]["incoming"]
    if status["consecutive_failures"]:
        assert status["last_error"] and status["next_due_at"]
    await cycle_at(13)
    assert_tracked_exactly_once(app_host)
    assert (await mailbox_status(app_host, ALEX))["channels"]["incoming"][
        "consecutive_failures"] == 0


async def test_expired_delta_restarts_without_duplicates(app_host: FunctionHost) -> None:
    await _arrange(app_host)
    await cycle_at(0)
    deliver(app_host, to=[ALEX_UPN], subject="Extra 2b", **{"from": "ana@fabrikam.com"})
    app_host.sandbox.faults({"service": "graph", "kind": "expire_delta", "count": 1})
    await cycle_at(13)
    rules = app_host.sandbox.control.get("/_sandbox/faults").json()["rules"]
    assert rules[0]["fired"] == 1
    EXPECTED.add("Extra 2b")
    try:
        assert_tracked_exactly_once(app_host)
    finally:
        EXPECTED.discard("Extra 2b")


@pytest.mark.parametrize("crash_at", ["worker:leased", "incoming:before-create",
                                      "incoming:after-create", "incoming:after-tag",
                                      "incoming:before-cursor", "incoming:after-cursor",
                                      "worker:before-record"])
async def test_worker_killed_at_each_step_then_rerun(app_host: FunctionHost,
                                                     crash_at: str) -> None:
    await _arrange(app_host)

    def crash(point: str) -> None:
        if point == crash_at:
            raise KeyboardInterrupt(point)

    ctx = await context()
    ctx.hooks.append(crash)
    with pytest.raises(KeyboardInterrupt):
        await cycle_at(0, ctx)
    ctx.hooks.clear()
    assert await cycle_at(1, ctx) == []  # the dead worker's lease still holds
    await cycle_at(ctx.settings.lease_seconds / 60 + 1, ctx)
    assert_tracked_exactly_once(app_host)
    # and the shared rows say so, with this mailbox's copy: a replay of a page whose
    # categories were set but whose rows were not must not read as "category removed"
    for message in messages(app_host, ALEX_UPN, "inbox"):
        if message["subject"] in EXPECTED:
            found = await ctx.store.tracked.get(message["internetMessageId"])
            assert found is not None and found[0].state == "tracked", message["subject"]
            assert found[0].copies.get(ALEX) == message["immutableId"], message["subject"]
    assert await ctx.store.untracked.keys(ALEX) == set()


async def test_same_job_delivered_twice(app_host: FunctionHost) -> None:
    await _arrange(app_host)
    await app_host.timer("scheduler_tick")
    [job] = await queued_jobs()
    await asyncio.gather(app_host.queue("sync_mailbox", job),
                         app_host.queue("sync_mailbox", job, dequeue_count=2))
    await app_host.queue("sync_mailbox", job, dequeue_count=3)  # after it finished
    assert_tracked_exactly_once(app_host)
    status = await mailbox_status(app_host, ALEX)
    assert status["channels"]["incoming"]["consecutive_failures"] == 0


async def test_overlapping_ticks_enqueue_once(app_host: FunctionHost) -> None:
    await _arrange(app_host)
    await asyncio.gather(app_host.timer("scheduler_tick"), app_host.timer("scheduler_tick"))
    jobs = await queued_jobs()
    assert [j["mailbox_id"] for j in jobs] == [ALEX]


async def test_retry_after_is_honoured_and_shown(app_host: FunctionHost) -> None:
    await _arrange(app_host)
    app_host.sandbox.faults({"service": "graph", "kind": "status", "status": 429,
                             "retry_after": 1800, "count": 10})
    await cycle_at(0)
    app_host.sandbox.clear_faults()
    status = await mailbox_status(app_host, ALEX)
    incoming = status["channels"]["incoming"]
    assert incoming["consecutive_failures"] == 1
    assert "429" in incoming["last_error"] or "transient" in incoming["last_error"]
    assert status["recent_errors"] and status["recent_errors"][-1]["channel"] == "incoming"
    # 30 minutes of Retry-After beat our 5-minute back-off: other channels run, incoming not
    for outcome in await cycle_at(13):
        assert "incoming" not in {c.value for c in outcome.channels}
    await cycle_at(31)
    assert_tracked_exactly_once(app_host)


async def test_permanent_error_disables_the_mailbox(app_host: FunctionHost) -> None:
    await _arrange(app_host)
    app_host.sandbox.faults({"service": "graph", "kind": "status", "status": 403,
                             "count": 1})
    await cycle_at(0)
    status = await mailbox_status(app_host, ALEX)
    assert status["enabled"] is False
    assert "incoming" in status["disabled_reason"]
    assert status["next_due_at"] is None
    assert await tick_and_drain(app_host) == []
