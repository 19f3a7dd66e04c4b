"""Helpers shared by the add-in end-to-end tests (no tests here)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.fixtures.app import FunctionHost, Response

ALEX = "alex@contoso.com"
MEGAN = "megan@contoso.com"
ALEX_OID = "a1a1a1a1-0000-4000-8000-000000000001"
MEGAN_OID = "a1a1a1a1-0000-4000-8000-000000000002"
ALEX_SYSTEMUSER = "51a1a1a1-0000-4000-8000-000000000001"
MEGAN_SYSTEMUSER = "51a1a1a1-0000-4000-8000-000000000002"
ANA = "c0000000-0000-4000-8000-000000000001"      # contact owned by alex (megan cannot read)
BOB = "c0000000-0000-4000-8000-000000000002"      # contact owned by megan
CARLA = "c0000000-0000-4000-8000-000000000003"    # nestor's, shared with megan
FABRIKAM = "ac000000-0000-4000-8000-000000000001"  # account owned by alex
CATEGORY = "Tracked to Dynamics 365"


def token(host: FunctionHost, upn: str = ALEX, **options: Any) -> str:
    options.setdefault("scopes", ["access_as_user"])
    return host.sandbox.user_token(upn, **options)


def deliver(host: FunctionHost, to: list[str] | str, *, sender: str = "ana@fabrikam.com",
            subject: str | None = None, cc: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """A new message from outside into the seeded users' Inboxes: {upn: ids}."""
    body: dict[str, Any] = {"to": to, "from": sender,
                            "subject": subject or f"Quote {uuid.uuid4().hex[:8]}",
                            "body": "<p>Secret body text</p>",
                            # one message, many copies: the same id in every mailbox
                            "internetMessageId": f"<{uuid.uuid4().hex}@fabrikam.example>"}
    if cc:
        body["cc"] = cc
    response = host.sandbox.control.post("/_sandbox/graph/deliver", json=body)
    response.raise_for_status()
    return {entry["upn"]: entry for entry in response.json()["value"]}


def item_id(entry: dict[str, Any]) -> str:
    return str(entry["immutableId"])


def mailbox_messages(host: FunctionHost, upn: str) -> list[dict[str, Any]]:
    response = host.sandbox.control.get(f"/_sandbox/graph/mailboxes/{upn}/messages")
    response.raise_for_status()
    return list(response.json()["value"])


def message_by_imid(host: FunctionHost, upn: str, imid: str) -> dict[str, Any]:
    return next(m for m in mailbox_messages(host, upn) if m["internetMessageId"] == imid)


def crm_rows(host: FunctionHost, entity_set: str) -> list[dict[str, Any]]:
    response = host.sandbox.control.get(f"/_sandbox/crm/{entity_set}")
    response.raise_for_status()
    return list(response.json()["value"])


def emails_with(host: FunctionHost, imid: str) -> list[dict[str, Any]]:
    return [row for row in crm_rows(host, "emails") if row.get("messageid") == imid]


async def call(host: FunctionHost, name: str, method: str, path: str, *, upn: str = ALEX,
               body: Any = None, headers: dict[str, str] | None = None,
               params: dict[str, str] | None = None, route: dict[str, str] | None = None,
               bearer: str | None = None, raw: bytes | None = None) -> Response:
    return await host.http(name, method, path, body=body, raw=raw,
                           token=bearer if bearer is not None else token(host, upn),
                           headers=headers, params=params, route=route)


async def track(host: FunctionHost, item: str, *, upn: str = ALEX,
                regarding: dict[str, str] | None = None, item_type: str = "message",
                headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"item_id": item, "item_type": item_type}
    if regarding is not None:
        body["regarding"] = regarding
    return await call(host, "addin_track", "POST", "track", upn=upn, body=body,
                      headers=headers)


async def status(host: FunctionHost, imid: str, *, upn: str = ALEX) -> Response:
    return await call(host, "addin_status", "GET", "status", upn=upn,
                      params={"internet_message_id": imid})


async def table_rows(host: FunctionHost, name: str) -> list[dict[str, Any]]:
    """Every row of one of the app's tables (intents, tracked, ...), read straight from storage."""
    from shared.runtime import get_runtime

    runtime = await get_runtime()
    table = await runtime.store.clients.table(name)
    return [dict(entity) async for entity in table.list_entities()]
