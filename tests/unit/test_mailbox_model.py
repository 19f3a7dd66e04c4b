"""Mailbox lifecycle rules: approval, test-and-enable, failure streaks, disable, limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.domain.mailbox import (
    MAX_RECENT_ERRORS,
    RETRYABLE_KINDS,
    Channel,
    ChannelStatus,
    ChannelTest,
    DeliveryMethod,
    FolderRule,
    Mailbox,
    MailboxKind,
    MailboxRuleError,
    TestResult,
    safe_message,
)
from shared.errors import ErrorKind

NOW = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def mailbox(kind: MailboxKind = MailboxKind.USER) -> Mailbox:
    return Mailbox.new(owner_object_id="oid-1", email="Owner@Contoso.example", now=NOW,
                       kind=kind)


def enabled_mailbox() -> Mailbox:
    box = mailbox()
    box.approve(NOW)
    assert box.apply_test_results({c: TestResult.SUCCESS for c in box.channels}, NOW)
    return box


# --- construction and invariants -------------------------------------------------------------


def test_new_user_mailbox_has_every_channel_and_is_off():
    box = mailbox()
    assert set(box.channels) == {Channel.INCOMING, Channel.OUTGOING, Channel.ACT}
    assert box.mailbox_id == "oid-1"
    assert not box.approved and not box.enabled and box.next_due_at is None


def test_queue_mailbox_has_email_channels_only():
    box = mailbox(MailboxKind.QUEUE)
    assert set(box.channels) == {Channel.INCOMING, Channel.OUTGOING}
    with pytest.raises(MailboxRuleError) as error:
        box.configure_channel(Channel.ACT, DeliveryMethod.SERVER_SIDE_SYNC, NOW)
    assert error.value.field == "channels"
    with pytest.raises(MailboxRuleError):
        box.apply_test_results({Channel.ACT: TestResult.SUCCESS}, NOW)
    with pytest.raises(ValidationError):
        Mailbox.model_validate({**box.model_dump(), "channels": {"act": {}}})


def test_enabled_without_approval_cannot_be_loaded():
    data = {**mailbox().model_dump(), "enabled": True}
    with pytest.raises(ValidationError, match="approved"):
        Mailbox.model_validate(data)


def test_json_round_trip():
    box = enabled_mailbox()
    box.record_failure(Channel.INCOMING, ErrorKind.TRANSIENT, "graph 503", NOW, 3, 5)
    assert Mailbox.model_validate_json(box.model_dump_json()) == box


def test_naive_datetimes_are_refused():
    with pytest.raises(MailboxRuleError):
        mailbox().approve(datetime(2025, 1, 1))


# --- approval and test-and-enable --------------------------------------------------------------


def test_enable_requires_approval():
    box = mailbox()
    with pytest.raises(MailboxRuleError) as error:
        box.enable(NOW)
    assert error.value.field == "approved"


def test_enable_requires_passed_tests():
    box = mailbox()
    box.approve(NOW)
    with pytest.raises(MailboxRuleError) as error:
        box.enable(NOW)
    assert error.value.field == "channels"


def test_tests_passing_without_approval_do_not_enable():
    box = mailbox()
    assert box.apply_test_results({c: TestResult.SUCCESS for c in box.channels}, NOW) is False
    assert not box.enabled and box.disabled_reason == "not approved"
    box.approve(NOW)
    box.enable(NOW)
    assert box.enabled


def test_approved_and_all_passed_enables_and_is_due_now():
    box = enabled_mailbox()
    assert box.enabled and box.disabled_reason is None
    assert all(status.enabled for status in box.channels.values())
    assert box.next_due_at == NOW


def test_one_failed_channel_keeps_the_mailbox_off():
    box = mailbox()
    box.approve(NOW)
    enabled = box.apply_test_results({
        Channel.INCOMING: TestResult.SUCCESS,
        Channel.OUTGOING: ChannelTest(result=TestResult.FAILURE,
                                      error="send as bob@contoso.example refused"),
        Channel.ACT: TestResult.SUCCESS,
    }, NOW)
    assert not enabled and not box.enabled
    assert "outgoing" in box.disabled_reason
    assert "bob@" not in box.channels[Channel.OUTGOING].test_error


def test_channels_without_server_side_sync_need_no_test():
    box = mailbox()
    box.approve(NOW)
    box.configure_channel(Channel.ACT, DeliveryMethod.NONE, NOW)
    assert box.apply_test_results(
        {Channel.INCOMING: TestResult.SUCCESS, Channel.OUTGOING: TestResult.SUCCESS}, NOW
    )
    assert not box.channels[Channel.ACT].enabled


def test_reconfiguring_a_channel_requires_a_new_test():
    box = enabled_mailbox()
    box.configure_channel(Channel.ACT, DeliveryMethod.NONE, NOW)
    box.configure_channel(Channel.ACT, DeliveryMethod.SERVER_SIDE_SYNC, NOW)
    assert not box.enabled
    assert box.channels[Channel.ACT].test_result is TestResult.NOT_RUN


# --- cycles ---------------------------------------------------------------------------------------


def test_transient_failures_back_off_then_disable_past_the_limit():
    box = enabled_mailbox()
    for attempt in range(1, 4):
        disabled = box.record_failure(Channel.INCOMING, ErrorKind.TRANSIENT, "graph 503",
                                      NOW, transient_retry_limit=3, retry_minutes=5)
        assert not disabled and box.enabled
        status = box.channels[Channel.INCOMING]
        assert status.consecutive_failures == attempt
        assert status.next_due_at == NOW + timedelta(minutes=5)
    assert box.record_failure(Channel.INCOMING, ErrorKind.TRANSIENT, "graph 503", NOW, 3, 5)
    assert not box.enabled and "4 consecutive transient failures" in box.disabled_reason
    assert box.next_due_at is None


def test_limit_zero_makes_every_transient_failure_permanent():
    box = enabled_mailbox()
    assert box.record_failure(Channel.OUTGOING, ErrorKind.TRANSIENT, "x", NOW, 0, 5)
    assert not box.enabled


@pytest.mark.parametrize("kind", [k for k in ErrorKind if k not in RETRYABLE_KINDS])
def test_non_transient_failure_disables_at_once(kind):
    box = enabled_mailbox()
    assert box.record_failure(Channel.INCOMING, kind, "token for a@b.example refused",
                              NOW, 10, 5)
    assert not box.enabled
    assert kind.value in box.disabled_reason
    assert "a@b.example" not in box.disabled_reason
    assert box.recent_errors[-1].kind is kind


def test_success_resets_the_streak_and_counts_empty_cycles():
    box = enabled_mailbox()
    box.record_failure(Channel.INCOMING, ErrorKind.TRANSIENT, "503", NOW, 3, 5)
    due = NOW + timedelta(minutes=12)
    box.record_success(Channel.INCOMING, 0, NOW, due, 12)
    box.record_success(Channel.INCOMING, 0, NOW, due, 12)
    status = box.channels[Channel.INCOMING]
    assert status.consecutive_failures == 0 and status.consecutive_empty_cycles == 2
    assert status.next_due_at == due and status.interval_minutes == 12
    box.record_success(Channel.INCOMING, 7, NOW, due, 5)
    assert status.consecutive_empty_cycles == 0 and status.items_moved == 7


def test_recent_errors_keep_the_last_twenty():
    box = enabled_mailbox()
    for i in range(30):
        box.record_failure(Channel.INCOMING, ErrorKind.TRANSIENT, f"e{i}", NOW, 100, 5)
    assert len(box.recent_errors) == MAX_RECENT_ERRORS
    assert box.recent_errors[-1].message == "e29" and box.recent_errors[0].message == "e10"


def test_unconfigured_channel_is_a_rule_error():
    box = mailbox(MailboxKind.QUEUE)
    with pytest.raises(MailboxRuleError):
        box.record_success(Channel.ACT, 1, NOW, NOW, 5)


def test_disable_and_revoke():
    box = enabled_mailbox()
    box.disable("admin stopped it", NOW)
    assert not box.enabled and box.disabled_reason == "admin stopped it"
    box = enabled_mailbox()
    box.revoke_approval(NOW)
    assert not box.approved and not box.enabled


# --- folder rules --------------------------------------------------------------------------------


def rules(count: int) -> list[FolderRule]:
    return [FolderRule(folder_id=f"f{i}", folder_name=f"Folder {i}") for i in range(count)]


def test_folder_rules_are_limited_to_25():
    box = mailbox()
    box.set_folder_rules(rules(25), NOW)
    with pytest.raises(MailboxRuleError) as error:
        box.set_folder_rules(rules(26), NOW)
    assert error.value.field == "folder_rules"
    with pytest.raises(MailboxRuleError):
        box.set_folder_rules(rules(6), NOW, max_rules=5)
    with pytest.raises(ValidationError):
        Mailbox.model_validate({**box.model_dump(), "folder_rules": rules(26)})


def test_folder_rules_are_unique_and_regarding_comes_in_pairs():
    with pytest.raises(MailboxRuleError):
        mailbox().set_folder_rules([FolderRule(folder_id="a"), FolderRule(folder_id="a")], NOW)
    with pytest.raises(MailboxRuleError) as error:
        mailbox().set_folder_rules([FolderRule(folder_id="a", regarding_table="account")], NOW)
    assert error.value.field == "folder_rules.0.regarding_id"
    box = mailbox()
    box.set_folder_rules([FolderRule(folder_id="a", regarding_table="account",
                                     regarding_id="ac000000-0000-4000-8000-000000000001")], NOW)
    assert box.folder_rules[0].regarding_table == "account"


# --- properties ----------------------------------------------------------------------------------

events = st.lists(
    st.one_of(
        st.tuples(st.just("ok"), st.sampled_from(list(Channel)), st.integers(0, 50)),
        st.tuples(
            st.just("fail"), st.sampled_from(list(Channel)), st.sampled_from(list(ErrorKind))
        ),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events=events, limit=st.integers(0, 12))
def test_failure_streak_never_exceeds_the_limit_while_enabled(events, limit):
    box = enabled_mailbox()
    now = NOW
    streaks = {channel: 0 for channel in Channel}
    for event in events:
        now += timedelta(minutes=1)
        name, channel, detail = event
        if name == "ok":
            box.record_success(channel, detail, now, now + timedelta(minutes=5), 5)
            streaks[channel] = 0
        else:
            was_enabled = box.enabled
            disabled = box.record_failure(channel, detail, "boom", now, limit, 5)
            streaks[channel] += 1
            if detail not in RETRYABLE_KINDS:
                assert not box.enabled
            assert disabled == (was_enabled and not box.enabled)
        status = box.channels[channel]
        assert status.consecutive_failures == streaks[channel]
        if box.enabled:
            assert all(s.consecutive_failures <= limit for s in box.channels.values())
        else:
            assert box.disabled_reason
        assert len(box.recent_errors) <= MAX_RECENT_ERRORS


@settings(max_examples=100, deadline=None)
@given(events=events)
def test_failures_never_turn_a_disabled_mailbox_back_on(events):
    box = enabled_mailbox()
    box.disable("stopped", NOW)
    for name, channel, detail in events:
        if name == "ok":
            box.record_success(channel, detail, NOW, NOW, 5)
        else:
            box.record_failure(channel, detail, "boom", NOW, 10, 5)
        assert not box.enabled and box.next_due_at is None


@settings(max_examples=200, deadline=None)
@given(address=st.emails(), before=st.text(max_size=40), after=st.text(max_size=40))
def test_safe_message_never_contains_an_address(address, before, after):
    text = safe_message(f"{before} {address} {after}")
    assert address not in text
    assert len(text) <= 500


def test_channel_status_defaults_are_unconfigured_state():
    status = ChannelStatus()
    assert status.configured and status.test_result is TestResult.NOT_RUN


@pytest.mark.parametrize("bad", ["a/b", "a\\b", "a#b", "a?b", "a\x01b"])
def test_mailbox_id_must_be_a_safe_table_key(bad):
    with pytest.raises(ValidationError):
        Mailbox.new(owner_object_id=bad, email="x@contoso.example", now=NOW)
