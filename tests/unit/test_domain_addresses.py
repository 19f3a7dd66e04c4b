"""Address and header normalisation: every later comparison depends on one spelling."""

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.addresses import (
    IN_REPLY_TO_PROPERTY,
    REFERENCES_PROPERTY,
    domain_of,
    graph_recipients,
    graph_sender,
    header_value,
    header_values,
    in_reply_to_of,
    is_internal,
    normalize_address,
    normalize_message_id,
    parse_address_list,
    parse_mailbox,
    parse_message_ids,
    references_of,
    threading_of,
)


def test_normalize_address_forms():
    assert normalize_address("  Ann.Lee@Contoso.COM ") == "ann.lee@contoso.com"
    assert normalize_address("<ann@contoso.com>") == "ann@contoso.com"
    assert normalize_address('"Lee, Ann" <ANN@contoso.com>') == "ann@contoso.com"
    assert normalize_address("mailto:Ann@Contoso.com") == "ann@contoso.com"


def test_normalize_address_rejects_non_addresses():
    for bad in (None, "", "ann", "ann@", "@contoso.com", "a@b@c.com", "ann@localhost", "a b@c.com"):
        assert normalize_address(bad) is None, bad


def test_parse_mailbox_splits_name_and_address():
    assert parse_mailbox('"Ann Lee" <Ann@Contoso.com>') == ("Ann Lee", "ann@contoso.com")
    assert parse_mailbox("bob@x.org") == ("", "bob@x.org")
    assert parse_mailbox("") == ("", None)


def test_parse_address_list_dedupes_in_order():
    value = "Ann <ann@x.com>, bob@y.com, ANN@x.com, not-an-address"
    assert parse_address_list(value) == ["ann@x.com", "bob@y.com"]


def test_domain_and_internal():
    assert domain_of("Ann <ann@EU.Contoso.com>") == "eu.contoso.com"
    assert domain_of("nonsense") is None
    assert is_internal("ann@contoso.com", ["contoso.com"])
    assert is_internal("ann@eu.contoso.com", ["Contoso.com"])
    assert not is_internal("ann@notcontoso.com", ["contoso.com"])
    assert not is_internal("ann@contoso.com.evil.net", ["contoso.com"])
    assert not is_internal("garbage", ["contoso.com"])
    assert not is_internal("ann@contoso.com", [])


def test_message_id_normalisation_keeps_case():
    assert normalize_message_id("  <AbC@host> ") == "<AbC@host>"
    assert normalize_message_id("AbC@host") == "<AbC@host>"
    assert normalize_message_id("") is None
    assert normalize_message_id("<>") is None


def test_parse_message_ids_references_and_loose_forms():
    assert parse_message_ids("<a@h> <b@h>\r\n\t<c@h> <a@h>") == ["<a@h>", "<b@h>", "<c@h>"]
    assert parse_message_ids("a@h, b@h") == ["<a@h>", "<b@h>"]
    assert parse_message_ids(None) == []


def test_header_lookup_is_case_insensitive():
    headers = [
        {"name": "in-reply-to", "value": "<p@h>"},
        {"name": "References", "value": "<r1@h> <r2@h>"},
        {"name": "REFERENCES", "value": "<r3@h>"},
    ]
    assert header_value(headers, "In-Reply-To") == "<p@h>"
    assert header_values(headers, "references") == ["<r1@h> <r2@h>", "<r3@h>"]
    assert header_value(headers, "X-Missing") is None
    assert in_reply_to_of(headers) == "<p@h>"
    assert references_of(headers) == ["<r1@h>", "<r2@h>", "<r3@h>"]
    assert header_value(None, "x") is None


def test_threading_falls_back_to_mapi_properties():
    message = {
        "singleValueExtendedProperties": [
            {"id": IN_REPLY_TO_PROPERTY, "value": "<p@h>"},
            {"id": REFERENCES_PROPERTY.lower(), "value": "<r1@h> <p@h>"},
        ]
    }
    assert threading_of(message) == ("<p@h>", ["<r1@h>", "<p@h>"])
    with_headers = {
        "internetMessageHeaders": [{"name": "In-Reply-To", "value": "<h@h>"}],
        **message,
    }
    assert threading_of(with_headers)[0] == "<h@h>"
    assert threading_of({}) == (None, [])


def test_graph_recipients_and_sender():
    recipients = [
        {"emailAddress": {"address": "Ann@X.com", "name": "Ann"}},
        {"emailAddress": {"address": "ann@x.com", "name": "dup"}},
        {"emailAddress": {"address": "", "name": "nobody"}},
    ]
    assert graph_recipients(recipients) == [("ann@x.com", "Ann")]
    assert graph_sender({"from": recipients[0]}) == ("ann@x.com", "Ann")
    assert graph_sender({"sender": recipients[0]}) == ("ann@x.com", "Ann")
    assert graph_sender({}) is None


local = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,15}", fullmatch=True)
domain = st.from_regex(r"[a-z0-9]{1,10}\.[a-z]{2,6}", fullmatch=True)


@given(local, domain, st.sampled_from(["{a}", "<{a}>", '"N" <{a}>', " {A} ", "mailto:{a}"]))
def test_normalize_address_idempotent_over_spellings(user, dom, shape):
    addr = f"{user}@{dom}"
    spelled = shape.format(a=addr, A=addr.upper())
    norm = normalize_address(spelled)
    assert norm == addr
    assert normalize_address(norm) == norm


@given(st.lists(st.from_regex(r"[A-Za-z0-9.$]{1,12}@[a-z]{1,8}\.[a-z]{2,4}", fullmatch=True),
                min_size=1, max_size=6, unique=True))
def test_references_round_trip(ids):
    header = " ".join(f"<{i}>" for i in ids)
    assert parse_message_ids(header) == [f"<{i}>" for i in ids]
