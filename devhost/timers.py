"""Timer triggers: NCRONTAB (six fields, seconds first), five-field cron and TimeSpan schedules.

Schedules are evaluated in UTC, the Functions default. Occurrences never overlap: the next one
is computed after the current invocation ends, as the host's singleton timer lock ensures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.functions.timer import TimerRequest
from croniter import croniter

from .config import DevHostError, parse_timespan, resolve_placeholders
from .functions import FunctionSpec, Invocation, invoke, log_invocation

log = logging.getLogger("devhost")

# An invocation that starts this late after its scheduled time is reported as past due.
PAST_DUE_TOLERANCE = timedelta(seconds=1)


@dataclass(frozen=True)
class Schedule:
    """A parsed timer schedule that can say when it next fires."""

    expression: str
    cron: str | None = None
    seconds_first: bool = True
    interval: timedelta | None = None

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        """Accept what the host accepts: 6-field NCRONTAB, 5-field cron, or a TimeSpan."""
        text = expression.strip()
        fields = text.split()
        if len(fields) in (5, 6):
            seconds_first = len(fields) == 6
            try:
                croniter(text, datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=seconds_first)
            except (ValueError, KeyError) as exc:
                raise DevHostError(
                    f"'{expression}' is not a valid NCRONTAB expression: {exc}"
                ) from None
            return cls(text, cron=text, seconds_first=seconds_first)
        try:
            interval = parse_timespan(text)
        except DevHostError:
            raise DevHostError(
                f"'{expression}' is neither an NCRONTAB expression "
                "('{second} {minute} {hour} {day} {month} {day-of-week}') nor a TimeSpan"
            ) from None
        if interval <= timedelta(0):
            raise DevHostError(f"timer interval '{expression}' must be positive")
        return cls(text, interval=interval)

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after moment (UTC)."""
        moment = moment.astimezone(UTC)
        if self.interval is not None:
            return moment + self.interval
        # NCRONTAB matches day-of-month AND day-of-week (day_or=False), unlike Vixie cron.
        it = croniter(self.cron, moment, second_at_beginning=self.seconds_first, day_or=False)
        return it.get_next(datetime).astimezone(UTC)

    def typical_interval(self) -> timedelta:
        """Gap between two occurrences; the host enables the monitor for gaps over a minute."""
        if self.interval is not None:
            return self.interval
        first = self.next_after(datetime(2001, 1, 1, tzinfo=UTC))
        return self.next_after(first) - first


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class TimerRunner:
    """Fires one timer function on its schedule until stopped."""

    def __init__(self, spec: FunctionSpec, environ: Mapping[str, str]) -> None:
        self.spec = spec
        raw = str(spec.trigger.get("schedule") or "")
        where = f"Function '{spec.name}' timer schedule '{raw}'"
        self.schedule = Schedule.parse(resolve_placeholders(raw, environ, where))
        use_monitor = spec.trigger.get("useMonitor")
        self.use_monitor = (
            bool(use_monitor)
            if use_monitor is not None
            else self.schedule.typical_interval() >= timedelta(minutes=1)
        )
        self.run_on_startup = bool(spec.trigger.get("runOnStartup"))
        self.last: datetime | None = None
        self.next: datetime | None = None
        self._lock = asyncio.Lock()

    async def fire(
        self, *, past_due: bool = False, scheduled: datetime | None = None
    ) -> Invocation:
        """Invoke once with a TimerRequest; the lock keeps invocations from overlapping."""
        async with self._lock:
            now = datetime.now(UTC)
            status = {
                "Last": _iso(self.last),
                "Next": _iso(self.schedule.next_after(scheduled or now)),
                "LastUpdated": _iso(now),
            }
            request = TimerRequest(
                past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True}
            )
            outcome = await invoke(self.spec, request)
            self.last = scheduled or now
            log_invocation(self.spec, outcome, f"past_due={past_due}")
            return outcome

    async def run(self, stop: asyncio.Event) -> None:
        if self.run_on_startup:
            await self.fire()
        scheduled = self.schedule.next_after(datetime.now(UTC))
        log.info(
            "Timer '%s' (%s): next occurrence %s",
            self.spec.name,
            self.schedule.expression,
            scheduled.isoformat(),
        )
        while not stop.is_set():
            self.next = scheduled
            delay = (scheduled - datetime.now(UTC)).total_seconds()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                    break  # stop was set
                except TimeoutError:
                    pass
            late = datetime.now(UTC) - scheduled
            await self.fire(past_due=late > PAST_DUE_TOLERANCE, scheduled=scheduled)
            following = self.schedule.next_after(scheduled)
            now = datetime.now(UTC)
            if following < now and not self.use_monitor:
                # Without the monitor, occurrences missed while running are simply skipped.
                following = self.schedule.next_after(now)
            # With the monitor, one missed occurrence runs at once (past due), then we catch up.
            elif following < now:
                catch_up = self.schedule.next_after(following)
                while catch_up < now:
                    following, catch_up = catch_up, self.schedule.next_after(catch_up)
            scheduled = following

    def describe(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule.expression,
            "use_monitor": self.use_monitor,
            "run_on_startup": self.run_on_startup,
        }
