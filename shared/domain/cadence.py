"""When a mailbox's cycle is released to the workers, and the time its next due counts from.

A due time falls between two scheduler ticks. Released by the first tick after it, every cycle
would start up to a tick late, and counted from the cycle's end, the lateness would add up
(a "5 minute" cycle every 6). So: a tick releases every cycle due before the next tick; the
next due counts from the cycle's planned start (the moment it was released); and a cycle that
ends with its successor due before the tick after next releases that successor itself (to
start at its due time), since the ticks before it found the mailbox leased.
tests/unit/test_domain_cadence.py proves the resulting bound on the gap between two starts.
"""

from __future__ import annotations

from datetime import datetime

from .ncrontab import Schedule


def released_by_tick(due: datetime, now: datetime, schedule: Schedule) -> bool:
    """Whether a tick at `now` releases a cycle due at `due`: when due before the next tick
    (a later tick would be late). Released at `now`: up to one tick early, never late."""
    return due < schedule.next_fire(now)


def due_before(now: datetime, planned: datetime | None, schedule: Schedule) -> datetime:
    """What counts as due in a job that began at `now`: whatever its tick released, i.e. due
    before the tick after its planned start (or after `now`, if that is later)."""
    return schedule.next_fire(max(now, planned or now))


def not_early(moment: datetime, schedule: Schedule) -> datetime:
    """A due that must not run early (a Retry-After, the next send slot) moved to the first
    tick at or after it, so releasing before the next tick cannot bring it forward."""
    return schedule.tick_at_or_after(moment)


def cycle_start(planned: datetime | None, began: datetime, schedule: Schedule) -> datetime:
    """The time the next due counts from: the planned start, if the worker began the cycle by
    the second tick after it (ordinary queue delay); otherwise, or when the planned start is
    unknown or later (another machine's clock), the time the worker began."""
    if planned is None or planned > began:
        return began
    if began >= schedule.next_fire(schedule.next_fire(planned)):
        return began  # delivered very late (a backlog): do not make up the lost time at once
    return planned


def handoff_start(due: datetime | None, finished: datetime, schedule: Schedule
                  ) -> datetime | None:
    """The planned start of the next cycle, when the ending one must release it itself.

    The ticks before `finished` saw the lease held; the first tick after it may still see it
    held (the lease is given back a moment after `finished`). So a next due before the second
    tick after `finished` is released here, to start at its due time (at once if that has
    passed). None when a later tick releases it on time.
    """
    if due is None or due >= schedule.next_fire(schedule.next_fire(finished)):
        return None
    return max(due, finished)


__all__ = ["cycle_start", "due_before", "handoff_start", "not_early", "released_by_tick"]
