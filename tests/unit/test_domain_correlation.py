"""Correlation in Dynamics' order, each step switchable, lookups supplied by the caller."""

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.correlation import (
    NO_CORRELATION,
    CorrelationMethod,
    CorrelationPolicy,
    RegardingRef,
    TrackedRef,
    correlate,
)

ACCOUNT = RegardingRef("account", "a-1")
PARENT = TrackedRef("act-parent", ACCOUNT, "<parent@h>")
ROOT = TrackedRef("act-root", RegardingRef("opportunity", "o-1"), "<root@h>")
TOKEN = TrackedRef("act-token", RegardingRef("contact", "c-1"))
CONV = TrackedRef("act-conv", None)

BY_ID = {"<parent@h>": PARENT, "<root@h>": ROOT}
BY_TOKEN = {1234: TOKEN}
BY_CONV = {"conv-1": CONV}


def run(policy=CorrelationPolicy(), **facts):
    return correlate(by_message_id=BY_ID, by_token=BY_TOKEN, by_conversation=BY_CONV,
                     policy=policy, **facts)


def test_dataverse_option_values_match_spec():
    assert CorrelationMethod.NONE.dataverse_value == 0
    assert CorrelationMethod.IN_REPLY_TO.dataverse_value == 3
    assert CorrelationMethod.TRACKING_TOKEN.dataverse_value == 4
    assert CorrelationMethod.CONVERSATION.dataverse_value == 5


def test_in_reply_to_wins_and_inherits_regarding():
    c = run(in_reply_to="parent@h", subject="RE: x CRM:0001234", conversation_id="conv-1")
    assert c.method is CorrelationMethod.IN_REPLY_TO
    assert c.parent_activity_id == "act-parent"
    assert c.regarding == ACCOUNT
    assert c.matched_key == "<parent@h>"
    assert c.correlated


def test_references_checked_newest_first_when_in_reply_to_unknown():
    c = run(in_reply_to="<unknown@h>", references=["<root@h>", "<parent@h>", "<unknown@h>"])
    assert c.method is CorrelationMethod.IN_REPLY_TO
    assert c.parent_activity_id == "act-parent"  # nearest tracked ancestor, not the root


def test_token_after_headers():
    c = run(in_reply_to="<unknown@h>", subject="RE: Offer crm:0001234")
    assert c.method is CorrelationMethod.TRACKING_TOKEN
    assert c.parent_activity_id == "act-token"
    assert c.regarding == RegardingRef("contact", "c-1")


def test_conversation_last():
    c = run(subject="RE: Offer", conversation_id="conv-1")
    assert c.method is CorrelationMethod.CONVERSATION
    assert c.parent_activity_id == "act-conv"
    assert c.regarding is None


def test_nothing_matches():
    c = run(in_reply_to="<x@h>", subject="CRM:0009999", conversation_id="other")
    assert c == NO_CORRELATION
    assert not c.correlated and c.parent_activity_id is None and c.regarding is None


def test_each_step_can_be_switched_off():
    facts = dict(in_reply_to="<parent@h>", subject="CRM:0001234", conversation_id="conv-1")
    assert run(CorrelationPolicy(in_reply_to=False), **facts).method is (
        CorrelationMethod.TRACKING_TOKEN)
    assert run(CorrelationPolicy(in_reply_to=False, tracking_token=False), **facts).method is (
        CorrelationMethod.CONVERSATION)
    off = CorrelationPolicy(in_reply_to=False, tracking_token=False, conversation=False)
    assert run(off, **facts) == NO_CORRELATION


def test_custom_token_shape():
    policy = CorrelationPolicy(token_prefix="Case", token_digits=5)
    c = correlate(subject="Re: Case:01234", by_token={1234: TOKEN}, policy=policy)
    assert c.method is CorrelationMethod.TRACKING_TOKEN
    assert correlate(subject="Re: CRM:0001234", by_token={1234: TOKEN}, policy=policy) == (
        NO_CORRELATION)


def test_callable_lookups_receive_normalised_keys():
    seen = []

    def lookup(mid):
        seen.append(mid)
        return PARENT if mid == "<parent@h>" else None

    c = correlate(in_reply_to="  parent@h ", references=["root@h"], by_message_id=lookup)
    assert c.parent_activity_id == "act-parent"
    assert seen == ["<parent@h>"]


def test_own_tracked_copy_is_not_a_parent():
    # Another mailbox already tracked this very message; its conversation hit is itself.
    me = TrackedRef("act-me", ACCOUNT, "<me@h>")
    c = correlate(conversation_id="conv-9", by_conversation={"conv-9": me},
                  self_message_id="me@h")
    assert c == NO_CORRELATION
    c = correlate(in_reply_to="<me@h>", by_message_id={"<me@h>": me}, self_message_id="<me@h>")
    assert c == NO_CORRELATION


def test_missing_lookups_mean_no_match():
    assert correlate(in_reply_to="<parent@h>", subject="CRM:0001234",
                     conversation_id="conv-1") == NO_CORRELATION


def test_policy_from_settings():
    s = SimpleNamespace(correlate_in_reply_to=False, correlate_tracking_token=True,
                        correlate_conversation=False, tracking_token_prefix="Case",
                        tracking_token_digits=5)
    p = CorrelationPolicy.from_settings(s)
    assert (p.in_reply_to, p.tracking_token, p.conversation, p.token_prefix, p.token_digits) == (
        False, True, False, "Case", 5)


@given(st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_order_is_respected(irt_on, tok_on, conv_on, has_irt, has_tok, has_conv):
    policy = CorrelationPolicy(in_reply_to=irt_on, tracking_token=tok_on, conversation=conv_on)
    c = run(policy,
            in_reply_to="<parent@h>" if has_irt else None,
            subject="CRM:0001234" if has_tok else "plain",
            conversation_id="conv-1" if has_conv else None)
    if irt_on and has_irt:
        expected = CorrelationMethod.IN_REPLY_TO
    elif tok_on and has_tok:
        expected = CorrelationMethod.TRACKING_TOKEN
    elif conv_on and has_conv:
        expected = CorrelationMethod.CONVERSATION
    else:
        expected = CorrelationMethod.NONE
    assert c.method is expected
