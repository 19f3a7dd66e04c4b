"""Scheduler-level cadence: how one cycle's outcome moves a mailbox's next due time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain.mailbox import Channel, Mailbox, TestResult
from shared.domain.ncrontab import Schedule
from shared.errors import ErrorKind, UpstreamError
from shared.settings import load_settings
from shared.store import DueEntry
from shared.sync.entry import parse_job
from shared.sync.scheduler import _is_current
from shared.sync.threads import activity_id_for, likely_reply
from shared.sync.worker import ChannelOutcome, apply_outcomes

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
SETTINGS = load_settings({
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "DATAVERSE_URL": "https://example.crm.dynamics.com",
    "ENTRA_TENANT_ID": "t", "ENTRA_CLIENT_ID": "c", "ENTRA_CLIENT_SECRET": "s",
    "API_AUDIENCE": "api://x",
})
SCHEDULE = Schedule.parse(SETTINGS.scheduler_schedule)


def enabled_mailbox() -> Mailbox:
    mailbox = Mailbox.new(owner_object_id="oid-1", email="alex@contoso.com", now=NOW)
    mailbox.approve(NOW)
    mailbox.apply_test_results({c: TestResult.SUCCESS for c in mailbox.channels}, NOW)
    return mailbox


def run(mailbox: Mailbox, moved: int = 0, error: UpstreamError | None = None,
        at: datetime = NOW) -> None:
    apply_outcomes(mailbox, {Channel.INCOMING: ChannelOutcome(moved=moved, error=error)}, at,
                   SETTINGS)


def interval(mailbox: Mailbox) -> int | None:
    return mailbox.channels[Channel.INCOMING].interval_minutes


def test_normal_cycle_is_due_after_the_normal_interval() -> None:
    mailbox = enabled_mailbox()
    run(mailbox, moved=3)
    assert interval(mailbox) == 5
    assert mailbox.channels[Channel.INCOMING].next_due_at == NOW + timedelta(minutes=5)


def test_busy_mailbox_is_synced_more_often_down_to_the_minimum() -> None:
    mailbox = enabled_mailbox()
    seen = []
    for _ in range(4):
        run(mailbox, moved=SETTINGS.busy_items_threshold)
        seen.append(interval(mailbox))
    assert seen[0] < 5 and min(seen) == SETTINGS.sync_interval_min_minutes


def test_quiet_mailbox_backs_off_but_never_past_the_maximum() -> None:
    mailbox = enabled_mailbox()
    seen = []
    for n in range(20):
        run(mailbox, moved=0, at=NOW + timedelta(minutes=12 * n))
        seen.append(interval(mailbox))
    assert seen[0] == 5 and max(seen) == SETTINGS.sync_interval_max_minutes
    status = mailbox.channels[Channel.INCOMING]
    assert status.next_due_at is not None and status.last_cycle_at is not None
    assert status.next_due_at - status.last_cycle_at <= timedelta(minutes=12)


def test_transient_failure_backs_off_honouring_retry_after() -> None:
    mailbox = enabled_mailbox()
    run(mailbox, error=UpstreamError("x", kind=ErrorKind.TRANSIENT, retry_after=1200,
                                     status=429, service="graph"))
    status = mailbox.channels[Channel.INCOMING]
    assert mailbox.enabled and status.consecutive_failures == 1
    assert status.next_due_at == NOW + timedelta(seconds=1200)
    assert mailbox.recent_errors[-1].kind is ErrorKind.TRANSIENT


def test_transient_failures_past_the_limit_disable() -> None:
    mailbox = enabled_mailbox()
    for _ in range(SETTINGS.transient_retry_limit + 1):
        run(mailbox, error=UpstreamError("x", kind=ErrorKind.TRANSIENT, service="graph"))
    assert not mailbox.enabled and mailbox.next_due_at is None


def test_permanent_failure_disables_at_once() -> None:
    mailbox = enabled_mailbox()
    run(mailbox, error=UpstreamError("x", kind=ErrorKind.AUTH, status=401, service="graph"))
    assert not mailbox.enabled
    assert "incoming" in (mailbox.disabled_reason or "")


def test_due_index_row_is_current_only_for_enabled_due_mailboxes() -> None:
    mailbox = enabled_mailbox()
    entry = DueEntry(mailbox.mailbox_id, NOW)
    assert _is_current(entry, mailbox, NOW, SCHEDULE)
    assert not _is_current(entry, None, NOW, SCHEDULE)
    run(mailbox, moved=1)
    for status in mailbox.channels.values():
        status.next_due_at = NOW + timedelta(minutes=5)
    assert not _is_current(entry, mailbox, NOW, SCHEDULE)
    mailbox.disable("x", NOW)
    assert not _is_current(entry, mailbox, NOW + timedelta(minutes=10), SCHEDULE)


def test_a_tick_releases_what_is_due_before_the_next_tick() -> None:
    mailbox = enabled_mailbox()
    for status in mailbox.channels.values():
        status.next_due_at = NOW + timedelta(seconds=59)
    entry = DueEntry(mailbox.mailbox_id, NOW + timedelta(seconds=59))
    assert _is_current(entry, mailbox, NOW, SCHEDULE)  # the 09:01 tick would be late
    for status in mailbox.channels.values():
        status.next_due_at = NOW + timedelta(minutes=1)
    entry = DueEntry(mailbox.mailbox_id, NOW + timedelta(minutes=1))
    assert not _is_current(entry, mailbox, NOW, SCHEDULE)  # the 09:01 tick is on time


def test_parse_job_refuses_garbage() -> None:
    assert parse_job(b"{not json") is None
    assert parse_job(b"[1]") is None
    assert parse_job(b'{"mailbox_id": "m"}') == {"mailbox_id": "m"}


def test_activity_ids_are_stable_per_message() -> None:
    assert activity_id_for("<a@x>") == activity_id_for("<a@x>")
    assert activity_id_for("<a@x>") != activity_id_for("<b@x>")


def test_only_likely_replies_need_threading_headers() -> None:
    assert likely_reply({"subject": "RE: hello"})
    assert likely_reply({"subject": "AW: hallo"})
    assert not likely_reply({"subject": "Hello", "conversationIndex": "AQ" + "A" * 28})
    assert likely_reply({"subject": "x", "conversationIndex": "AQ" + "A" * 34 + "=="})


def test_next_due_counts_from_the_cycle_start_not_its_end() -> None:
    mailbox = enabled_mailbox()
    finished = NOW + timedelta(seconds=40)
    apply_outcomes(mailbox, {Channel.INCOMING: ChannelOutcome(moved=3)}, finished, SETTINGS,
                   started=NOW)
    status = mailbox.channels[Channel.INCOMING]
    assert status.next_due_at == NOW + timedelta(minutes=5)  # the 09:05 tick, not 09:06
    assert status.last_cycle_at == finished


def test_a_back_off_is_never_released_before_retry_after() -> None:
    mailbox = enabled_mailbox()
    finished = NOW + timedelta(seconds=30)
    error = UpstreamError("x", kind=ErrorKind.TRANSIENT, retry_after=400, status=429,
                          service="graph")
    apply_outcomes(mailbox, {Channel.INCOMING: ChannelOutcome(error=error)}, finished, SETTINGS,
                   started=NOW)
    # 09:07:10 would be released by the 09:07 tick, 10 s early: the due moves to 09:08
    assert mailbox.channels[Channel.INCOMING].next_due_at == NOW + timedelta(minutes=8)
