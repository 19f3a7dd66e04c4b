"""Adaptive sync cadence: busy mailboxes more often, quiet ones less, never past the maximum.

Dynamics postpones each mailbox 5 minutes after a cycle, down to 2 when much mail arrives and
up to 12 when quiet, and promises a cycle at least every 12 minutes. Keeping that rule a pure
function lets the scheduler stay dumb and lets property tests prove the promise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class IntervalPolicy:
    """Bounds and thresholds of the cadence (minutes, items, cycles)."""

    normal: int = 5
    minimum: int = 2
    maximum: int = 12
    busy_items_threshold: int = 20
    quiet_cycles_threshold: int = 3
    quiet_step: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.normal <= self.maximum:
            raise ValueError("interval policy needs 1 <= minimum <= normal <= maximum")
        if self.busy_items_threshold < 1 or self.quiet_cycles_threshold < 1:
            raise ValueError("interval thresholds must be at least 1")
        if self.quiet_step < 1:
            raise ValueError("quiet_step must be at least 1")

    @classmethod
    def from_settings(cls, s: Any) -> IntervalPolicy:
        """Build from `shared.settings.Settings` (or anything with the same attributes)."""
        return cls(
            normal=s.sync_interval_minutes,
            minimum=s.sync_interval_min_minutes,
            maximum=s.sync_interval_max_minutes,
            busy_items_threshold=s.busy_items_threshold,
            quiet_cycles_threshold=s.quiet_cycles_threshold,
        )

    def clamp(self, minutes: int) -> int:
        """Minutes forced into [minimum, maximum]."""
        return max(self.minimum, min(self.maximum, int(minutes)))


DEFAULT_POLICY = IntervalPolicy()


def next_interval(
    previous_minutes: int | None,
    items_moved: int,
    consecutive_empty_cycles: int,
    policy: IntervalPolicy = DEFAULT_POLICY,
) -> int:
    """Minutes until the mailbox's next cycle, always within [minimum, maximum].

    - busy (items_moved >= threshold): halve, starting from at most `normal` so a mailbox that
      was quiet reacts at once, floored at `minimum`;
    - quiet (consecutive_empty_cycles >= threshold): grow by `quiet_step` per cycle, capped at
      `maximum`;
    - anything else: back to `normal`.
    `previous_minutes` may be None (first cycle) or out of bounds (settings changed).
    """
    prev = policy.normal if previous_minutes is None else policy.clamp(previous_minutes)
    if items_moved >= policy.busy_items_threshold:
        return policy.clamp(min(prev, policy.normal) // 2)
    if items_moved <= 0 and consecutive_empty_cycles >= policy.quiet_cycles_threshold:
        return policy.clamp(max(prev, policy.normal) + policy.quiet_step)
    return policy.clamp(policy.normal)


def next_due(
    now: datetime, interval_minutes: int, policy: IntervalPolicy = DEFAULT_POLICY
) -> datetime:
    """When the next cycle is due, `now` being the cycle's start (see cadence.py); the
    interval is clamped so no mailbox waits past maximum."""
    return now + timedelta(minutes=policy.clamp(interval_minutes))


def backoff_due(
    now: datetime, retry_after_seconds: float | None, retry_minutes: int
) -> datetime:
    """When to retry after a transient failure: the larger of Retry-After and our own delay.

    A service that says "wait 20 minutes" means it; retrying earlier only earns another 429.
    """
    ours = max(0.0, float(retry_minutes) * 60.0)
    theirs = max(0.0, float(retry_after_seconds or 0.0))
    return now + timedelta(seconds=max(ours, theirs))


__all__ = ["DEFAULT_POLICY", "IntervalPolicy", "backoff_due", "next_due", "next_interval"]
