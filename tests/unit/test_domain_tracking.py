"""Tracking decisions per option, with the manual/folder/reply overrides and reason codes."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.correlation import (
    Correlation,
    CorrelationMethod,
    CorrelationPolicy,
    RegardingRef,
    TrackedRef,
)
from shared.domain.tracking import (
    REASONS,
    CorrelationLookups,
    MessageFacts,
    TrackingPolicy,
    decide,
    has_category,
)
from shared.settings import TrackingOption

T0 = datetime(2025, 3, 1, tzinfo=UTC)
ACCOUNT = RegardingRef("account", "a-1")
FOLDER_REGARDING = RegardingRef("opportunity", "o-9")
PARENT = TrackedRef("act-1", ACCOUNT, "<parent@h>")
REPLY = Correlation(CorrelationMethod.IN_REPLY_TO, PARENT, "<parent@h>")

PLAIN = MessageFacts(sender="ann@customer.com", to=("me@contoso.com",), subject="Hello",
                     received_at=T0)


def policy(option, **kw):
    return TrackingPolicy(option=option, **kw)


@pytest.mark.parametrize(
    "option,tables,track,reason",
    [
        (TrackingOption.ALL, (), True, "option_all"),
        (TrackingOption.NONE, ("contact",), False, "option_none"),
        (TrackingOption.RESPONSES_TO_CRM, ("contact",), False, "not_a_response"),
        (TrackingOption.FROM_LEADS_CONTACTS_ACCOUNTS, ("contact",), True,
         "sender_is_lead_contact_account"),
        (TrackingOption.FROM_LEADS_CONTACTS_ACCOUNTS, ("lead",), True,
         "sender_is_lead_contact_account"),
        (TrackingOption.FROM_LEADS_CONTACTS_ACCOUNTS, ("account",), True,
         "sender_is_lead_contact_account"),
        (TrackingOption.FROM_LEADS_CONTACTS_ACCOUNTS, ("systemuser",), False,
         "sender_not_crm_record"),
        (TrackingOption.FROM_LEADS_CONTACTS_ACCOUNTS, ("queue",), False, "sender_not_crm_record"),
        (TrackingOption.FROM_LEADS_CONTACTS_ACCOUNTS, (), False, "sender_not_crm_record"),
        (TrackingOption.FROM_EMAIL_ENABLED_RECORDS, ("systemuser",), True,
         "sender_is_email_enabled_record"),
        (TrackingOption.FROM_EMAIL_ENABLED_RECORDS, ("queue",), True,
         "sender_is_email_enabled_record"),
        (TrackingOption.FROM_EMAIL_ENABLED_RECORDS, ("Contact",), True,
         "sender_is_email_enabled_record"),
        (TrackingOption.FROM_EMAIL_ENABLED_RECORDS, (), False, "sender_not_crm_record"),
    ],
)
def test_options(option, tables, track, reason):
    d = decide(PLAIN, policy(option), sender_tables=tables)
    assert (d.track, d.reason) == (track, reason)
    if not track:
        assert d.regarding is None and d.correlation is None and d.parent_activity_id is None
    else:
        assert d.correlation is CorrelationMethod.NONE
    assert d.explanation == REASONS[reason]


def test_option_accepts_plain_string():
    assert decide(PLAIN, policy("all")).track


def test_reply_in_tracked_thread_tracked_for_every_option_but_none():
    for option in TrackingOption:
        d = decide(PLAIN, policy(option), correlation=REPLY)
        if option is TrackingOption.NONE:
            assert (d.track, d.reason) == (False, "option_none")
        else:
            assert d.track and d.reason == "correlated_in_reply_to"
            assert d.regarding == ACCOUNT
            assert d.parent_activity_id == "act-1"
            assert d.correlation is CorrelationMethod.IN_REPLY_TO


def test_reason_names_the_correlation_method():
    for method in (CorrelationMethod.TRACKING_TOKEN, CorrelationMethod.CONVERSATION):
        d = decide(PLAIN, policy(TrackingOption.RESPONSES_TO_CRM),
                   correlation=Correlation(method, PARENT))
        assert d.reason == f"correlated_{method.value}"
        assert d.reason in REASONS


def test_category_tracks_whatever_the_option_and_date():
    facts = MessageFacts(sender="x@y.com", categories=("Other", "tracked to dynamics 365"),
                         received_at=T0 - timedelta(days=400))
    p = policy(TrackingOption.NONE, process_email_from=T0)
    d = decide(facts, p)
    assert (d.track, d.reason, d.regarding) == (True, "category", None)


def test_category_keeps_correlation_link():
    facts = MessageFacts(sender="x@y.com", categories=("Tracked to Dynamics 365",))
    d = decide(facts, policy(TrackingOption.NONE), correlation=REPLY)
    assert d.reason == "category" and d.parent_activity_id == "act-1" and d.regarding == ACCOUNT


def test_custom_category_name():
    facts = MessageFacts(sender="x@y.com", categories=("CRM",))
    p = policy(TrackingOption.NONE, tracked_category="CRM")
    assert decide(facts, p).reason == "category"
    assert decide(facts, policy(TrackingOption.NONE)).reason == "option_none"


def test_folder_rule_tracks_with_folder_regarding():
    facts = MessageFacts(sender="x@y.com", folder_id="F1", received_at=T0)
    p = policy(TrackingOption.NONE, folder_rules={"F1": FOLDER_REGARDING})
    d = decide(facts, p, correlation=REPLY)
    assert (d.track, d.reason) == (True, "folder_rule")
    assert d.regarding == FOLDER_REGARDING  # folder beats the inherited regarding
    assert d.parent_activity_id == "act-1"
    other = MessageFacts(sender="x@y.com", folder_id="F2")
    assert decide(other, p).reason == "option_none"


def test_before_process_from_skipped_even_for_replies():
    p = policy(TrackingOption.ALL, process_email_from=T0)
    old = MessageFacts(sender="x@y.com", received_at=T0 - timedelta(seconds=1))
    d = decide(old, p, correlation=REPLY)
    assert (d.track, d.reason) == (False, "before_process_from")
    same = MessageFacts(sender="x@y.com", received_at=T0)
    assert decide(same, p).track
    naive = MessageFacts(sender="x@y.com", received_at=datetime(2020, 1, 1))
    assert decide(naive, p).reason == "before_process_from"
    unknown_date = MessageFacts(sender="x@y.com")
    assert decide(unknown_date, p).track


def test_should_track_with_only_sender_recipients_subject():
    """The add-in's question: only sender, recipients and subject are known."""
    facts = MessageFacts(sender="Ann <ann@customer.com>", to=("me@contoso.com",),
                         subject="RE: Offer CRM:0001234")
    lookups = CorrelationLookups(by_token={1234: TrackedRef("act-7", ACCOUNT)})
    d = decide(facts, policy(TrackingOption.RESPONSES_TO_CRM), lookups=lookups)
    assert (d.track, d.reason, d.parent_activity_id) == (
        True, "correlated_tracking_token", "act-7")
    d = decide(MessageFacts(sender="ann@customer.com", subject="Hi"),
               policy(TrackingOption.RESPONSES_TO_CRM), lookups=lookups)
    assert (d.track, d.reason) == (False, "not_a_response")


def test_lookups_respect_correlation_policy():
    facts = MessageFacts(sender="a@b.com", in_reply_to="<parent@h>")
    lookups = CorrelationLookups(by_message_id={"<parent@h>": PARENT})
    on = decide(facts, policy(TrackingOption.RESPONSES_TO_CRM), lookups=lookups)
    assert on.reason == "correlated_in_reply_to"
    off = TrackingPolicy(option=TrackingOption.RESPONSES_TO_CRM,
                         correlation=CorrelationPolicy(in_reply_to=False))
    assert decide(facts, off, lookups=lookups).reason == "not_a_response"


def test_invalid_sender_never_counts_as_record():
    facts = MessageFacts(sender="not an address")
    d = decide(facts, policy(TrackingOption.FROM_EMAIL_ENABLED_RECORDS),
               sender_tables=("contact",))
    assert d.reason == "sender_not_crm_record"


def test_facts_from_graph_message():
    message = {
        "from": {"emailAddress": {"address": "Ann@Customer.com", "name": "Ann"}},
        "toRecipients": [{"emailAddress": {"address": "me@contoso.com"}}],
        "ccRecipients": [{"emailAddress": {"address": "cc@contoso.com"}}],
        "subject": "RE: Offer",
        "internetMessageId": "<new@h>",
        "internetMessageHeaders": [{"name": "In-Reply-To", "value": "<parent@h>"},
                                   {"name": "References", "value": "<root@h> <parent@h>"}],
        "conversationId": "conv-1",
        "categories": ["Tracked to Dynamics 365"],
        "parentFolderId": "inbox",
        "receivedDateTime": "2025-03-01T10:00:00Z",
    }
    f = MessageFacts.from_graph(message)
    assert f.sender == "ann@customer.com"
    assert f.to == ("me@contoso.com",) and f.cc == ("cc@contoso.com",)
    assert f.in_reply_to == "<parent@h>" and f.references == ("<root@h>", "<parent@h>")
    assert f.conversation_id == "conv-1" and f.folder_id == "inbox"
    assert f.received_at == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert f.internet_message_id == "<new@h>"
    assert has_category(f.categories, "TRACKED TO DYNAMICS 365")
    assert MessageFacts.from_graph({"receivedDateTime": "garbage"}).received_at is None


def test_policy_from_settings():
    s = SimpleNamespace(
        default_tracking_option=TrackingOption.RESPONSES_TO_CRM,
        tracked_category="Tracked", correlate_in_reply_to=True, correlate_tracking_token=False,
        correlate_conversation=True, tracking_token_prefix="CRM", tracking_token_digits=7,
    )
    p = TrackingPolicy.from_settings(s)
    assert p.option is TrackingOption.RESPONSES_TO_CRM and p.tracked_category == "Tracked"
    assert p.correlation.tracking_token is False
    p = TrackingPolicy.from_settings(s, option="all", process_email_from=T0,
                                     folder_rules={"F": ACCOUNT})
    assert p.option is TrackingOption.ALL and p.process_email_from == T0
    assert p.folder_rules == {"F": ACCOUNT}


@given(
    st.sampled_from(list(TrackingOption)),
    st.booleans(), st.booleans(), st.booleans(), st.booleans(),
    st.lists(st.sampled_from(["contact", "account", "lead", "systemuser", "queue"]), max_size=3),
)
def test_decision_invariants(option, categorized, in_folder, correlated, old, tables):
    facts = MessageFacts(
        sender="ann@customer.com",
        categories=("Tracked to Dynamics 365",) if categorized else (),
        folder_id="F1" if in_folder else None,
        received_at=T0 - timedelta(days=1) if old else T0,
    )
    p = policy(option, process_email_from=T0, folder_rules={"F1": FOLDER_REGARDING})
    d = decide(facts, p, sender_tables=tables, correlation=REPLY if correlated else None)
    assert d.reason in REASONS
    if categorized or in_folder:
        assert d.track  # what a user asked for is never refused
    elif old:
        assert not d.track
    elif option is TrackingOption.NONE:
        assert not d.track
    elif correlated:
        assert d.track and d.regarding == ACCOUNT
    elif option is TrackingOption.ALL:
        assert d.track
    if d.track and correlated:
        assert d.parent_activity_id == "act-1"
    if not d.track:
        assert d.regarding is None and d.parent_activity_id is None


def test_test_and_enable_probe_is_never_tracked() -> None:
    from shared.domain.tracking import TEST_MESSAGE_SUBJECT

    policy = TrackingPolicy(option=TrackingOption.ALL, owner_address="Alex@Contoso.com")
    probe = MessageFacts(sender="alex@contoso.com", to=("alex@contoso.com",),
                         subject=TEST_MESSAGE_SUBJECT)
    decision = decide(probe, policy)
    assert not decision.track and decision.reason == "test_message"
    # the same subject from someone else, or to someone else, is ordinary mail
    other = MessageFacts(sender="ana@fabrikam.com", to=("alex@contoso.com",),
                         subject=TEST_MESSAGE_SUBJECT)
    assert decide(other, policy).track
    forwarded = MessageFacts(sender="alex@contoso.com", to=("megan@contoso.com",),
                             subject=TEST_MESSAGE_SUBJECT)
    assert decide(forwarded, policy).track
