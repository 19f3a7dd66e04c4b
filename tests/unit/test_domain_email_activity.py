"""The emails create body: every name, option and length checked against the spec copy."""

import json
from pathlib import Path

import pytest

from shared.domain.correlation import CorrelationMethod, RegardingRef
from shared.domain.email_activity import (
    ENTITY_SETS,
    MAX_LENGTH,
    STATE_OF_STATUS,
    bind_path,
    body_html,
    build_incoming_email,
    conversation_index_hex,
    entity_set,
    parent_activity_bind,
    regarding_bind,
    truncate,
)
from shared.domain.parties import PartyResolution, build_activity_parties
from shared.domain.tracking import TrackingDecision

SPEC = json.loads((Path(__file__).parents[1] / "specs" / "dataverse-subset.json").read_text())
EMAIL = SPEC["entities"]["email"]
ATTRS = EMAIL["attributes"]

MESSAGE = {
    "id": "AAMk1",
    "internetMessageId": "<new@customer.com>",
    "subject": "RE: Offer CRM:0001234",
    "body": {"contentType": "html", "content": "<p>Yes</p>"},
    "from": {"emailAddress": {"address": "Ann@Customer.com", "name": "Ann"}},
    "toRecipients": [{"emailAddress": {"address": "me@contoso.com"}},
                     {"emailAddress": {"address": "you@contoso.com"}}],
    "receivedDateTime": "2025-03-01T10:00:05Z",
    "sentDateTime": "2025-03-01T10:00:00Z",
    "conversationIndex": "AQHZ",
    "internetMessageHeaders": [{"name": "In-Reply-To", "value": "<parent@contoso.com>"}],
}
DECISION = TrackingDecision(True, "correlated_in_reply_to", RegardingRef("account", "a-1"),
                            CorrelationMethod.IN_REPLY_TO, "act-parent")
PARTIES = build_activity_parties(
    "ann@customer.com", ["me@contoso.com"],
    resolutions={"me@contoso.com": PartyResolution("systemuser", "u-1", "me@contoso.com")})


def test_entity_sets_match_spec():
    for table in ("contact", "account", "lead", "systemuser", "queue", "email", "appointment",
                  "task"):
        assert ENTITY_SETS[table] == SPEC["entities"][table]["entitySet"]
    assert entity_set("Opportunity") == "opportunities"
    assert entity_set("incident") == "incidents"
    with pytest.raises(ValueError):
        entity_set("nonsense")


def test_max_lengths_match_spec():
    for attr, limit in MAX_LENGTH.items():
        assert ATTRS[attr]["maxLength"] == limit, attr


def test_status_states_match_spec():
    for status, label in EMAIL["statuscode"].items():
        state = int(label.split("(state ")[1].rstrip(")"))
        assert STATE_OF_STATUS[int(status)] == state


def test_regarding_bind_uses_spec_navigation_names():
    nav = next(v for k, v in EMAIL["navigation"].items() if k.startswith("regardingobjectid"))
    for table in ("account", "contact"):
        key = f"{nav[table]}@odata.bind"
        assert regarding_bind(table, "{ID-1}") == {key: f"/{ENTITY_SETS[table]}(ID-1)"}
    assert regarding_bind("lead", "l") == {"regardingobjectid_lead_email@odata.bind": "/leads(l)"}
    assert regarding_bind("opportunity", "o") == {
        "regardingobjectid_opportunity_email@odata.bind": "/opportunities(o)"}
    assert regarding_bind("new_project", "p", "new_projects") == {
        "regardingobjectid_new_project_email@odata.bind": "/new_projects(p)"}


def test_parent_activity_bind_uses_spec_navigation():
    nav = EMAIL["navigation"]["other single-valued"]["parentactivityid"]
    assert parent_activity_bind("e-1") == {f"{nav}@odata.bind": "/emails(e-1)"}
    assert bind_path("contact", "{abc}") == "/contacts(abc)"


def test_build_incoming_email():
    body = build_incoming_email(MESSAGE, DECISION, PARTIES, tracking_token="CRM:0001234")
    assert body["subject"] == "RE: Offer CRM:0001234"
    assert body["description"] == "<p>Yes</p>"
    assert body["messageid"] == "<new@customer.com>"
    assert body["inreplyto"] == "<parent@contoso.com>"
    assert body["directioncode"] is False
    assert (body["statecode"], body["statuscode"]) == (1, 4)
    assert body["actualend"] == "2025-03-01T10:00:05Z"
    assert body["senton"] == "2025-03-01T10:00:00Z"
    assert body["correlationmethod"] == 3
    assert body["parentactivityid@odata.bind"] == "/emails(act-parent)"
    assert body["regardingobjectid_account_email@odata.bind"] == "/accounts(a-1)"
    assert body["email_activity_parties"] == PARTIES
    assert body["sender"] == "ann@customer.com"
    assert body["torecipients"] == "me@contoso.com;you@contoso.com"
    assert body["trackingtoken"] == "CRM:0001234"
    assert body["conversationindex"] == "0101D9"


def test_body_conforms_to_spec():
    body = build_incoming_email(MESSAGE, DECISION, PARTIES, tracking_token="CRM:0001234")
    collections = EMAIL["navigation"]["collection"]
    for key, value in body.items():
        if key.endswith("@odata.bind"):
            continue
        if key in collections:
            continue
        assert key in ATTRS, key
        spec = ATTRS[key]
        if "maxLength" in spec and isinstance(value, str):
            assert len(value) <= spec["maxLength"], key
        if "options" in spec:
            assert str(value) in spec["options"], key
    status_label = EMAIL["statuscode"][str(body["statuscode"])]
    assert f"(state {body['statecode']})" in status_label


def test_minimal_message_and_no_correlation():
    decision = TrackingDecision(True, "option_all")
    body = build_incoming_email({"subject": None}, decision, [])
    assert body["correlationmethod"] == 0
    assert body["subject"] == ""
    for absent in ("messageid", "inreplyto", "parentactivityid@odata.bind", "sender",
                   "trackingtoken", "conversationindex"):
        assert absent not in body
    assert not any(k.startswith("regardingobjectid_") for k in body)


def test_long_subject_truncated_to_spec():
    long = dict(MESSAGE, subject="x" * 2000)
    body = build_incoming_email(long, DECISION, [])
    assert len(body["subject"]) == ATTRS["subject"]["maxLength"]


def test_refuses_untracked():
    with pytest.raises(ValueError):
        build_incoming_email(MESSAGE, TrackingDecision(False, "option_none"), [])


def test_text_body_escaped():
    assert body_html({"contentType": "text", "content": "a < b\nc"}) == "a &lt; b<br>\nc"
    assert body_html(None) == ""


def test_truncate_and_conversation_index():
    assert truncate("trackingtoken", "x" * 60) == "x" * 50
    assert truncate("unknown", "x" * 60) == "x" * 60
    assert truncate("subject", None) is None
    assert conversation_index_hex("not base64!") is None
    assert conversation_index_hex(None) is None
