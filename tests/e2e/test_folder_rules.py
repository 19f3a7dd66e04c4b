"""Folder rules end to end: one validation for the admin and the add-in writes; rows stored
before it (written into Azurite as an old version did) are shown flagged, never a 500, and the
sync cycle skips them without putting their folder ids into a Graph URL."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.e2e.sync_support import (
    ALEX,
    ALEX_UPN,
    FABRIKAM,
    context,
    cycle_at,
    enable,
    mailbox_status,
)
from tests.e2e.test_addin_support import call
from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e

GOOD = {"folder_id": "AAMkGood1=", "folder_name": "Deals"}
ODATA = "inbox/messages?$filter=isRead eq false"
LONG = "A" * 60_000
# (admin-shaped rule, field the admin API names, field the add-in names)
BAD_RULES: list[tuple[dict[str, Any], str, str]] = [
    ({"folder_id": "AAMk=", "colour": "red"}, "folder_rules.0.colour", "folder_rules.0.colour"),
    ({"folder_id": ODATA}, "folder_rules.0.folder_id", "folder_rules.0.folder_id"),
    ({"folder_id": "AAMk')/messages"}, "folder_rules.0.folder_id", "folder_rules.0.folder_id"),
    ({"folder_id": LONG}, "folder_rules.0.folder_id", "folder_rules.0.folder_id"),
    ({"folder_id": "AAMk=", "folder_name": "x" * 256}, "folder_rules.0.folder_name",
     "folder_rules.0.folder_name"),
    ({"folder_id": "AAMk=", "regarding_table": "systemuser",
      "regarding_id": "51a1a1a1-0000-4000-8000-000000000001"},
     "folder_rules.0.regarding_table", "folder_rules.0.regarding.table"),
    ({"folder_id": "AAMk=", "regarding_table": "account", "regarding_id": "not-a-guid"},
     "folder_rules.0.regarding_id", "folder_rules.0.regarding.id"),
    ({"folder_id": "AAMk=", "regarding_table": "account"}, "folder_rules.0.regarding_id",
     "folder_rules.0.regarding.id"),
]


def _addin_shape(rule: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in rule.items() if not k.startswith("regarding_")}
    if "regarding_table" in rule or "regarding_id" in rule:
        out["regarding"] = {k: rule[f"regarding_{k}"] for k in ("table", "id")
                            if f"regarding_{k}" in rule}
    return out


async def _register(host: FunctionHost, oid: str = ALEX) -> None:
    response = await host.http("admin_register_mailbox", "POST", "admin/mailboxes",
                               body={"owner_object_id": oid}, token=host.admin_token())
    assert response.status == 201, response.body


async def _admin_patch(host: FunctionHost, body: dict[str, Any]) -> Any:
    return await host.http("admin_update_mailbox", "PATCH", f"admin/mailboxes/{ALEX}",
                           route={"mailbox_id": ALEX}, body=body, token=host.admin_token())


@pytest.mark.parametrize(("rule", "admin_field", "addin_field"), BAD_RULES)
async def test_both_apis_refuse_the_same_rules_and_keep_what_was_stored(
        app_host: FunctionHost, rule: dict[str, Any], admin_field: str,
        addin_field: str) -> None:
    await _register(app_host)
    assert (await _admin_patch(app_host, {"folder_rules": [GOOD]})).status == 200
    refused = await _admin_patch(app_host, {"folder_rules": [rule]})
    assert refused.status == 400, refused.body[:300]
    assert refused.content_type == "application/problem+json"
    assert refused.json()["field"] == admin_field
    mine = await call(app_host, "addin_update_options", "PATCH", "me/options",
                      body={"folder_rules": [_addin_shape(rule)]})
    assert mine.status == 400, mine.body[:300]
    assert mine.json()["field"] == addin_field
    stored = (await mailbox_status(app_host, ALEX))["folder_rules"]
    assert [{k: r[k] for k in GOOD} for r in stored] == [GOOD]


async def test_a_rule_for_an_allowed_record_is_stored_by_both(app_host: FunctionHost) -> None:
    await _register(app_host)
    rule = {"folder_id": "AAMkGood1=", "folder_name": "Deals", "regarding_table": "account",
            "regarding_id": "{" + FABRIKAM.upper() + "}"}
    response = await _admin_patch(app_host, {"folder_rules": [rule]})
    assert response.status == 200, response.body
    [stored] = response.json()["folder_rules"]
    assert stored == {**rule, "regarding_id": FABRIKAM}  # bare, lower case; not flagged
    mine = await call(app_host, "addin_update_options", "PATCH", "me/options",
                      body={"folder_rules": [_addin_shape({**rule, "regarding_id": FABRIKAM})]})
    assert mine.status == 200, mine.body
    assert "invalid" not in mine.json()["folder_rules"][0]


# --- rows stored before today's rules ----------------------------------------------------------

STORED_BAD = [
    {"folder_id": ODATA, "folder_name": "odata", "regarding_table": None,
     "regarding_id": None},
    {"folder_id": LONG, "folder_name": "long", "regarding_table": None, "regarding_id": None},
    # a real folder, but a regarding table outside REGARDING_TABLES
    {"folder_id": "deleteditems", "folder_name": "systemuser", "regarding_table": "systemuser",
     "regarding_id": "51a1a1a1-0000-4000-8000-000000000001"},
]


async def _store_old_rules(host: FunctionHost, rules: list[dict[str, Any]]) -> None:
    """Append rules to Alex's stored row the way an earlier version wrote it: straight into
    the mailbox row's JSON document in Azurite, without today's validation."""
    from azure.data.tables import UpdateMode

    from shared.runtime import get_runtime

    runtime = await get_runtime()
    table = await runtime.store.clients.table("mailboxes")
    entity = dict(await table.get_entity("mailbox", ALEX))
    chunks = sorted((k for k in entity if k == "doc" or (k.startswith("doc") and
                                                        k[3:].isdigit())),
                    key=lambda k: int(k[3:] or 0))
    doc = json.loads("".join(entity.pop(k) for k in chunks))
    doc["folder_rules"] = [*doc["folder_rules"], *rules]
    text = json.dumps(doc)
    for index in range(0, len(text), 30_000):
        entity["doc" if index == 0 else f"doc{index // 30_000}"] = text[index:index + 30_000]
    await table.upsert_entity(entity, mode=UpdateMode.REPLACE)


async def test_stored_rules_refused_today_are_shown_flagged_not_a_500(
        app_host: FunctionHost) -> None:
    await _register(app_host)
    assert (await _admin_patch(app_host, {"folder_rules": [GOOD]})).status == 200
    await _store_old_rules(app_host, STORED_BAD)

    admin = await mailbox_status(app_host, ALEX)
    listed = await app_host.http("admin_list_mailboxes", "GET", "admin/mailboxes",
                                 token=app_host.admin_token())
    mine = await call(app_host, "addin_get_options", "GET", "me/options")
    assert listed.status == 200 and mine.status == 200, (listed.body[:200], mine.body[:200])
    for rules in (admin["folder_rules"], listed.json()["items"][0]["folder_rules"],
                  mine.json()["folder_rules"]):
        assert [r["folder_name"] for r in rules] == ["Deals", "odata", "long", "systemuser"]
        assert "invalid" not in rules[0]
        assert rules[1]["invalid"].startswith("folder_id: ")
        assert rules[2]["invalid"].startswith("folder_id: ")
        assert rules[3]["invalid"].startswith("regarding_table: ")
    # the mailbox stays usable: other options change, the old rules stay flagged until replaced
    changed = await call(app_host, "addin_update_options", "PATCH", "me/options",
                         body={"tracking_option": "all"})
    assert changed.status == 200, changed.body[:300]
    assert len(changed.json()["folder_rules"]) == 4
    replaced = await _admin_patch(app_host, {"folder_rules": [GOOD]})
    assert replaced.status == 200 and len(replaced.json()["folder_rules"]) == 1


async def test_the_cycle_skips_refused_rules_and_keeps_syncing(app_host: FunctionHost) -> None:
    from shared.graph import GraphClient
    from shared.identity import AppTokenAuth
    from shared.runtime import get_runtime

    folders = app_host.sandbox.control.get(
        f"/_sandbox/graph/mailboxes/{ALEX_UPN}/folders").json()["value"]
    deals = next(f for f in folders if f["displayName"] == "Fabrikam deals")
    await enable(app_host, ALEX, tracking_option="none", folder_rules=[{
        "folder_id": deals["id"], "folder_name": "Fabrikam deals"}])
    await _store_old_rules(app_host, STORED_BAD)

    urls: list[str] = []

    async def record(request: httpx.Request) -> None:
        urls.append(str(request.url))

    runtime = await get_runtime()
    settings = runtime.settings
    ctx = await context()
    ctx.graph = GraphClient(settings.graph_base_url,
                            AppTokenAuth(runtime.credential, settings.graph_scope),
                            retry=runtime.retry, event_hooks={"request": [record]})
    try:
        await cycle_at(13, ctx)
    finally:
        await ctx.graph.aclose()
    deltas = [u for u in urls if "/messages/delta" in u]
    assert any(f"/mailFolders/{deals['id']}/messages/delta" in u for u in deltas), deltas
    assert any("/mailFolders/inbox/messages/delta" in u for u in deltas), deltas
    for url in urls:
        assert "deleteditems" not in url and LONG[:600] not in url
        assert "inbox%2Fmessages" not in url and "isRead" not in url
    status = await mailbox_status(app_host, ALEX)
    incoming = status["channels"]["incoming"]
    assert status["enabled"] and incoming["last_error"] is None, incoming
    assert incoming["consecutive_failures"] == 0
