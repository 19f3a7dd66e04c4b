"""Party resolution order and activityparty rows, checked against the Dataverse spec."""

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.parties import (
    CandidateRecord,
    ParticipationType,
    PartyResolution,
    build_activity_parties,
    party_row,
    resolve,
)

SPEC = json.loads((Path(__file__).parents[1] / "specs" / "dataverse-subset.json").read_text())
PARTY_SPEC = SPEC["entities"]["activityparty"]
ME = "11111111-1111-1111-1111-111111111111"

USER = CandidateRecord("systemuser", "u-1", True)
DISABLED_USER = CandidateRecord("systemuser", "u-0", False)
CONTACT = CandidateRecord("contact", "c-1", True, owner_id="someone-else")
MY_CONTACT = CandidateRecord("contact", "c-2", True, owner_id=ME)
ACCOUNT = CandidateRecord("account", "a-1", True)
MY_ACCOUNT = CandidateRecord("account", "a-2", True, owner_id=ME.upper())
LEAD = CandidateRecord("lead", "l-1", True)
MY_LEAD = CandidateRecord("lead", "l-2", True, owner_id=f"{{{ME}}}")
QUEUE = CandidateRecord("queue", "q-1", True)
OTHER = CandidateRecord("new_partner", "p-1", True, entity_set="new_partners")


def pick(*cands, me=ME):
    r = resolve("Ann@X.com", list(cands), me)
    return (r.table, r.id)


def test_order_systemuser_contact_account_lead_queue_other():
    assert pick(OTHER, QUEUE, LEAD, ACCOUNT, CONTACT, USER) == ("systemuser", "u-1")
    assert pick(OTHER, QUEUE, LEAD, ACCOUNT, CONTACT) == ("contact", "c-1")
    assert pick(OTHER, QUEUE, LEAD, ACCOUNT) == ("account", "a-1")
    assert pick(OTHER, QUEUE, LEAD) == ("lead", "l-1")
    assert pick(OTHER, QUEUE) == ("queue", "q-1")
    assert pick(OTHER) == ("new_partner", "p-1")


def test_owned_duplicate_beats_systemuser():
    assert pick(USER, CONTACT, MY_CONTACT) == ("contact", "c-2")
    assert pick(USER, MY_LEAD) == ("lead", "l-2")  # braces in the owner id are fine
    assert pick(USER, MY_ACCOUNT, MY_LEAD) == ("account", "a-2")  # case-insensitive ids
    assert pick(USER, MY_CONTACT, me=None) == ("systemuser", "u-1")


def test_owned_record_preferred_within_its_table():
    assert pick(CONTACT, MY_CONTACT) == ("contact", "c-2")
    assert pick(MY_LEAD, CONTACT) == ("contact", "c-1")  # order still beats ownership


def test_disabled_user_never():
    assert pick(DISABLED_USER, LEAD) == ("lead", "l-1")
    assert pick(DISABLED_USER) == (None, None)


def test_inactive_other_records_only_as_last_resort():
    inactive_contact = CandidateRecord("contact", "c-9", False)
    assert pick(inactive_contact, LEAD) == ("lead", "l-1")
    assert pick(inactive_contact) == ("contact", "c-9")


def test_ties_keep_caller_order():
    first = CandidateRecord("contact", "c-old")
    second = CandidateRecord("contact", "c-new")
    assert pick(first, second) == ("contact", "c-old")


def test_unresolved_keeps_address():
    r = resolve("  Ann <ANN@X.com> ", [], ME)
    assert r == PartyResolution(None, None, "ann@x.com")
    assert not r.resolved


def test_participation_values_match_spec():
    spec = PARTY_SPEC["participationtypemask"]
    assert spec[str(int(ParticipationType.SENDER))] == "Sender"
    assert spec[str(int(ParticipationType.TO))] == "ToRecipient"
    assert spec[str(int(ParticipationType.CC))] == "CCRecipient"
    assert spec[str(int(ParticipationType.BCC))] == "BccRecipient"


def test_party_rows_bind_each_table():
    expected = {
        "systemuser": "/systemusers(x)", "contact": "/contacts(x)", "account": "/accounts(x)",
        "lead": "/leads(x)", "queue": "/queues(x)",
    }
    for table, path in expected.items():
        row = party_row("a@b.com", ParticipationType.TO, PartyResolution(table, "x", "a@b.com"))
        assert row == {
            "participationtypemask": 2,
            "addressused": "a@b.com",
            f"partyid_{table}@odata.bind": path,
        }


def test_party_row_for_unknown_entity_set_falls_back_to_address():
    row = party_row("a@b.com", ParticipationType.CC, PartyResolution("mystery", "x", "a@b.com"))
    assert row == {"participationtypemask": 3, "addressused": "a@b.com"}
    row = party_row("a@b.com", ParticipationType.CC,
                    PartyResolution("new_partner", "p", "a@b.com", entity_set="new_partners"))
    assert row["partyid_new_partner@odata.bind"] == "/new_partners(p)"


def test_build_activity_parties():
    resolutions = {
        "ann@x.com": PartyResolution("contact", "c-1", "ann@x.com"),
        "me@contoso.com": PartyResolution("systemuser", "u-1", "me@contoso.com"),
    }
    rows = build_activity_parties(
        "Ann <Ann@X.com>",
        to=["me@contoso.com", "ME@contoso.com", "stranger@y.com"],
        cc=["ann@x.com", "broken"],
        bcc=["hidden@y.com"],
        resolutions=resolutions,
    )
    assert rows == [
        {"participationtypemask": 1, "addressused": "ann@x.com",
         "partyid_contact@odata.bind": "/contacts(c-1)"},
        {"participationtypemask": 2, "addressused": "me@contoso.com",
         "partyid_systemuser@odata.bind": "/systemusers(u-1)"},
        {"participationtypemask": 2, "addressused": "stranger@y.com"},
        {"participationtypemask": 3, "addressused": "ann@x.com",
         "partyid_contact@odata.bind": "/contacts(c-1)"},
        {"participationtypemask": 4, "addressused": "hidden@y.com"},
    ]


def test_rows_use_only_spec_attributes():
    attrs = PARTY_SPEC["attributes"]
    rows = build_activity_parties("a@b.com", ["c@d.com"], resolutions={
        "a@b.com": PartyResolution("account", "a", "a@b.com")})
    for row in rows:
        for key in row:
            if key.endswith("@odata.bind"):
                nav = key.removesuffix("@odata.bind")
                assert nav.startswith("partyid_")  # spec navigation pattern partyid_<table>
            else:
                assert key in attrs
        assert len(row["addressused"]) <= attrs["addressused"]["maxLength"]
        assert str(row["participationtypemask"]) in attrs["participationtypemask"]["options"]


tables = st.sampled_from(["systemuser", "contact", "account", "lead", "queue"])
cands = st.lists(
    st.builds(CandidateRecord, tables, st.uuids().map(str), st.booleans(),
              st.sampled_from([None, ME, "other"])),
    max_size=8,
)


@given(cands)
def test_resolution_invariants(candidates):
    r = resolve("a@b.com", candidates, ME)
    assert r.address == "a@b.com"
    chosen = next((c for c in candidates if c.id == r.id), None)
    if r.resolved:
        assert chosen is not None
        assert not (chosen.table == "systemuser" and not chosen.is_active)
        if any(c.is_active for c in candidates if c.table != "systemuser") or any(
                c.is_active and c.table == "systemuser" for c in candidates):
            assert chosen.is_active
    else:
        assert all(c.table == "systemuser" and not c.is_active for c in candidates)
    # a usable active systemuser loses only to a record the tracking user owns
    if any(c.table == "systemuser" and c.is_active for c in candidates) and r.table != (
            "systemuser"):
        assert chosen.owner_id == ME and chosen.table in ("contact", "account", "lead")
