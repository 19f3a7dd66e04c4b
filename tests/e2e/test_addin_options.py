"""Should-track, record lookup and the caller's own options, end to end."""

from __future__ import annotations

import pytest

from tests.e2e.test_addin_support import (
    ALEX,
    ALEX_OID,
    ALEX_SYSTEMUSER,
    ANA,
    BOB,
    FABRIKAM,
    MEGAN,
    MEGAN_OID,
    call,
)
from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e


async def register(host: FunctionHost, oid: str) -> None:
    response = await host.http("admin_register_mailbox", "POST", "admin/mailboxes",
                               body={"owner_object_id": oid}, token=host.admin_token())
    assert response.status == 201, response.body


async def options(host: FunctionHost, upn: str = ALEX, body: object = None) -> object:
    if body is None:
        return await call(host, "addin_get_options", "GET", "me/options", upn=upn)
    return await call(host, "addin_update_options", "PATCH", "me/options", upn=upn, body=body)


async def should(host: FunctionHost, body: dict[str, object], upn: str = ALEX) -> object:
    return await call(host, "addin_should_track", "POST", "should-track", upn=upn, body=body)


async def test_options_round_trip(app_host: FunctionHost) -> None:
    assert (await options(app_host)).status == 404  # not registered yet
    await register(app_host, ALEX_OID)
    first = await options(app_host)
    assert first.status == 200
    assert first.json() == {"tracking_option": "responses_to_crm", "auto_create_records": "off",
                            "folder_rules": []}
    change = {"tracking_option": "from_leads_contacts_accounts", "auto_create_records": "lead",
              "folder_rules": [{"folder_id": "AAMkFolder1=", "folder_name": "Fabrikam deals",
                                "regarding": {"table": "account", "id": FABRIKAM}}]}
    updated = await options(app_host, body=change)
    assert updated.status == 200, updated.body
    assert updated.json() == change
    assert (await options(app_host)).json() == change
    # the admin sees the same configuration
    admin = await app_host.http("admin_get_mailbox", "GET", f"admin/mailboxes/{ALEX_OID}",
                                route={"mailbox_id": ALEX_OID}, token=app_host.admin_token())
    assert admin.json()["tracking_option"] == "from_leads_contacts_accounts"
    assert admin.json()["folder_rules"][0]["regarding_id"] == FABRIKAM


@pytest.mark.parametrize("body,field,status", [
    ({}, "body", 400),
    ({"tracking_option": "sometimes"}, "tracking_option", 400),
    ({"tracking_option": None}, "body", 400),
    ({"auto_create_records": "account"}, "auto_create_records", 400),
    ({"folder_rules": [{"folder_id": "AAM=", "regarding": {"table": "systemuser",
                                                           "id": ALEX_SYSTEMUSER}}]},
     "folder_rules.0.regarding.table", 400),
    ({"folder_rules": [{"folder_id": "AAM=", "regarding": {"table": "contact", "id": ANA}}]},
     "regarding.id", 403),
])
async def test_options_refusals(app_host: FunctionHost, body: dict[str, object], field: str,
                                status: int) -> None:
    await register(app_host, MEGAN_OID)
    response = await options(app_host, upn=MEGAN, body=body)
    assert response.status == status, response.body
    assert response.json()["field"] == field
    assert (await options(app_host, upn=MEGAN)).json()["folder_rules"] == []


async def test_should_track_explains_the_option(app_host: FunctionHost) -> None:
    # default option: responses to CRM email only
    answer = await should(app_host, {"sender": "ana@fabrikam.com", "to": [ALEX],
                                     "subject": "Hello"})
    assert answer.status == 200, answer.body
    assert answer.json() == {"track": False, "reason": "not_a_response",
                             "explanation": answer.json()["explanation"],
                             "tracking_option": "responses_to_crm"}
    await register(app_host, ALEX_OID)
    await options(app_host, body={"tracking_option": "from_leads_contacts_accounts"})
    yes = await should(app_host, {"sender": "ana@fabrikam.com", "to": [ALEX], "subject": "Hi"})
    assert yes.json()["track"] is True
    assert yes.json()["reason"] == "sender_is_lead_contact_account"
    no = await should(app_host, {"sender": "stranger@else.example", "to": [ALEX],
                                 "subject": "Hi"})
    assert no.json()["track"] is False and no.json()["reason"] == "sender_not_crm_record"


async def test_should_track_by_megan_depends_on_what_she_can_read(app_host: FunctionHost
                                                                  ) -> None:
    await register(app_host, MEGAN_OID)
    await options(app_host, upn=MEGAN, body={"tracking_option": "from_leads_contacts_accounts"})
    mine = await should(app_host, {"sender": "bob@northwind.example", "subject": "x"}, MEGAN)
    assert mine.json()["track"] is True
    hidden = await should(app_host, {"sender": "ana@fabrikam.com", "subject": "x"}, MEGAN)
    assert hidden.json()["track"] is False


@pytest.mark.parametrize("body,field", [
    ({"sender": "ana@fabrikam.com", "body": "x"}, "body"),
    ({"sender": "ana@fabrikam.com", "attachments": []}, "attachments"),
    ({"sender": "not an address"}, "sender"),
    ({"sender": "ana@fabrikam.com", "to": ["nope"]}, "to"),
    ({"to": ["ana@fabrikam.com"]}, "sender"),
])
async def test_should_track_accepts_only_sender_recipients_subject(
        app_host: FunctionHost, body: dict[str, object], field: str) -> None:
    response = await should(app_host, body)
    assert response.status == 400
    assert response.json()["field"] == field


async def test_lookup_returns_only_table_id_and_name(app_host: FunctionHost) -> None:
    response = await call(app_host, "addin_lookup", "POST", "lookup",
                          body={"addresses": ["Ana@Fabrikam.com", "info@fabrikam.com",
                                              "megan@contoso.com", "nobody@else.example"]})
    assert response.status == 200, response.body
    results = response.json()["results"]
    assert [r["address"] for r in results] == ["Ana@Fabrikam.com", "info@fabrikam.com",
                                               "megan@contoso.com", "nobody@else.example"]
    assert results[0]["record"] == {"table": "contact", "id": ANA, "name": "Ana Lopez"}
    assert results[1]["record"] == {"table": "account", "id": FABRIKAM, "name": "Fabrikam"}
    assert results[2]["record"]["table"] == "systemuser"
    assert results[3]["record"] is None and results[3]["matches"] == []
    for result in results:
        for record in [result["record"], *result["matches"]]:
            if record is not None:
                assert set(record) <= {"table", "id", "name"}
    text = response.body.decode()
    assert "555" not in text and "emailaddress" not in text and "owner" not in text


async def test_lookup_respects_the_callers_crm_security(app_host: FunctionHost) -> None:
    response = await call(app_host, "addin_lookup", "POST", "lookup", upn=MEGAN,
                          body={"addresses": ["ana@fabrikam.com", "bob@northwind.example",
                                              "carla@fabrikam.com"]})
    results = response.json()["results"]
    assert results[0]["record"] is None                   # alex's contact: not visible
    assert results[1]["record"]["id"] == BOB             # her own
    assert results[2]["record"]["name"] == "Carla Diaz"  # shared with her


@pytest.mark.parametrize("body,field", [
    ({"addresses": []}, "addresses"),
    ({"addresses": ["x"]}, "addresses"),
    ({"addresses": ["a@b.com"] * 101}, "addresses"),
    ({"addresses": ["a@b.com"], "fields": ["telephone1"]}, "fields"),
])
async def test_lookup_refusals(app_host: FunctionHost, body: dict[str, object], field: str
                               ) -> None:
    response = await call(app_host, "addin_lookup", "POST", "lookup", body=body)
    assert response.status == 400 and response.json()["field"] == field
