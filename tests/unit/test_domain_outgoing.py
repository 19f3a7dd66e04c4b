"""sendMail payload (recoverable after a crash) and the email status machine."""

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.addresses import IN_REPLY_TO_PROPERTY, REFERENCES_PROPERTY
from shared.domain.outgoing import (
    ACTIVITY_HEADER,
    ACTIVITY_PROPERTY_ID,
    TRANSITIONS,
    EmailStatus,
    InvalidTransition,
    OutgoingError,
    activity_id_of,
    build_send_mail,
    can_transition,
    check_header_name,
    recovery_status,
    sent_items_filter,
    transition,
)

SPEC = json.loads((Path(__file__).parents[1] / "specs" / "dataverse-subset.json").read_text())
GRAPH = json.loads((Path(__file__).parents[1] / "specs" / "graph-v1.0-subset.json").read_text())
EMAIL = {"subject": "Offer", "description": "<p>Hi</p>"}
PARTIES = [
    {"participationtypemask": 1, "addressused": "me@contoso.com"},
    {"participationtypemask": 2, "addressused": "Ann@Customer.com"},
    {"participationtypemask": 2, "addressused": "ann@customer.com"},
    {"participationtypemask": 3, "addressused": None, "_partyid_value": "c-2"},
    {"participationtypemask": 4, "addressused": "", "_partyid_value": "c-3"},
]


def test_status_values_and_states_match_spec():
    for status in EmailStatus:
        label = SPEC["entities"]["email"]["statuscode"][str(int(status))]
        assert f"(state {status.state})" in label


def test_happy_path_transitions():
    assert transition(6, 7) == {"statecode": 1, "statuscode": 7}
    assert transition(7, 3) == {"statecode": 1, "statuscode": 3}
    assert transition(7, 8) == {"statecode": 0, "statuscode": 8}
    assert transition(6, 8) == {"statecode": 0, "statuscode": 8}


@pytest.mark.parametrize("current,target", [(1, 7), (3, 6), (3, 7), (4, 3), (6, 3), (8, 3),
                                            (7, 7), (99, 7), (6, 99)])
def test_illegal_transitions(current, target):
    assert not can_transition(current, target)
    with pytest.raises(InvalidTransition):
        transition(current, target)


def test_sent_is_terminal_and_every_path_passes_sending():
    assert EmailStatus.SENT not in TRANSITIONS
    for source, targets in TRANSITIONS.items():
        if EmailStatus.SENT in targets:
            assert source is EmailStatus.SENDING


def test_recovery():
    assert recovery_status(True) is EmailStatus.SENT
    assert recovery_status(False) is EmailStatus.PENDING_SEND
    assert can_transition(EmailStatus.SENDING, recovery_status(False))


def test_build_send_mail():
    out = build_send_mail(EMAIL, PARTIES, activity_id="act-1",
                          resolved_addresses={"c-2": "Bob@Customer.com"},
                          tracking_token="CRM:0001234")
    msg = out.payload["message"]
    assert out.payload["saveToSentItems"] is True
    assert msg["subject"] == "Offer CRM:0001234"
    assert msg["body"] == {"contentType": "html", "content": "<p>Hi</p>"}
    assert msg["toRecipients"] == [{"emailAddress": {"address": "ann@customer.com"}}]
    assert msg["ccRecipients"] == [{"emailAddress": {"address": "bob@customer.com"}}]
    assert "bccRecipients" not in msg
    assert out.skipped_parties == ("c-3",)
    assert msg["internetMessageHeaders"] == [{"name": ACTIVITY_HEADER, "value": "act-1"}]
    assert msg["singleValueExtendedProperties"] == [{"id": ACTIVITY_PROPERTY_ID, "value": "act-1"}]
    assert activity_id_of(msg) == "act-1"


def test_reply_threading_goes_through_mapi_properties():
    out = build_send_mail(EMAIL, PARTIES, activity_id="act-1", in_reply_to="parent@h",
                          references=["<root@h>", "<mid@h>"])
    msg = out.payload["message"]
    props = {p["id"]: p["value"] for p in msg["singleValueExtendedProperties"]}
    assert props[IN_REPLY_TO_PROPERTY] == "<parent@h>"
    assert props[REFERENCES_PROPERTY] == "<root@h> <mid@h> <parent@h>"
    # Graph refuses non-"x-" internet headers, so none may appear
    assert all(h["name"].lower().startswith("x-") for h in msg["internetMessageHeaders"])


def test_payload_uses_graph_message_properties():
    schemas = GRAPH["components"]["schemas"]
    declared = set()
    for part in schemas["microsoft.graph.message"].get("allOf", []):
        declared |= set(part.get("properties", {}))
    out = build_send_mail(EMAIL, PARTIES, activity_id="a", in_reply_to="<p@h>")
    assert set(out.payload["message"]) <= declared
    body = GRAPH["components"]["requestBodies"]["sendMailRequestBody"]
    params = {k.lower() for k in body["content"]["application/json"]["schema"]["properties"]}
    assert {k.lower() for k in out.payload} <= params


def test_no_recipients_is_an_error():
    with pytest.raises(OutgoingError) as err:
        build_send_mail(EMAIL, [PARTIES[0], PARTIES[4]], activity_id="a")
    assert err.value.reason == "no_recipients"


def test_header_names_checked():
    assert check_header_name("X-Custom") == "X-Custom"
    for bad in ("In-Reply-To", "References", "x-"):
        with pytest.raises(ValueError):
            check_header_name(bad)


def test_sent_items_filter_escapes():
    f = sent_items_filter("a'b")
    assert ACTIVITY_PROPERTY_ID in f
    assert "ep/value eq 'a''b'" in f


def test_activity_id_from_header_only():
    assert activity_id_of({"internetMessageHeaders": [{"name": "X-SSS-Activity-Id",
                                                       "value": "z"}]}) == "z"
    assert activity_id_of({}) is None


@given(st.lists(st.tuples(st.sampled_from([1, 2, 3, 4, 5]),
                          st.sampled_from(["a@x.com", "B@x.com", "b@x.com", "", None])),
                min_size=1, max_size=10))
def test_recipients_never_duplicated_and_roles_kept(rows):
    parties = [{"participationtypemask": m, "addressused": a} for m, a in rows]
    try:
        out = build_send_mail({}, parties, activity_id="a")
    except OutgoingError:
        assert not any(m in (2, 3, 4) and a for m, a in rows)
        return
    msg = out.payload["message"]
    for key, mask in (("toRecipients", 2), ("ccRecipients", 3), ("bccRecipients", 4)):
        got = [r["emailAddress"]["address"] for r in msg.get(key, [])]
        assert len(got) == len(set(got))
        assert set(got) == {a.lower() for m, a in rows if m == mask and a}
