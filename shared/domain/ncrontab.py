"""NCRONTAB schedules (Azure Functions timer format): when the scheduler's next tick fires.

Six fields, seconds first: `{second} {minute} {hour} {day} {month} {day-of-week}`, each `*`,
a number, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (a to the maximum), or a comma list
of those; months and days of the week may be names (at least three letters: Jan, Monday). As
in NCrontab, a day must match both the day-of-month and the day-of-week fields. Times are UTC
(the Functions default). The cadence needs the next tick
to release a cycle before it is due instead of a tick after, so this stays a pure function.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MONTHS = {name: n for n, name in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december"), start=1)}
WEEKDAYS = {name: n for n, name in enumerate(
    ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"))}
NO_NAMES: dict[str, int] = {}
FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, NO_NAMES), ("minute", 0, 59, NO_NAMES), ("hour", 0, 23, NO_NAMES),
    ("day", 1, 31, NO_NAMES), ("month", 1, 12, MONTHS), ("day-of-week", 0, 6, WEEKDAYS))
SEARCH_YEARS = 30  # a day-of-month AND day-of-week match recurs within 28 years, or never


def _value(text: str, low: int, high: int, names: dict[str, int], field: str) -> int:
    """A number, or a name given by at least its first three letters ('Mon', 'Monday')."""
    value = int(text) if text.isdigit() else next(
        (n for name, n in names.items() if len(text) >= 3 and name.startswith(text.lower())),
        None)
    if value is None or not low <= value <= high:
        raise ValueError(f"{field}: '{text}' is not in {low}-{high}")
    return value


def _field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> tuple[int, ...]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        if step_text and not step_text.isdigit() or step_text == "0" or not span:
            raise ValueError(f"{field}: '{part}' is not a value, range or step")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, _, b = span.partition("-")
            first, last = _value(a, low, high, names, field), _value(b, low, high, names, field)
            if first > last:
                raise ValueError(f"{field}: range '{span}' runs backwards")
        else:  # as in NCrontab, 'a/n' steps from a to the field's maximum
            first = _value(span, low, high, names, field)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return tuple(sorted(values))


@dataclass(frozen=True)
class Schedule:
    """A parsed NCRONTAB expression: the values each field allows, sorted."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        """The schedule, or ValueError naming the field that is wrong."""
        parts = expression.split()
        if len(parts) != len(FIELDS):
            raise ValueError("must be an NCRONTAB expression of six fields")
        schedule = cls(*(_field(text, name, low, high, names)
                         for text, (name, low, high, names) in zip(parts, FIELDS, strict=True)))
        schedule.next_fire(datetime(2000, 1, 1, tzinfo=UTC))  # refuses one that never fires
        return schedule

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        weekday = (calendar.weekday(year, month, day) + 1) % 7  # Python: Monday = 0
        return day in self.days and weekday in self.weekdays

    def _first_time(self, after: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        """The first (hour, minute, second) of a day strictly after `after` (None: any)."""
        if after is None:
            return self.hours[0], self.minutes[0], self.seconds[0]
        hour, minute, second = after
        if hour in self.hours:
            if minute in self.minutes:
                later = bisect_right(self.seconds, second)
                if later < len(self.seconds):
                    return hour, minute, self.seconds[later]
            later = bisect_right(self.minutes, minute)
            if later < len(self.minutes):
                return hour, self.minutes[later], self.seconds[0]
        later = bisect_right(self.hours, hour)
        if later < len(self.hours):
            return self.hours[later], self.minutes[0], self.seconds[0]
        return None

    def next_fire(self, after: datetime) -> datetime:
        """The first time strictly after `after` (aware) at which the schedule fires."""
        if after.tzinfo is None:
            raise ValueError("datetimes must be timezone-aware")
        moment = after.astimezone(UTC)
        today = (moment.hour, moment.minute, moment.second)
        start = moment.date()
        for year in range(start.year, start.year + SEARCH_YEARS + 1):
            for month in self.months:
                if (year, month) < (start.year, start.month):
                    continue
                this_month = (year, month) == (start.year, start.month)
                last_day = calendar.monthrange(year, month)[1]
                first = bisect_left(self.days, start.day) if this_month else 0
                for day in self.days[first:]:
                    if day > last_day:
                        break
                    if not self._day_matches(year, month, day):
                        continue
                    same_day = this_month and day == start.day
                    found = self._first_time(today if same_day else None)
                    if found is not None:
                        return datetime(year, month, day, *found, tzinfo=UTC)
        raise ValueError("the schedule never fires")

    def tick_at_or_after(self, moment: datetime) -> datetime:
        """`moment` itself when the schedule fires then, else the next tick after it."""
        exact = moment.astimezone(UTC)
        if exact.microsecond == 0 and self.next_fire(exact - timedelta(seconds=1)) == exact:
            return exact
        return self.next_fire(exact)


def next_fire(expression: str, after: datetime) -> datetime:
    """The first tick of `expression` strictly after `after`."""
    return Schedule.parse(expression).next_fire(after)


__all__ = ["Schedule", "next_fire"]
