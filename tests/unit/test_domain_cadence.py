"""The cadence promise, proved with a driven clock: scheduler ticks on their NCRONTAB schedule,
queue delays, cycles of any length, busy and quiet mailboxes.

The simulation uses the production rules: the tick's `released_by_tick`, the worker's
`due_before`, `cycle_start`, `apply_outcomes` (which records the next due) and
`handoff_start`. A cycle's start is its planned start: the time a tick (or the cycle before,
handing over) released it to the queue; the worker begins it `delay` later.

What holds, for every schedule, every cycle length and a queue delay below 50 s and below the
shortest gap between two ticks:
- gap to the next start <= max(interval, work) where work = queue delay + cycle length, and
  > max(interval, work) - the longest gap between two ticks;
- a cycle longer than its interval is followed at once (gap == work);
- with the default schedule (every minute on the minute) and cycles that end within their
  interval: gap == interval exactly, so 2, 5 and 12 minutes mean 2, 5 and 12;
- cycles last at most host.json's functionTimeout (10 minutes), so no gap exceeds
  SYNC_INTERVAL_MAX_MINUTES (12).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.cadence import cycle_start, due_before, handoff_start, released_by_tick
from shared.domain.mailbox import Channel, Mailbox, TestResult
from shared.domain.ncrontab import Schedule
from shared.settings import Settings, load_settings
from shared.sync.worker import ChannelOutcome, apply_outcomes

SETTINGS = load_settings({
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "DATAVERSE_URL": "https://example.crm.dynamics.com",
    "ENTRA_TENANT_ID": "t", "ENTRA_CLIENT_ID": "c", "ENTRA_CLIENT_SECRET": "s",
    "API_AUDIENCE": "api://x",
})
DEFAULT_SCHEDULE = Settings.model_fields["scheduler_schedule"].default
MAX = timedelta(minutes=SETTINGS.sync_interval_max_minutes)
FUNCTION_TIMEOUT = timedelta(minutes=10)  # host.json functionTimeout
TICK = timedelta(minutes=1)
MAX_DELAY = timedelta(seconds=50)  # queue delay; host.json maxPollingInterval is 2 s
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Cycle:
    planned: datetime  # released to the queue (the cycle's start)
    began: datetime  # the worker took it
    finished: datetime
    interval: timedelta  # what this cycle set for the next


def one_channel_mailbox(now: datetime) -> Mailbox:
    mailbox = Mailbox.new(owner_object_id="oid-1", email="alex@contoso.com", now=now)
    mailbox.approve(now)
    mailbox.apply_test_results({c: TestResult.SUCCESS for c in mailbox.channels}, now)
    for channel in (Channel.OUTGOING, Channel.ACT):
        mailbox.channels[channel].enabled = False
        mailbox.channels[channel].next_due_at = None
    return mailbox


def simulate(enabled_at: datetime, runs: list[tuple[int, timedelta, timedelta]],
             release_lag: timedelta = timedelta(0), expression: str = DEFAULT_SCHEDULE
             ) -> list[Cycle]:
    """Cycles of one mailbox; each run is (items moved, queue delay, cycle length). The lease
    is given back `release_lag` after a cycle ends; ticks before that find it held."""
    schedule = Schedule.parse(expression)
    config = SETTINGS.model_copy(update={"scheduler_schedule": expression})
    mailbox = one_channel_mailbox(enabled_at)
    tick = schedule.next_fire(enabled_at)  # the first tick that sees the enabled mailbox
    planned = tick
    cycles = []
    for moved, delay, length in runs:
        began = planned + delay
        due = mailbox.next_due_at
        assert due is not None and due < due_before(began, planned, schedule)  # it runs
        finished = began + length
        apply_outcomes(mailbox, {Channel.INCOMING: ChannelOutcome(moved=moved)}, finished,
                       config, started=cycle_start(planned, began, schedule))
        interval = mailbox.channels[Channel.INCOMING].interval_minutes
        assert interval is not None
        cycles.append(Cycle(planned, began, finished, timedelta(minutes=interval)))
        following = mailbox.next_due_at
        assert following is not None
        handed = handoff_start(following, finished, schedule)
        if handed is not None:
            planned = handed
            continue
        tick = schedule.next_fire(finished)
        while tick < finished + release_lag or not released_by_tick(following, tick, schedule):
            tick = schedule.next_fire(tick)
        planned = tick
    return cycles


def gaps(cycles: list[Cycle]) -> list[timedelta]:
    return [b.planned - a.planned for a, b in zip(cycles, cycles[1:], strict=False)]


def tick_gaps(expression: str) -> tuple[timedelta, timedelta]:
    """The shortest and the longest gap between two ticks, over two days."""
    schedule = Schedule.parse(expression)
    ticks = [schedule.next_fire(T0)]
    while ticks[-1] < T0 + timedelta(days=2):
        ticks.append(schedule.next_fire(ticks[-1]))
    found = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    return min(found), max(found)


def within(interval_minutes: int) -> st.SearchStrategy[tuple[timedelta, timedelta]]:
    """A queue delay (< 50 s) and a cycle length that together stay within the interval."""
    delays = st.integers(0, int(MAX_DELAY.total_seconds() * 1000) - 1)
    return delays.flatmap(lambda delay_ms: st.tuples(
        st.just(timedelta(milliseconds=delay_ms)),
        st.integers(0, interval_minutes * 60_000 - delay_ms).map(
            lambda ms: timedelta(milliseconds=ms))))


enabled_at = st.datetimes(datetime(2026, 1, 1), datetime(2026, 12, 31), timezones=st.just(UTC))
lags = st.integers(0, 5000).map(lambda ms: timedelta(milliseconds=ms))


def test_default_schedule_ticks_every_minute() -> None:
    assert DEFAULT_SCHEDULE == SETTINGS.scheduler_schedule
    assert tick_gaps(DEFAULT_SCHEDULE) == (TICK, TICK)


@settings(max_examples=60, deadline=None)
@given(enabled_at, st.lists(within(2), min_size=3, max_size=12), lags)
def test_busy_mailbox_starts_every_2_minutes_exactly(start, runs, lag) -> None:
    cycles = simulate(start, [(SETTINGS.busy_items_threshold, d, n) for d, n in runs], lag)
    assert all(c.interval == timedelta(minutes=2) for c in cycles)
    assert gaps(cycles) == [timedelta(minutes=2)] * (len(cycles) - 1)


@settings(max_examples=60, deadline=None)
@given(enabled_at, st.lists(within(5), min_size=3, max_size=12), lags)
def test_normal_mailbox_starts_every_5_minutes_exactly(start, runs, lag) -> None:
    cycles = simulate(start, [(3, d, n) for d, n in runs], lag)
    assert gaps(cycles) == [timedelta(minutes=5)] * (len(cycles) - 1)


@settings(max_examples=60, deadline=None)
@given(enabled_at, st.lists(within(5), min_size=10, max_size=16), lags)
def test_quiet_mailbox_reaches_12_minutes_and_never_more(start, runs, lag) -> None:
    cycles = simulate(start, [(0, d, n) for d, n in runs], lag)
    assert gaps(cycles) == [c.interval for c in cycles[:-1]]
    assert max(gaps(cycles)) == MAX == timedelta(minutes=12)


def runs_any_length(max_delay: timedelta) -> st.SearchStrategy[list]:
    return st.lists(st.tuples(
        st.sampled_from([0, 0, 0, 3, 20, 100]),
        st.integers(0, int(max_delay.total_seconds() * 1000) - 1).map(
            lambda ms: timedelta(milliseconds=ms)),
        st.integers(0, int(FUNCTION_TIMEOUT.total_seconds() * 1000)).map(
            lambda ms: timedelta(milliseconds=ms)),
    ), min_size=2, max_size=20)


SCHEDULES = {expression: tick_gaps(expression) for expression in (
    DEFAULT_SCHEDULE, "0 */5 * * * *", "30 */2 * * * *", "0,20,40 * * * * *", "0 */7 * * * *",
    "15 * 8-17 * * *",  # every minute in office hours, nothing at night
)}


@settings(max_examples=150, deadline=None)
@given(enabled_at, st.sampled_from(sorted(SCHEDULES)).flatmap(
    lambda e: st.tuples(st.just(e), runs_any_length(min(SCHEDULES[e][0], MAX_DELAY)))), lags)
def test_no_gap_exceeds_the_interval_or_the_cycle_before(start, schedule_runs, lag) -> None:
    """Queue delays stay below the schedule's shortest tick gap (else the start counts from
    when the worker began: test_the_start_a_worker_began_late_counts_from_when_it_began)."""
    expression, runs = schedule_runs
    cycles = simulate(start, runs, lag, expression)
    period = SCHEDULES[expression][1]
    for cycle, gap in zip(cycles, gaps(cycles), strict=False):
        work = cycle.finished - cycle.planned
        bound = max(cycle.interval, work)
        assert bound - period < gap <= bound
        if work > cycle.interval:
            assert gap == work  # the next cycle starts as the long one ends
        assert gap <= MAX  # cycles end within the function timeout


@settings(max_examples=100, deadline=None)
@given(enabled_at, runs_any_length(MAX_DELAY), lags)
def test_default_schedule_gap_is_exactly_the_interval_or_the_long_cycle(start, runs, lag) -> None:
    cycles = simulate(start, runs, lag)
    on_grid = True
    for cycle, gap in zip(cycles, gaps(cycles), strict=False):
        on_grid = on_grid and cycle.planned.second == cycle.planned.microsecond == 0
        work = cycle.finished - cycle.planned
        if on_grid and work <= cycle.interval:
            assert gap == cycle.interval
        elif work > cycle.interval:
            assert gap == work
        on_grid = cycle.planned.second == cycle.planned.microsecond == 0 and work <= cycle.interval


def test_the_start_a_worker_began_late_counts_from_when_it_began() -> None:
    schedule = Schedule.parse(DEFAULT_SCHEDULE)
    assert cycle_start(T0, T0 + timedelta(seconds=90), schedule) == T0
    assert cycle_start(T0, T0 + timedelta(minutes=2), schedule) == T0 + timedelta(minutes=2)
    assert cycle_start(None, T0, schedule) == T0
    assert cycle_start(T0 + timedelta(seconds=1), T0, schedule) == T0  # another clock


def test_handoff_only_when_no_tick_can_release_in_time() -> None:
    schedule = Schedule.parse(DEFAULT_SCHEDULE)
    end = T0 + timedelta(seconds=30)
    assert handoff_start(T0 + timedelta(minutes=5), end, schedule) is None
    assert handoff_start(T0 + timedelta(minutes=2), end, schedule) is None
    assert handoff_start(T0 + timedelta(seconds=90), end, schedule) == T0 + timedelta(seconds=90)
    assert handoff_start(T0 + timedelta(seconds=45), end, schedule) == T0 + timedelta(seconds=45)
    assert handoff_start(T0, end, schedule) == end  # overran its interval: at once
    assert handoff_start(None, end, schedule) is None
