"""Adaptive cadence: within bounds, quiet mailboxes reach the maximum, none waits longer."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from shared.domain.interval import (
    DEFAULT_POLICY,
    IntervalPolicy,
    backoff_due,
    next_due,
    next_interval,
)

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def test_defaults_match_dynamics():
    p = DEFAULT_POLICY
    assert (p.normal, p.minimum, p.maximum) == (5, 2, 12)
    assert (p.busy_items_threshold, p.quiet_cycles_threshold) == (20, 3)


def test_from_settings_reads_the_interval_settings():
    s = SimpleNamespace(
        sync_interval_minutes=6,
        sync_interval_min_minutes=3,
        sync_interval_max_minutes=10,
        busy_items_threshold=50,
        quiet_cycles_threshold=4,
    )
    p = IntervalPolicy.from_settings(s)
    assert (p.normal, p.minimum, p.maximum, p.busy_items_threshold, p.quiet_cycles_threshold) == (
        6, 3, 10, 50, 4,
    )


@pytest.mark.parametrize(
    "kwargs",
    [dict(minimum=6, normal=5), dict(normal=13), dict(minimum=0),
     dict(busy_items_threshold=0), dict(quiet_cycles_threshold=0), dict(quiet_step=0)],
)
def test_incoherent_policy_is_refused(kwargs):
    with pytest.raises(ValueError):
        IntervalPolicy(**kwargs)


def test_busy_halves_to_minimum():
    assert next_interval(5, 20, 0) == 2
    assert next_interval(None, 100, 0) == 2
    p = IntervalPolicy(normal=8, minimum=2, maximum=12)
    assert next_interval(8, 25, 0, p) == 4
    assert next_interval(4, 25, 0, p) == 2
    assert next_interval(2, 25, 0, p) == 2


def test_busy_after_quiet_reacts_at_once():
    # a mailbox at the 12-minute maximum that suddenly gets a lot of mail
    assert next_interval(12, 30, 0) == 2


def test_quiet_grows_by_step_and_caps():
    assert next_interval(5, 0, 2) == 5  # not yet quiet
    assert next_interval(5, 0, 3) == 7
    assert next_interval(7, 0, 4) == 9
    assert next_interval(11, 0, 6) == 12
    assert next_interval(12, 0, 7) == 12


def test_ordinary_activity_returns_to_normal():
    assert next_interval(2, 3, 0) == 5
    assert next_interval(12, 1, 0) == 5


def test_out_of_bounds_previous_is_clamped():
    assert next_interval(60, 0, 10) == 12
    assert next_interval(-3, 0, 10) == 7


def test_next_due_clamps():
    assert next_due(NOW, 5) == NOW + timedelta(minutes=5)
    assert next_due(NOW, 99) == NOW + timedelta(minutes=12)
    assert next_due(NOW, 0) == NOW + timedelta(minutes=2)


def test_backoff_honours_larger_of_retry_after_and_ours():
    assert backoff_due(NOW, None, 5) == NOW + timedelta(minutes=5)
    assert backoff_due(NOW, 30, 5) == NOW + timedelta(minutes=5)
    assert backoff_due(NOW, 1800, 5) == NOW + timedelta(seconds=1800)
    assert backoff_due(NOW, -5, 1) == NOW + timedelta(minutes=1)


policies = st.builds(
    lambda lo, mid, hi, busy, quiet, step: IntervalPolicy(
        normal=lo + mid, minimum=lo, maximum=lo + mid + hi,
        busy_items_threshold=busy, quiet_cycles_threshold=quiet, quiet_step=step,
    ),
    st.integers(1, 10), st.integers(0, 10), st.integers(0, 30),
    st.integers(1, 100), st.integers(1, 10), st.integers(1, 5),
)


@given(policies, st.one_of(st.none(), st.integers(-100, 200)), st.integers(0, 1000),
       st.integers(0, 100))
def test_always_within_bounds(policy, prev, items, empty):
    result = next_interval(prev, items, empty, policy)
    assert policy.minimum <= result <= policy.maximum


@given(policies, st.integers(1, 60))
def test_quiet_mailbox_reaches_max_and_stays(policy, start):
    interval = policy.clamp(start)
    empty = 0
    span = (policy.maximum - policy.minimum) // policy.quiet_step
    bound = policy.quiet_cycles_threshold + span + 1
    for _ in range(bound):
        empty += 1
        interval = next_interval(interval, 0, empty, policy)
        assert interval <= policy.maximum
    assert interval == policy.maximum
    for _ in range(5):
        empty += 1
        interval = next_interval(interval, 0, empty, policy)
        assert interval == policy.maximum


@given(policies, st.integers(-100, 500))
def test_due_never_later_than_max(policy, minutes):
    due = next_due(NOW, minutes, policy)
    assert NOW + timedelta(minutes=policy.minimum) <= due <= NOW + timedelta(minutes=policy.maximum)


class MailboxCadence(RuleBasedStateMachine):
    """A mailbox living through random busy/quiet/ordinary cycles under the default policy."""

    def __init__(self):
        super().__init__()
        self.policy = DEFAULT_POLICY
        self.interval = None
        self.empty = 0
        self.last_cycle = NOW
        self.due = NOW

    def _cycle(self, items):
        self.last_cycle = self.due
        self.empty = self.empty + 1 if items == 0 else 0
        self.interval = next_interval(self.interval, items, self.empty, self.policy)
        self.due = next_due(self.last_cycle, self.interval, self.policy)

    @rule(items=st.integers(20, 500))
    def busy(self, items):
        self._cycle(items)
        assert self.interval <= self.policy.normal // 2 or self.interval == self.policy.minimum

    @rule()
    def quiet(self):
        before = self.interval
        self._cycle(0)
        if self.empty >= self.policy.quiet_cycles_threshold and before is not None:
            grown = max(before, self.policy.normal) + self.policy.quiet_step
            assert self.interval == min(grown, self.policy.maximum)

    @rule(items=st.integers(1, 19))
    def ordinary(self, items):
        self._cycle(items)
        assert self.interval == self.policy.normal

    @invariant()
    def bounded(self):
        if self.interval is not None:
            assert self.policy.minimum <= self.interval <= self.policy.maximum
        assert self.due - self.last_cycle <= timedelta(minutes=self.policy.maximum)


TestMailboxCadence = MailboxCadence.TestCase
