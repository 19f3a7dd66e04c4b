"""30 messages per minute per mailbox as a sliding window."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.sendrate import WINDOW, allowance, prune

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def test_empty_history_allows_limit():
    a = allowance([], NOW)
    assert (a.allowed, a.next_slot_at) == (30, NOW)


def test_counts_only_inside_window():
    recent = [NOW - timedelta(seconds=s) for s in (1, 10, 59, 60, 61, 3600)]
    a = allowance(recent, NOW, limit=5)
    assert a.allowed == 2  # 1, 10, 59 seconds ago are inside; 60 s ago just left


def test_full_window_says_when_next_slot_opens():
    recent = [NOW - timedelta(seconds=50 - i) for i in range(30)]  # 50s..21s ago
    a = allowance(recent, NOW)
    assert a.allowed == 0
    assert a.next_slot_at == NOW + timedelta(seconds=10)  # oldest (50 s ago) leaves then


def test_over_full_window_waits_for_enough_to_leave():
    recent = [NOW - timedelta(seconds=s) for s in (55, 50, 40, 30)]
    a = allowance(recent, NOW, limit=2)
    assert a.allowed == 0
    assert a.next_slot_at == NOW + timedelta(seconds=20)  # 55 s and 50 s and 40 s must leave


def test_future_timestamps_count():
    a = allowance([NOW + timedelta(seconds=5)], NOW, limit=1)
    assert a.allowed == 0 and a.next_slot_at == NOW + timedelta(seconds=65)


def test_bad_limit():
    with pytest.raises(ValueError):
        allowance([], NOW, limit=0)


def test_prune():
    recent = [NOW - timedelta(seconds=s) for s in (70, 5, 30)]
    assert prune(recent, NOW) == [NOW - timedelta(seconds=30), NOW - timedelta(seconds=5)]


@given(st.integers(1, 30), st.lists(st.integers(0, 600), max_size=200))
def test_simulated_sender_never_exceeds_limit(limit, arrivals):
    """A sender that always obeys `allowance` never has more than `limit` in any window."""
    sent: list[datetime] = []
    queue = sorted(arrivals)
    clock = NOW
    pending = 0
    for arrival in queue + [10_000]:
        target = NOW + timedelta(seconds=arrival)
        while pending and clock < target:
            a = allowance(sent, clock, limit=limit)
            if a.allowed:
                n = min(a.allowed, pending)
                sent.extend([clock] * n)
                pending -= n
            else:
                assert a.next_slot_at > clock
                clock = min(a.next_slot_at, target)
                continue
            clock = min(target, clock + timedelta(seconds=1))
        clock = max(clock, target)
        if arrival != 10_000:
            pending += 1
    assert pending == 0 and len(sent) == len(arrivals)  # everything went out eventually
    for t in sent:
        assert sum(1 for u in sent if t - WINDOW < u <= t) <= limit
