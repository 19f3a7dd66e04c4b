"""Admin API end to end: function_app.py's HTTP functions against Azurite and the sandbox."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from tests.fixtures.app import FunctionHost

ALEX_OID = "a1a1a1a1-0000-4000-8000-000000000001"
ALEX_SYSTEMUSER = "51a1a1a1-0000-4000-8000-000000000001"
MEGAN_OID = "a1a1a1a1-0000-4000-8000-000000000002"

pytestmark = pytest.mark.e2e


async def register(host: FunctionHost, oid: str = ALEX_OID) -> dict[str, Any]:
    response = await host.http("admin_register_mailbox", "POST", "admin/mailboxes",
                               body={"owner_object_id": oid}, token=host.admin_token())
    assert response.status == 201, response.body
    return response.json()


async def call(host: FunctionHost, name: str, mailbox_id: str, verb: str, body: Any = None
               ) -> Any:
    return await host.http(name, "POST", f"admin/mailboxes/{mailbox_id}/{verb}",
                           route={"mailbox_id": mailbox_id}, body=body,
                           token=host.admin_token())


async def get(host: FunctionHost, mailbox_id: str) -> dict[str, Any]:
    response = await host.http("admin_get_mailbox", "GET", f"admin/mailboxes/{mailbox_id}",
                               route={"mailbox_id": mailbox_id}, token=host.admin_token())
    assert response.status == 200, response.body
    return response.json()


async def test_register_approve_test_enable(app_host: FunctionHost) -> None:
    mailbox = await register(app_host)
    assert mailbox["systemuser_id"] == ALEX_SYSTEMUSER
    assert mailbox["approved"] is False and mailbox["enabled"] is False
    assert {c["test_result"] for c in mailbox["channels"].values()} == {"not_run"}

    approved = await call(app_host, "admin_approve_mailbox", ALEX_OID, "approve")
    assert approved.status == 200 and approved.json()["approved"] is True

    enabled = await call(app_host, "admin_test_enable_mailbox", ALEX_OID, "test-enable")
    assert enabled.status == 200, enabled.body
    body = enabled.json()
    assert body["enabled"] is True
    assert {k: v["test_result"] for k, v in body["channels"].items()} == {
        "incoming": "success", "outgoing": "success", "act": "success"}
    assert body["next_due_at"] is not None
    # the outgoing check really sent a message to the mailbox itself
    inbox = app_host.sandbox.control.get(
        "/_sandbox/graph/mailboxes/alex@contoso.com/messages", params={"folder": "inbox"}).json()
    items = inbox.get("value", inbox) if isinstance(inbox, dict) else inbox
    assert any("outgoing email test" in m.get("subject", "") for m in items)

    listed = await app_host.http("admin_list_mailboxes", "GET", "admin/mailboxes",
                                 token=app_host.admin_token())
    assert [m["mailbox_id"] for m in listed.json()["items"]] == [ALEX_OID]


async def test_test_enable_refuses_unapproved_mailbox(app_host: FunctionHost) -> None:
    await register(app_host)
    response = await call(app_host, "admin_test_enable_mailbox", ALEX_OID, "test-enable")
    assert response.status == 409
    assert response.content_type == "application/problem+json"
    assert response.json()["field"] == "approved"
    mailbox = await get(app_host, ALEX_OID)
    assert mailbox["enabled"] is False
    assert {c["test_result"] for c in mailbox["channels"].values()} == {"not_run"}


def _demo_seed(host: FunctionHost) -> dict[str, Any]:
    from sandbox.world import read_seed

    return read_seed(None)


async def test_test_enable_records_missing_graph_role(app_host: FunctionHost) -> None:
    seed = copy.deepcopy(_demo_seed(app_host))
    seed["apps"][0]["graph_roles"] = ["Mail.ReadWrite", "Calendars.ReadWrite",
                                      "Contacts.ReadWrite", "Tasks.ReadWrite.All"]  # no Mail.Send
    app_host.sandbox.seed(seed)
    try:
        await register(app_host)
        await call(app_host, "admin_approve_mailbox", ALEX_OID, "approve")
        response = await call(app_host, "admin_test_enable_mailbox", ALEX_OID, "test-enable")
        assert response.status == 200
        body = response.json()
        assert body["enabled"] is False
        assert body["channels"]["outgoing"]["test_result"] == "failure"
        assert "forbidden" in body["channels"]["outgoing"]["test_error"]
        assert body["channels"]["incoming"]["test_result"] == "success"
        assert body["channels"]["act"]["test_result"] == "success"
        assert "outgoing" in body["disabled_reason"]
    finally:
        app_host.sandbox.seed(_demo_seed(app_host))


async def test_test_enable_records_refused_impersonation(app_host: FunctionHost) -> None:
    seed = copy.deepcopy(_demo_seed(app_host))
    await register(app_host)
    await call(app_host, "admin_approve_mailbox", ALEX_OID, "approve")
    seed["apps"][0]["dataverse_application_user"] = False
    app_host.sandbox.seed(seed)
    try:
        response = await call(app_host, "admin_test_enable_mailbox", ALEX_OID, "test-enable")
        body = response.json()
        assert body["enabled"] is False
        assert {c["test_result"] for c in body["channels"].values()} == {"failure"}
        assert all(c["test_error"] for c in body["channels"].values())
    finally:
        app_host.sandbox.seed(_demo_seed(app_host))


async def test_test_enable_recovers_from_throttling(app_host: FunctionHost) -> None:
    await register(app_host)
    await call(app_host, "admin_approve_mailbox", ALEX_OID, "approve")
    app_host.sandbox.faults({"service": "graph", "kind": "status", "status": 429,
                             "retry_after": 0, "count": 2, "user": ALEX_OID})
    response = await call(app_host, "admin_test_enable_mailbox", ALEX_OID, "test-enable")
    assert response.json()["enabled"] is True
    rules = app_host.sandbox.control.get("/_sandbox/faults").json()["rules"]
    assert rules[0]["fired"] == 2  # the throttling really happened and was ridden out


def _alg_none_token(host: FunctionHost) -> str:
    good = host.admin_token()
    _, payload, _ = good.split(".")
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return header.rstrip(b"=").decode() + "." + payload + "."


@pytest.mark.parametrize("variant", ["none", "garbage", "rogue_key", "wrong_audience",
                                     "wrong_tenant", "expired", "alg_none"])
async def test_admin_rejects_bad_tokens_with_401(app_host: FunctionHost, variant: str) -> None:
    tokens = {
        "none": None,
        "garbage": "not-a-jwt",
        "rogue_key": lambda: app_host.admin_token(rogue_key=True),
        "wrong_audience": lambda: app_host.admin_token(audience="api://someone-else"),
        "wrong_tenant": lambda: app_host.admin_token(tenant="00000000-0000-0000-0000-00000000dead"),
        "expired": lambda: app_host.admin_token(expired=True),
        "alg_none": lambda: _alg_none_token(app_host),
    }
    token = tokens[variant]
    token = token() if callable(token) else token
    response = await app_host.http("admin_register_mailbox", "POST", "admin/mailboxes",
                                   body={"owner_object_id": ALEX_OID}, token=token)
    assert response.status == 401
    assert response.content_type == "application/problem+json"
    assert response.json()["status"] == 401
    listed = await app_host.http("admin_list_mailboxes", "GET", "admin/mailboxes",
                                 token=app_host.admin_token())
    assert listed.json()["items"] == []


async def test_admin_requires_admin_role(app_host: FunctionHost) -> None:
    token = app_host.sandbox.user_token("megan@contoso.com")
    response = await app_host.http("admin_register_mailbox", "POST", "admin/mailboxes",
                                   body={"owner_object_id": MEGAN_OID}, token=token)
    assert response.status == 403
    assert response.content_type == "application/problem+json"
    listed = await app_host.http("admin_list_mailboxes", "GET", "admin/mailboxes",
                                 token=app_host.admin_token())
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{not json", "body"),
        (json.dumps({"owner_object_id": "not-a-guid"}).encode(), "owner_object_id"),
        (json.dumps({"email": "nobody"}).encode(), "email"),
        (json.dumps({}).encode(), "body"),
        (json.dumps({"owner_object_id": ALEX_OID, "colour": "red"}).encode(), "colour"),
        (json.dumps({"owner_object_id": ALEX_OID, "channels": {"act": "sometimes"}}).encode(),
         "channels.act"),
        (json.dumps({"owner_object_id": ALEX_OID, "tracking_option": "most"}).encode(),
         "tracking_option"),
    ],
)
async def test_malformed_register_is_refused_and_writes_nothing(
    app_host: FunctionHost, raw: bytes, field: str
) -> None:
    response = await app_host.http("admin_register_mailbox", "POST", "admin/mailboxes", raw=raw,
                                   token=app_host.admin_token())
    assert response.status == 400
    assert response.content_type == "application/problem+json"
    problem = response.json()
    assert problem["field"] == field
    assert field in problem["detail"]
    listed = await app_host.http("admin_list_mailboxes", "GET", "admin/mailboxes",
                                 token=app_host.admin_token())
    assert listed.json()["items"] == []


async def test_update_rejects_too_many_folder_rules_and_keeps_state(
    app_host: FunctionHost
) -> None:
    await register(app_host)
    rules = [{"folder_id": f"f{i}"} for i in range(26)]
    response = await app_host.http("admin_update_mailbox", "PATCH", f"admin/mailboxes/{ALEX_OID}",
                                   route={"mailbox_id": ALEX_OID}, body={"folder_rules": rules},
                                   token=app_host.admin_token())
    assert response.status == 400
    assert response.json()["field"] == "folder_rules"
    assert (await get(app_host, ALEX_OID))["folder_rules"] == []


async def test_update_changes_tracking_option_and_channel(app_host: FunctionHost) -> None:
    await register(app_host)
    response = await app_host.http(
        "admin_update_mailbox", "PATCH", f"admin/mailboxes/{ALEX_OID}",
        route={"mailbox_id": ALEX_OID},
        body={"tracking_option": "all", "channels": {"act": "none"}},
        token=app_host.admin_token())
    assert response.status == 200, response.body
    body = response.json()
    assert body["tracking_option"] == "all"
    assert body["channels"]["act"]["delivery_method"] == "none"


async def test_oversized_body_is_413(app_host: FunctionHost) -> None:
    raw = json.dumps({"owner_object_id": ALEX_OID, "pad": "x" * 70000}).encode()
    response = await app_host.http("admin_register_mailbox", "POST", "admin/mailboxes", raw=raw,
                                   token=app_host.admin_token())
    assert response.status == 413
    assert response.content_type == "application/problem+json"


async def test_import_from_crm_registers_active_users(app_host: FunctionHost) -> None:
    response = await app_host.http("admin_import_mailboxes", "POST", "admin/mailboxes/import",
                                   body={"all_active_users": True}, token=app_host.admin_token())
    assert response.status == 200, response.body
    created = set(response.json()["created"])
    assert ALEX_OID in created and MEGAN_OID in created
    again = await app_host.http("admin_import_mailboxes", "POST", "admin/mailboxes/import",
                                body={"all_active_users": True}, token=app_host.admin_token())
    assert set(again.json()["existing"]) == created and again.json()["created"] == []


async def test_import_by_business_unit(app_host: FunctionHost) -> None:
    response = await app_host.http(
        "admin_import_mailboxes", "POST", "admin/mailboxes/import",
        body={"business_unit_id": "b0000000-0000-4000-8000-000000000002"},
        token=app_host.admin_token())
    assert response.status == 200, response.body
    assert response.json()["created"] == ["a1a1a1a1-0000-4000-8000-000000000003"]
