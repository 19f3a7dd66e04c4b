"""Auto-created contacts/leads: only real, external, unknown people behind tracked mail."""

from types import SimpleNamespace

import pytest

from shared.domain.auto_create import (
    AutoCreatePolicy,
    is_bulk_or_automated,
    plan_auto_create,
    split_name,
)

ON = AutoCreatePolicy(enabled=True, organization_domains=("contoso.com",))


def plan(address="ann.lee@customer.com", name="Ann Lee", policy=ON, **kw):
    kw.setdefault("tracked", True)
    kw.setdefault("owner_address", "me@contoso.com")
    return plan_auto_create(address, name, policy=policy, **kw)


def test_creates_contact():
    d = plan()
    assert d.create and d.reason == "created" and d.table == "contact"
    assert d.body == {
        "firstname": "Ann", "lastname": "Lee", "emailaddress1": "ann.lee@customer.com"
    }


def test_creates_lead_with_topic():
    policy = AutoCreatePolicy(enabled=True, table="lead")
    d = plan(policy=policy, email_subject="Quote request")
    assert d.table == "lead" and d.body["subject"] == "Quote request"
    d = plan(policy=policy)
    assert d.body["subject"] == "Email from ann.lee@customer.com"


@pytest.mark.parametrize(
    "kwargs,reason",
    [
        (dict(policy=AutoCreatePolicy()), "disabled"),
        (dict(tracked=False), "not_tracked"),
        (dict(address="nonsense"), "invalid_address"),
        (dict(address="x" * 95 + "@customer.com"), "address_too_long"),
        (dict(address="Me@Contoso.com", owner_address="me@contoso.com"), "owner"),
        (dict(address="alias@other.com", owner_addresses=["alias@other.com"]), "owner"),
        (dict(address="colleague@contoso.com"), "own_domain"),
        (dict(address="colleague@eu.contoso.com"), "own_domain"),
        (dict(address="noreply@customer.com"), "automated_sender"),
        (dict(address="no-reply+x@customer.com"), "automated_sender"),
        (dict(address="mailer-daemon@customer.com"), "automated_sender"),
        (dict(headers=[{"name": "List-Unsubscribe", "value": "<mailto:u@x>"}]), "bulk_sender"),
        (dict(headers=[{"name": "precedence", "value": "Bulk"}]), "bulk_sender"),
        (dict(headers=[{"name": "Precedence", "value": "list"}]), "bulk_sender"),
        (dict(headers=[{"name": "Precedence", "value": "junk"}]), "bulk_sender"),
        (dict(headers=[{"name": "Auto-Submitted", "value": "auto-replied"}]), "automated_sender"),
        (dict(address="ann@gmail.com"), "free_mail"),
    ],
)
def test_refusals(kwargs, reason):
    d = plan(**kwargs)
    assert (d.body, d.reason) == (None, reason)
    assert not d.create


def test_auto_submitted_no_is_a_person():
    assert is_bulk_or_automated([{"name": "Auto-Submitted", "value": "no"}]) is None
    assert is_bulk_or_automated(None) is None


def test_free_mail_allowed_when_configured():
    policy = AutoCreatePolicy(enabled=True, exclude_free_mail=False)
    assert plan("ann@gmail.com", policy=policy).create


def test_invalid_table():
    with pytest.raises(ValueError):
        AutoCreatePolicy(table="account")


def test_from_settings():
    s = SimpleNamespace(organization_domains=["contoso.com"])
    p = AutoCreatePolicy.from_settings(s, enabled=True, table="lead")
    assert p.enabled and p.table == "lead" and p.organization_domains == ("contoso.com",)


@pytest.mark.parametrize(
    "display,address,expected",
    [
        ("Ann Lee", None, ("Ann", "Lee")),
        ("Ann Marie van Lee", None, ("Ann Marie van", "Lee")),
        ("Lee, Ann", None, ("Ann", "Lee")),
        ('"Lee, Ann"', None, ("Ann", "Lee")),
        ("Ann Lee (Customer Ltd)", None, ("Ann", "Lee")),
        ('"Ann Lee" <ann@x.com>', None, ("Ann", "Lee")),
        ("Madonna", None, ("", "Madonna")),
        ("", "john.smith@x.com", ("John", "Smith")),
        ("john.smith@x.com", "john.smith@x.com", ("John", "Smith")),
        (None, "jsmith42@x.com", ("", "Jsmith42")),
        (None, "123@x.com", ("", "123")),
        (None, None, ("", "Unknown")),
    ],
)
def test_split_name(display, address, expected):
    assert split_name(display, address) == expected


def test_names_truncated_to_spec():
    d = plan(name="A" * 80 + " " + "B" * 80)
    assert len(d.body["firstname"]) == 50 and len(d.body["lastname"]) == 50
