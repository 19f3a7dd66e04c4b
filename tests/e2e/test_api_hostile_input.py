"""Hostile input against every HTTP function of function_app.py, with valid tokens: bodies the
JSON parser cannot take, wrong-typed values, forged request ids; and what a refusal carries
(the 500 of last resort, 403's WWW-Authenticate, 404's title). Nothing is written on any of
them."""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

import azure.functions as func
import pytest

from tests.e2e.test_addin_support import ALEX, ALEX_OID, ANA, MEGAN_OID, crm_rows, table_rows
from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Functions whose route takes no body (a body sent to them is not read).
BODILESS = {"admin_approve_mailbox", "admin_test_enable_mailbox"}
HOSTILE_BODIES = {
    "nested_arrays": b"[" * 20_000,
    "nested_objects": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "huge_integer": b"9" * 5_000,
    "huge_integer_field": b'{"item_id": ' + b"9" * 5_000 + b"}",
    "bad_utf8": b'{"item_id": "\xff\xfe"}',
}


def _both_token(host: FunctionHost) -> str:
    """A valid token with the admin role and the add-in scope: only the body is wrong."""
    return host.sandbox.user_token(ALEX, scopes=["access_as_user"], roles=["Sync.Admin"])


def _http_functions(host: FunctionHost) -> dict[str, tuple[str, list[str]]]:
    out = {}
    for name, function in host.functions.items():
        trigger = function.get_trigger()
        route = getattr(trigger, "route", None)
        if route is None:
            continue
        methods = [str(getattr(m, "value", m)).upper() for m in trigger.methods or []]
        out[name] = (route, methods)
    return out


def _body_functions(host: FunctionHost) -> list[tuple[str, str, str]]:
    """(function, method, route) of every function that reads a JSON body."""
    found = []
    for name, (route, methods) in sorted(_http_functions(host).items()):
        for method in methods:
            if method in ("POST", "PATCH", "PUT") and name not in BODILESS:
                found.append((name, method, route))
    return found


def _route_params(route: str) -> dict[str, str]:
    return {name: ALEX_OID for name in re.findall(r"{(\w+)}", route)}


async def _state(host: FunctionHost) -> dict[str, Any]:
    """Everything a request could have written: the app's tables and the CRM's emails."""
    from shared.store import TrackedMessageRepository, UntrackedRepository

    tables = {}
    for name in ("mailboxes", "intents", TrackedMessageRepository.table_name,
                 UntrackedRepository.table_name):
        tables[name] = sorted(json.dumps(row, sort_keys=True, default=str)
                               for row in await table_rows(host, name))
    tables["crm_emails"] = sorted(str(e.get("activityid")) for e in crm_rows(host, "emails"))
    return tables


async def _register(host: FunctionHost, oid: str = ALEX_OID) -> None:
    response = await host.http("admin_register_mailbox", "POST", "admin/mailboxes",
                               body={"owner_object_id": oid}, token=host.admin_token())
    assert response.status == 201, response.body


def test_the_body_functions_are_the_documented_ones() -> None:
    """No POST/PATCH function escapes the hostile-body test: the documented request bodies
    plus the two bodiless actions are every such route of function_app.py."""
    from shared.api.openapi import OPERATIONS

    documented = {op.function for op in OPERATIONS if op.body is not None}
    posts = {op.function for op in OPERATIONS if op.method in ("POST", "PATCH")}
    assert posts - documented == BODILESS


@pytest.mark.parametrize("variant", sorted(HOSTILE_BODIES))
async def test_unparseable_bodies_are_400_everywhere_and_write_nothing(
        app_host: FunctionHost, variant: str) -> None:
    await _register(app_host)
    functions = _body_functions(app_host)
    assert len(functions) >= 10, functions
    before = await _state(app_host)
    token = _both_token(app_host)
    for name, method, route in functions:
        params = _route_params(route)
        path = route.format(**params)
        response = await app_host.http(name, method, path, raw=HOSTILE_BODIES[variant],
                                       token=token, route=params)
        assert response.status == 400, (name, response.status, response.body[:300])
        assert response.content_type == "application/problem+json", name
        assert response.json()["field"] == "body", (name, response.json())
    assert await _state(app_host) == before


WRONG_TYPES: list[tuple[str, dict[str, Any], str]] = [
    ("admin_import_mailboxes", {"all_active_users": "yes"}, "all_active_users"),
    ("admin_import_mailboxes", {"all_active_users": 1}, "all_active_users"),
    ("admin_import_mailboxes", {"all_active_users": "true"}, "all_active_users"),
    ("admin_import_mailboxes", {"all_active_users": []}, "all_active_users"),
    ("admin_import_mailboxes", {"business_unit_id": 12}, "business_unit_id"),
    ("admin_register_mailbox", {"owner_object_id": 42}, "owner_object_id"),
    ("admin_register_mailbox", {"email": ["megan@contoso.com"]}, "email"),
    ("admin_register_mailbox", {"owner_object_id": MEGAN_OID, "kind": 0}, "kind"),
    ("admin_register_mailbox", {"owner_object_id": MEGAN_OID, "channels": []}, "channels"),
    ("admin_register_mailbox", {"owner_object_id": MEGAN_OID, "channels": {"act": 1}},
     "channels.act"),
    ("admin_update_mailbox", {"process_email_from": 1767225600}, "process_email_from"),
    ("admin_update_mailbox", {"process_email_from": "1767225600"}, "process_email_from"),
    ("admin_update_mailbox", {"process_email_from": "2026-01-01"}, "process_email_from"),
    ("admin_update_mailbox", {"tracking_option": 1}, "tracking_option"),
    ("admin_update_mailbox", {"auto_create_records": False}, "auto_create_records"),
    ("admin_update_mailbox", {"folder_rules": {"folder_id": "AAMk="}}, "folder_rules"),
    ("admin_update_mailbox", {"folder_rules": [{"folder_id": 5}]}, "folder_rules.0.folder_id"),
    ("admin_update_mailbox", {"folder_rules": [{"folder_id": "AAMk=", "folder_name": 7}]},
     "folder_rules.0.folder_name"),
    ("admin_disable_mailbox", {"reason": 5}, "reason"),
    ("admin_disable_mailbox", {"reason": True}, "reason"),
    ("addin_track", {"item_id": 123}, "item_id"),
    ("addin_track", {"item_id": "AAMk=", "item_type": ["message"]}, "item_type"),
    ("addin_track", {"item_id": "AAMk=", "regarding": "contact"}, "regarding"),
    ("addin_track", {"item_id": "AAMk=", "regarding": {"table": "contact", "id": 5}},
     "regarding.id"),
    ("addin_set_regarding", {"item_id": "AAMk=", "regarding": ["contact", ANA]}, "regarding"),
    ("addin_untrack", {"item_id": True}, "item_id"),
    ("addin_should_track", {"sender": "ana@fabrikam.com", "to": "alex@contoso.com"}, "to"),
    ("addin_should_track", {"sender": "ana@fabrikam.com", "subject": 5}, "subject"),
    ("addin_lookup", {"addresses": "ana@fabrikam.com"}, "addresses"),
    ("addin_lookup", {"addresses": [1]}, "addresses.0"),
    ("addin_update_options", {"tracking_option": 0}, "tracking_option"),
    ("addin_update_options", {"auto_create_records": 1}, "auto_create_records"),
    ("addin_update_options", {"folder_rules": [{"folder_id": "AAMk=",
                                                "regarding": {"table": "account", "id": 1}}]},
     "folder_rules.0.regarding.id"),
]


async def test_nothing_is_coerced_anywhere(app_host: FunctionHost) -> None:
    await _register(app_host)
    routes = _http_functions(app_host)
    before = await _state(app_host)
    token = _both_token(app_host)
    for name, body, field in WRONG_TYPES:
        route, methods = routes[name]
        params = _route_params(route)
        response = await app_host.http(name, methods[0], route.format(**params), body=body,
                                       token=token, route=params)
        assert response.status == 400, (name, body, response.status, response.body[:300])
        assert response.content_type == "application/problem+json"
        assert response.json()["field"] == field, (name, body, response.json())
    assert await _state(app_host) == before


async def test_import_with_a_string_for_the_boolean_imports_nobody(
        app_host: FunctionHost) -> None:
    response = await app_host.http("admin_import_mailboxes", "POST", "admin/mailboxes/import",
                                   body={"all_active_users": "yes"},
                                   token=app_host.admin_token())
    assert response.status == 400, response.body
    assert response.json()["field"] == "all_active_users"
    listed = await app_host.http("admin_list_mailboxes", "GET", "admin/mailboxes",
                                 token=app_host.admin_token())
    assert listed.json()["items"] == []


@pytest.mark.parametrize("value", ["1e2", " 50", "50 ", "+5", "50.0", "0x10", "1_0", "",
                                   "\u0665", "9" * 5000])
async def test_query_numbers_must_be_plain_digits(app_host: FunctionHost, value: str) -> None:
    response = await app_host.http("admin_list_mailboxes", "GET", "admin/mailboxes",
                                   params={"page_size": value}, token=app_host.admin_token())
    assert response.status == 400, response.body
    assert response.json()["field"] == "query.page_size"
    ok = await app_host.http("admin_list_mailboxes", "GET", "admin/mailboxes",
                             params={"page_size": "50"}, token=app_host.admin_token())
    assert ok.status == 200, ok.body


@pytest.mark.parametrize("token", [
    "W1tbW1tbW1tb" * 150,                      # base64 of deeply nested JSON
    "bm90IGpzb24",                              # base64 of "not json"
    "WzEsMiwzXQ==",                             # base64 of a list
    "eyJQYXJ0aXRpb25LZXkiOiB7fX0=",             # {"PartitionKey": {}}
    "%%%",
])
async def test_a_forged_continuation_token_is_400(app_host: FunctionHost, token: str) -> None:
    response = await app_host.http("admin_list_mailboxes", "GET", "admin/mailboxes",
                                   params={"continuation": token}, token=app_host.admin_token())
    assert response.status == 400, response.body
    assert response.json()["field"] == "query.continuation"


# --- the 500 of last resort ------------------------------------------------------------------


async def test_an_unexpected_exception_is_a_problem_500_with_a_correlation_id(
        caplog: pytest.LogCaptureFixture) -> None:
    from shared.api.http import ApiRequest, ApiResponse, respond

    secret = "ana@fabrikam.com wrote: confidential body 4411"

    async def broken(request: ApiRequest) -> ApiResponse:
        raise RuntimeError(secret)

    caplog.set_level(logging.DEBUG)
    for given in (None, "probe-42"):
        headers = {"x-request-id": given} if given else {}
        request = func.HttpRequest("POST", "http://localhost:7071/api/track", headers=headers,
                                   params={}, route_params={}, body=b'{"item_id": "AAMk="}')
        response = await respond(request, broken)
        assert response.status_code == 500
        assert response.mimetype == "application/problem+json"
        problem = json.loads(response.get_body())
        request_id = response.headers["x-request-id"]
        assert problem["status"] == 500 and problem["correlation_id"] == request_id
        assert request_id == given if given else UUID_RE.match(request_id)
        assert secret not in response.get_body().decode()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "RuntimeError" in text and "probe-42" in text
    assert secret not in text and "ana@fabrikam.com" not in text


# --- x-request-id ----------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", ["A" * 4096, "has spaces", "ok status=200", "id\r\nx: y",
                                     "caf\u00e9", "a" * 65, "<script>", "x;y"])
async def test_a_forged_request_id_is_replaced_never_echoed_or_logged(
        app_host: FunctionHost, caplog: pytest.LogCaptureFixture, hostile: str) -> None:
    caplog.set_level(logging.DEBUG)
    for token in (None, app_host.admin_token()):  # unauthenticated, then authenticated
        response = await app_host.http("admin_list_mailboxes", "GET", "admin/mailboxes",
                                       token=token, headers={"x-request-id": hostile})
        echoed = response.headers["x-request-id"]
        assert echoed != hostile and UUID_RE.match(echoed)
    assert all(hostile not in r.getMessage() for r in caplog.records)


async def test_a_plain_request_id_is_kept(app_host: FunctionHost) -> None:
    given = "req-2026.03:01_Z" + uuid.uuid4().hex[:8]
    response = await app_host.http("admin_list_mailboxes", "GET", "admin/mailboxes",
                                   headers={"x-request-id": given})
    assert response.status == 401
    assert response.headers["x-request-id"] == given


# --- 403 and 404 -----------------------------------------------------------------------------


async def test_missing_scope_or_role_is_403_insufficient_scope(app_host: FunctionHost) -> None:
    no_role = app_host.sandbox.user_token(ALEX, scopes=["access_as_user"])
    no_scope = app_host.sandbox.user_token(ALEX, scopes=["something.else"])
    for name, method, path, token in (
            ("admin_list_mailboxes", "GET", "admin/mailboxes", no_role),
            ("admin_register_mailbox", "POST", "admin/mailboxes", no_role),
            ("addin_get_options", "GET", "me/options", no_scope),
            ("addin_track", "POST", "track", no_scope)):
        response = await app_host.http(name, method, path, token=token,
                                       body={"owner_object_id": MEGAN_OID}
                                       if method == "POST" else None)
        assert response.status == 403, (name, response.body)
        assert response.content_type == "application/problem+json"
        assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'


async def test_a_crm_refusal_is_403_without_a_token_challenge(app_host: FunctionHost) -> None:
    """Megan's token is fine; her CRM security hides Ana: no insufficient_scope then."""
    from tests.e2e.test_addin_support import MEGAN, call, deliver, item_id

    ids = deliver(app_host, [MEGAN])
    response = await call(app_host, "addin_track", "POST", "track", upn=MEGAN,
                          body={"item_id": item_id(ids[MEGAN]),
                                "regarding": {"table": "contact", "id": ANA}})
    assert response.status == 403, response.body
    assert "www-authenticate" not in response.headers


async def test_every_404_is_titled_not_found(app_host: FunctionHost) -> None:
    unknown = "a1a1a1a1-0000-4000-8000-0000000000ff"
    route = {"mailbox_id": unknown}
    admin = app_host.admin_token()
    user = app_host.sandbox.user_token(ALEX, scopes=["access_as_user"])
    calls = [
        ("admin_get_mailbox", "GET", f"admin/mailboxes/{unknown}", admin, None, route, None),
        ("admin_update_mailbox", "PATCH", f"admin/mailboxes/{unknown}", admin,
         {"tracking_option": "all"}, route, None),
        ("admin_approve_mailbox", "POST", f"admin/mailboxes/{unknown}/approve", admin, None,
         route, None),
        ("admin_test_enable_mailbox", "POST", f"admin/mailboxes/{unknown}/test-enable", admin,
         None, route, None),
        ("admin_disable_mailbox", "POST", f"admin/mailboxes/{unknown}/disable", admin, None,
         route, None),
        ("addin_get_options", "GET", "me/options", user, None, None, None),
        ("addin_update_options", "PATCH", "me/options", user, {"tracking_option": "all"}, None,
         None),
        ("addin_get_intent", "GET", f"intents/{'0' * 40}", user, None, {"intent_id": "0" * 40},
         None),
        ("addin_status", "GET", "status", user, None, None,
         {"internet_message_id": "<nobody-has-it@example.com>"}),
    ]
    for name, method, path, token, body, params, query in calls:
        response = await app_host.http(name, method, path, token=token, body=body,
                                       route=params, params=query)
        assert response.status == 404, (name, response.body)
        assert response.json()["title"] == "Not found", (name, response.json())
