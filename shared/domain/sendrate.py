"""Exchange Online's 30 messages per minute per mailbox, as a sliding window.

Going over the limit earns rejections that look like failures to the user; planning sends
inside the window instead keeps "Pending Send" moving without a single refusal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class SendAllowance:
    """How many may go now, and when the next slot opens (== now when allowed > 0)."""

    allowed: int
    next_slot_at: datetime


def allowance(
    recent_sends: Iterable[datetime],
    now: datetime,
    *,
    limit: int = 30,
    window: timedelta = WINDOW,
) -> SendAllowance:
    """Slots free in the window (now - window, now].

    Timestamps in the future (clock skew between workers) count as inside the window, so
    skew can only make us slower, never over the limit.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    start = now - window
    inside = sorted(t for t in recent_sends if t > start)
    allowed = max(0, limit - len(inside))
    if allowed > 0:
        return SendAllowance(allowed, now)
    # The (len - limit + 1)-th oldest send must leave the window before one slot frees up.
    leaving = inside[len(inside) - limit]
    return SendAllowance(0, max(now, leaving + window))


def prune(recent_sends: Iterable[datetime], now: datetime, window: timedelta = WINDOW) -> list[
    datetime
]:
    """The timestamps still inside the window, oldest first (what to keep in storage)."""
    start = now - window
    return sorted(t for t in recent_sends if t > start)


__all__ = ["WINDOW", "SendAllowance", "allowance", "prune"]
