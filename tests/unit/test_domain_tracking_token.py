"""Subject tracking tokens: formatting, tolerant parsing, appending once."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.tracking_token import append_token, find_token, format_token, strip_token


def test_format_pads_to_digits():
    assert format_token(1234) == "CRM:0001234"
    assert format_token(7, "Case", 4) == "Case:0007"


@pytest.mark.parametrize("n,digits", [(-1, 7), (10_000_000, 7), (1000, 3)])
def test_format_rejects_numbers_that_do_not_fit(n, digits):
    with pytest.raises(ValueError):
        format_token(n, "CRM", digits)


@pytest.mark.parametrize("prefix", ["", "CR M", "CRM1", "X" * 21])
def test_format_rejects_bad_prefix(prefix):
    with pytest.raises(ValueError):
        format_token(1, prefix, 7)


@pytest.mark.parametrize(
    "subject",
    [
        "RE: Offer CRM:0001234",
        "re: offer crm:0001234",
        "FW: [CRM:0001234] Offer",
        "Offer (CRM: 0001234).",
        "CRM:0001234",
        "Offer - crm:0001234!",
    ],
)
def test_find_is_robust(subject):
    assert find_token(subject) == 1234


@pytest.mark.parametrize(
    "subject",
    [
        None,
        "",
        "Meeting in 2024",
        "CRM:2024 budget",  # too few digits
        "CRM:00012345",  # too many digits
        "XCRM:0001234",  # glued to another word
        "CRM0001234",  # no colon
        "ABC:0001234",
    ],
)
def test_find_ignores_lookalikes(subject):
    assert find_token(subject) is None


def test_find_takes_last_token():
    assert find_token("RE: FW: a CRM:0000001 b CRM:0000002") == 2


def test_custom_prefix_and_digits():
    assert find_token("Re: Case:00042", "Case", 5) == 42
    assert find_token("Re: CRM:0000042", "Case", 5) is None


def test_append_once():
    assert append_token("Offer", "CRM:0001234") == "Offer CRM:0001234"
    assert append_token("RE: Offer crm:0001234", "CRM:0001234") == "RE: Offer crm:0001234"
    assert append_token("", "CRM:0001234") == "CRM:0001234"
    assert append_token("Offer CRM:0000001", "CRM:0001234") == "Offer CRM:0000001 CRM:0001234"
    with pytest.raises(ValueError):
        append_token("Offer", "not a token")


def test_strip_token():
    assert strip_token("RE: Offer CRM:0001234 now") == "RE: Offer now"
    assert strip_token(None) == ""


prefixes = st.from_regex(r"[A-Za-z]{1,20}", fullmatch=True)


@given(st.integers(min_value=3, max_value=12).flatmap(
    lambda d: st.tuples(st.just(d), st.integers(min_value=0, max_value=10**d - 1))), prefixes)
def test_parse_format_round_trip(dn, prefix):
    digits, n = dn
    token = format_token(n, prefix, digits)
    assert find_token(token, prefix, digits) == n
    assert find_token(f"RE: Some subject {token}", prefix.lower(), digits) == n


@given(st.text(max_size=60), st.integers(min_value=0, max_value=9_999_999))
def test_append_then_find(subject, n):
    token = format_token(n)
    appended = append_token(subject, token)
    assert find_token(appended) == n
    assert append_token(appended, token) == appended
