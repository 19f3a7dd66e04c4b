"""Refusals: bad tokens (401), missing scope (403), items outside the caller's mailbox (404),
malformed (400) and oversized (413) bodies - and nothing written on any of them."""

from __future__ import annotations

import base64
import json

import pytest

from tests.e2e.test_addin_support import (
    ALEX,
    MEGAN,
    call,
    crm_rows,
    deliver,
    item_id,
    table_rows,
    token,
)
from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e

ENDPOINTS = [
    ("addin_track", "POST", "track"),
    ("addin_set_regarding", "POST", "regarding"),
    ("addin_untrack", "POST", "untrack"),
    ("addin_status", "GET", "status"),
    ("addin_should_track", "POST", "should-track"),
    ("addin_lookup", "POST", "lookup"),
    ("addin_get_options", "GET", "me/options"),
    ("addin_update_options", "PATCH", "me/options"),
]


def _alg_none(host: FunctionHost) -> str:
    _, payload, _ = token(host).split(".")
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return header.rstrip(b"=").decode() + "." + payload + "."


def _bad_token(host: FunctionHost, variant: str) -> str:
    return {
        "none": lambda: "",
        "garbage": lambda: "not-a-jwt",
        "alg_none": lambda: _alg_none(host),
        "rogue_key": lambda: token(host, rogue_key=True),
        "expired": lambda: token(host, expired=True),
        "wrong_audience": lambda: token(host, audience="api://someone-else"),
        "wrong_tenant": lambda: token(host, tenant="00000000-0000-0000-0000-00000000dead"),
    }[variant]()


async def _nothing_written(host: FunctionHost, emails_before: int) -> None:
    assert await table_rows(host, "intents") == []
    from shared.store import TrackedMessageRepository, UntrackedRepository

    assert await table_rows(host, TrackedMessageRepository.table_name) == []
    assert await table_rows(host, UntrackedRepository.table_name) == []
    assert len(crm_rows(host, "emails")) == emails_before


@pytest.mark.parametrize("variant", ["none", "garbage", "alg_none", "rogue_key", "expired",
                                     "wrong_audience", "wrong_tenant"])
async def test_bad_tokens_are_401_and_write_nothing(app_host: FunctionHost, variant: str) -> None:
    ids = deliver(app_host, [ALEX])
    before = len(crm_rows(app_host, "emails"))
    bearer = _bad_token(app_host, variant)
    for name, method, path in ENDPOINTS:
        body = {"item_id": item_id(ids[ALEX])} if method != "GET" else None
        response = await app_host.http(name, method, path, body=body, token=bearer or None,
                                       params={"internet_message_id": "<x@y>"})
        assert response.status == 401, (name, response.body)
        assert response.content_type == "application/problem+json"
        assert "www-authenticate" in response.headers
        if len(bearer) > 20:  # the token is never echoed back
            assert bearer[-20:] not in response.body.decode()
    await _nothing_written(app_host, before)


async def test_token_without_the_scope_is_403(app_host: FunctionHost) -> None:
    ids = deliver(app_host, [ALEX])
    before = len(crm_rows(app_host, "emails"))
    response = await call(app_host, "addin_track", "POST", "track",
                          bearer=token(app_host, scopes=["something.else"]),
                          body={"item_id": item_id(ids[ALEX])})
    assert response.status == 403
    await _nothing_written(app_host, before)


async def test_item_not_in_the_callers_mailbox_is_404(app_host: FunctionHost) -> None:
    ids = deliver(app_host, [MEGAN])
    before = len(crm_rows(app_host, "emails"))
    for name, path in (("addin_track", "track"), ("addin_untrack", "untrack")):
        # megan's item id, used by alex, and an id that exists nowhere
        for item in (item_id(ids[MEGAN]), "AAMkAGI2TG93AAA="):
            response = await call(app_host, name, "POST", path, body={"item_id": item})
            assert response.status == 404, response.body
            assert response.json()["field"] == "item_id"
    await _nothing_written(app_host, before)


@pytest.mark.parametrize("body,field", [
    ({}, "item_id"),
    ({"item_id": "has spaces"}, "item_id"),
    ({"item_id": "AAA=", "item_type": "task"}, "item_type"),
    ({"item_id": "AAA=", "extra": 1}, "extra"),
    ({"item_id": "AAA=", "regarding": {"table": "contact", "id": "not-a-guid"}}, "regarding.id"),
    ({"item_id": "AAA=", "regarding": {"table": "contact"}}, "regarding.id"),
    ([1, 2], "body"),
])
async def test_malformed_track_bodies_are_400_naming_the_field(
        app_host: FunctionHost, body: object, field: str) -> None:
    response = await call(app_host, "addin_track", "POST", "track", body=body)
    assert response.status == 400, response.body
    assert response.content_type == "application/problem+json"
    assert response.json()["field"] == field
    await _nothing_written(app_host, len(crm_rows(app_host, "emails")))


async def test_invalid_json_is_400(app_host: FunctionHost) -> None:
    response = await call(app_host, "addin_track", "POST", "track", raw=b"{nope")
    assert response.status == 400 and response.json()["field"] == "body"


async def test_oversized_body_is_413(app_host: FunctionHost) -> None:
    raw = json.dumps({"item_id": "A" * 70_000}).encode()
    response = await call(app_host, "addin_track", "POST", "track", raw=raw)
    assert response.status == 413
    assert await table_rows(app_host, "intents") == []


async def test_should_track_refuses_a_body_field(app_host: FunctionHost) -> None:
    response = await call(app_host, "addin_should_track", "POST", "should-track",
                          body={"sender": "ana@fabrikam.com", "to": [ALEX],
                                "subject": "Hi", "body": "secret"})
    assert response.status == 400
    assert response.json()["field"] == "body"
