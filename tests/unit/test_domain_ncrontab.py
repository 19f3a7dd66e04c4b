"""NCRONTAB next-fire: agrees with croniter (seconds first, day-of-month AND day-of-week)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.ncrontab import Schedule, next_fire

T = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # a Friday
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
DAY_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


def croniter_next(expression: str, after: datetime) -> datetime:
    result = croniter(expression, after, second_at_beginning=True, day_or=False).get_next(datetime)
    assert isinstance(result, datetime)
    return result


def test_default_schedule_fires_every_minute_on_the_minute() -> None:
    assert next_fire("0 */1 * * * *", T) == T + timedelta(minutes=1)
    assert next_fire("0 */1 * * * *", T - timedelta(microseconds=1)) == T
    assert next_fire("0 */1 * * * *", T + timedelta(seconds=59.9)) == T + timedelta(minutes=1)


@pytest.mark.parametrize(("expression", "expected"), [
    ("0 */5 * * * *", datetime(2026, 11, 20, 9, 5, tzinfo=UTC)),
    ("30 0 9 * * *", datetime(2026, 11, 20, 9, 0, 30, tzinfo=UTC)),
    ("0 30 9 * * 1-5", datetime(2026, 11, 20, 9, 30, tzinfo=UTC)),
    ("0 0 0 13 * Fri", datetime(2027, 8, 13, tzinfo=UTC)),  # both day fields must match
    ("0 0 12 29 Feb *", datetime(2028, 2, 29, 12, tzinfo=UTC)),
    ("0 5/20 * * * *", datetime(2026, 11, 20, 9, 5, tzinfo=UTC)),
    ("0 0 9 * Dec Monday", datetime(2026, 12, 7, 9, tzinfo=UTC)),
])
def test_documented_forms(expression: str, expected: datetime) -> None:
    assert next_fire(expression, T) == expected
    assert croniter_next(expression.replace("Monday", "Mon"), T) == expected  # 3 letters only


def test_a_degenerate_range_is_its_one_value() -> None:
    assert Schedule.parse("5-5 7 * * * *").seconds == (5,)


def test_tick_at_or_after_keeps_a_moment_that_is_a_tick() -> None:
    every_minute = Schedule.parse("0 * * * * *")
    assert every_minute.tick_at_or_after(T) == T
    assert every_minute.tick_at_or_after(T + timedelta(microseconds=1)) == T + timedelta(minutes=1)


@pytest.mark.parametrize(("expression", "field"), [
    ("0 */1 * * *", "six fields"), ("0 61 * * * *", "minute"), ("0 */0 * * * *", "minute"),
    ("0 5-1 * * * *", "minute"), ("0 0 0 30 2 *", "never fires"), ("0 0 0 * Foo *", "month"),
    ("0 0 0 * * 7", "day-of-week"), ("x 0 0 * * *", "second"), ("0 0 0 * * Mo", "day-of-week"),
])
def test_bad_expressions_name_the_field(expression: str, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Schedule.parse(expression)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        next_fire("0 * * * * *", datetime(2026, 1, 1))


def parts(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    named = st.sampled_from(names) if names else value.map(str)
    single = st.one_of(value.map(str), named)
    # a < b: croniter reads a degenerate range 'a-a' as '*' (NCrontab as the value a)
    pair = st.tuples(value, value).filter(lambda ab: ab[0] != ab[1]).map(sorted)
    ranges = pair.map(lambda ab: f"{ab[0]}-{ab[1]}")
    step = st.integers(1, max(1, high - low))
    stepped = st.one_of(
        step.map(lambda n: f"*/{n}"),
        st.tuples(pair, step).map(lambda t: f"{t[0][0]}-{t[0][1]}/{t[1]}"),
        st.tuples(value, step).map(lambda t: f"{t[0]}/{t[1]}"),
    )
    one = st.one_of(st.just("*"), single, ranges, stepped)
    return st.one_of(one, st.lists(st.one_of(single, ranges), min_size=2, max_size=4)
                     .map(",".join))


expressions = st.tuples(
    parts(0, 59), parts(0, 59), parts(0, 23),
    st.one_of(st.just("*"), parts(1, 28)), parts(1, 12, MONTH_NAMES),
    st.one_of(st.just("*"), parts(0, 6, DAY_NAMES)),
).map(" ".join)
moments = st.datetimes(datetime(2020, 1, 1), datetime(2035, 12, 31),
                       timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(expressions, moments)
def test_next_fire_agrees_with_croniter(expression: str, after: datetime) -> None:
    ours = next_fire(expression, after)
    assert ours == croniter_next(expression, after)
    assert ours > after


@settings(max_examples=100, deadline=None)
@given(expressions, moments)
def test_no_tick_is_skipped(expression: str, after: datetime) -> None:
    schedule = Schedule.parse(expression)
    first = schedule.next_fire(after)
    second = schedule.next_fire(first)
    assert second > first
    assert croniter_next(expression, first) == second
