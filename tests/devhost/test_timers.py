"""Timer triggers: NCRONTAB parsing, %SETTING% schedules, and firing on demand."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest

from devhost import DevHostError, MissingSettingError, Schedule
from tests.devhost import sample_app


def test_six_field_schedule_with_seconds_first():
    schedule = Schedule.parse("0 */5 * * * *")
    start = datetime(2024, 1, 1, 12, 3, 17, tzinfo=UTC)
    first = schedule.next_after(start)
    assert first == datetime(2024, 1, 1, 12, 5, 0, tzinfo=UTC)
    assert schedule.next_after(first) == datetime(2024, 1, 1, 12, 10, 0, tzinfo=UTC)
    assert schedule.typical_interval() == timedelta(minutes=5)


def test_seconds_field_and_day_of_week():
    every_ten = Schedule.parse("*/10 * * * * *")
    assert every_ten.next_after(datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC)).second == 10
    weekdays = Schedule.parse("0 30 9 * * Mon-Fri")
    saturday = datetime(2024, 1, 6, 12, 0, tzinfo=UTC)
    assert weekdays.next_after(saturday) == datetime(2024, 1, 8, 9, 30, tzinfo=UTC)


def test_ncrontab_day_of_month_and_week_both_apply():
    # Friday the 13th only: NCRONTAB requires both fields to match.
    schedule = Schedule.parse("0 0 0 13 * 5")
    assert schedule.next_after(datetime(2024, 1, 1, tzinfo=UTC)) == datetime(
        2024, 9, 13, tzinfo=UTC
    )


def test_five_field_cron_and_timespan():
    assert Schedule.parse("*/5 * * * *").next_after(
        datetime(2024, 1, 1, 12, 3, tzinfo=UTC)
    ) == datetime(2024, 1, 1, 12, 5, tzinfo=UTC)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    assert Schedule.parse("00:00:30").next_after(start) == start + timedelta(seconds=30)
    with pytest.raises(DevHostError):
        Schedule.parse("every five minutes")
    with pytest.raises(DevHostError):
        Schedule.parse("0 */5 * * * * * *")


async def test_timer_with_setting_schedule_fires(tmp_path, make_host):
    host = make_host(
        port=0,
        host_json_path=None,
        http=False,
        queues=False,
        environ={"SAMPLE_SCHEDULE": "0 */5 * * * *"},
    )
    runner = host.timer("tick")
    assert runner.schedule.expression == "0 */5 * * * *"
    assert runner.use_monitor  # a five-minute schedule is monitored by default
    outcome = await host.run_timer_once("tick")
    assert outcome.succeeded
    outcome = await host.run_timer_once("tick", past_due=True)
    assert outcome.succeeded
    first, second = sample_app.CALLS["tick"]
    assert first["past_due"] is False and second["past_due"] is True
    assert first["status"]["Last"] is None and second["status"]["Last"] is not None
    next_run = datetime.fromisoformat(first["status"]["Next"])
    assert next_run.second == 0 and next_run.minute % 5 == 0


async def test_started_timer_runs_on_schedule(make_host):
    """run_on_startup fires at once, then a six-field every-second schedule fires again."""
    app = func.FunctionApp()
    fired: list[bool] = []
    twice = asyncio.Event()

    @app.timer_trigger(arg_name="t", schedule="%EVERY%", run_on_startup=True, use_monitor=False)
    async def every_second(t: func.TimerRequest) -> None:
        fired.append(t.past_due)
        if len(fired) >= 2:
            twice.set()

    host = make_host(
        app, port=0, host_json_path=None, http=False, queues=False, environ={"EVERY": "* * * * * *"}
    )
    await host.start()
    await asyncio.wait_for(twice.wait(), timeout=5)
    await host.stop()
    assert fired[:2] == [False, False]


async def test_missing_schedule_setting_is_a_clear_error(make_host):
    host = make_host(port=0, host_json_path=None, http=False, queues=False, environ={})
    with pytest.raises(MissingSettingError) as info:
        await host.run_timer_once("tick")
    assert "SAMPLE_SCHEDULE" in str(info.value) and "'tick'" in str(info.value)
    with pytest.raises(MissingSettingError):
        await host.start()
    with pytest.raises(KeyError):
        await host.run_timer_once("get_mailbox")
