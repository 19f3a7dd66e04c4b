"""The Graph emulator over real HTTPS: every response checked against the OpenAPI subset."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.sandbox.graph_conformance import conformance_hook

ALEX, MEGAN, NESTOR = "alex@contoso.com", "megan@contoso.com", "nestor@contoso.com"
UNPRIVILEGED = ("3b7d9c1e-0000-4000-8000-00000000c002", "sandbox-only-secret-2")
GRAPH = "https://graph.microsoft.com"


class Graph:
    """A conformance-checked client with an app-only token."""

    def __init__(self, sandbox: Any, token: str) -> None:
        self.sandbox = sandbox
        self.http = sandbox.client(headers={"Authorization": f"Bearer {token}"},
                                   event_hooks={"response": [conformance_hook]})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)


@pytest.fixture
def sb(fresh_sandbox: Any) -> Any:
    return fresh_sandbox


@pytest.fixture
def graph(sb: Any) -> Graph:
    return Graph(sb, sb.app_token(f"{GRAPH}/.default"))


def user_graph(sb: Any, upn: str, scopes: list[str]) -> Graph:
    token = sb.user_token(upn, audience=GRAPH, scopes=scopes)
    return Graph(sb, token)


def deliver(sb: Any, **body: Any) -> list[dict[str, Any]]:
    r = sb.control.post("/_sandbox/graph/deliver", json=body)
    assert r.status_code == 201, r.text
    return r.json()["value"]


def inbox_ids(graph: Graph, upn: str) -> list[str]:
    r = graph.get(f"/v1.0/users/{upn}/mailFolders/inbox/messages", params={"$top": "100"})
    assert r.status_code == 200
    return [m["id"] for m in r.json()["value"]]


# ---- messages ----------------------------------------------------------------------------

def test_list_get_patch_delete_message(sb: Any, graph: Graph) -> None:
    [got] = deliver(sb, to=ALEX, **{"from": "ana@fabrikam.com"}, subject="Quote",
                    body="<p>Hi <b>Alex</b></p>", categories=["Blue"])
    r = graph.get(f"/v1.0/users/{ALEX}/messages/{got['id']}")
    msg = r.json()
    assert msg["subject"] == "Quote" and msg["bodyPreview"] == "Hi Alex"
    assert msg["@odata.etag"] == f'W/"{msg["changeKey"]}"'
    assert "internetMessageHeaders" not in msg
    r = graph.get(f"/v1.0/users/{ALEX.upper()}/messages/{got['id']}",
                  params={"$select": "subject,internetMessageHeaders,internetMessageId"})
    sel = r.json()
    assert set(sel) == {"@odata.etag", "id", "subject", "internetMessageHeaders",
                        "internetMessageId"}
    assert any(h["name"] == "Message-ID" for h in sel["internetMessageHeaders"])
    r = graph.patch(f"/v1.0/users/{ALEX}/messages/{got['id']}",
                    json={"categories": ["Tracked to Dynamics 365"], "isRead": True})
    assert r.status_code == 200 and r.json()["categories"] == ["Tracked to Dynamics 365"]
    assert r.json()["changeKey"] != msg["changeKey"]
    r = graph.patch(f"/v1.0/users/{ALEX}/messages/{got['id']}", json={"bogus": 1})
    assert r.status_code == 400 and r.json()["error"]["code"] == "RequestBodyRead"
    assert graph.delete(f"/v1.0/users/{ALEX}/messages/{got['id']}").status_code == 204
    r = graph.get(f"/v1.0/users/{ALEX}/messages/{got['id']}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "ErrorItemNotFound"
    assert "request-id" in r.json()["error"]["innerError"]


def test_unknown_user_and_paging(sb: Any, graph: Graph) -> None:
    r = graph.get("/v1.0/users/nobody@contoso.com/messages")
    assert r.status_code == 404 and r.json()["error"]["code"] == "ErrorInvalidUser"
    for n in range(5):
        deliver(sb, to=MEGAN, subject=f"m{n}", receivedDateTime=f"2026-11-2{n}T10:00:00Z")
    r = graph.get(f"/v1.0/users/{MEGAN}/mailFolders/inbox/messages",
                  params={"$top": "2", "$select": "subject,receivedDateTime"})
    page = r.json()
    assert len(page["value"]) == 2 and "@odata.nextLink" in page
    assert page["value"][0]["receivedDateTime"] >= page["value"][1]["receivedDateTime"]
    seen = [m["id"] for m in page["value"]]
    while "@odata.nextLink" in page:
        page = graph.get(page["@odata.nextLink"]).json()
        seen += [m["id"] for m in page["value"]]
    assert len(seen) == len(set(seen)) == len(inbox_ids(graph, MEGAN))


def test_filter_by_internet_message_id_and_extended_property(sb: Any, graph: Graph) -> None:
    [got] = deliver(sb, to=ALEX, subject="Find me", internetMessageId="<find-me@fabrikam.com>")
    r = graph.get(f"/v1.0/users/{ALEX}/messages",
                  params={"$filter": "internetMessageId eq '<find-me@fabrikam.com>'"})
    assert [m["id"] for m in r.json()["value"]] == [got["id"]]
    prop = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name SssMarker"
    r = graph.patch(f"/v1.0/users/{ALEX}/messages/{got['id']}",
                    json={"singleValueExtendedProperties": [{"id": prop, "value": "abc-1"}]})
    assert r.status_code == 200
    flt = f"singleValueExtendedProperties/Any(ep: ep/id eq '{prop}' and ep/value eq 'abc-1')"
    r = graph.get(f"/v1.0/users/{ALEX}/messages",
                  params={"$filter": flt, "$expand":
                          f"singleValueExtendedProperties($filter=id eq '{prop}')"})
    [found] = r.json()["value"]
    assert found["singleValueExtendedProperties"] == [{"id": prop, "value": "abc-1"}]
    r = graph.get(f"/v1.0/users/{ALEX}/messages", params={"$filter": "subject eq"})
    assert r.status_code == 400


def test_move_changes_regular_id_but_not_immutable(sb: Any, graph: Graph) -> None:
    [got] = deliver(sb, to=ALEX, subject="Move me")
    imm = {"Prefer": 'IdType="ImmutableId"'}
    r = graph.get(f"/v1.0/users/{ALEX}/messages/{got['id']}", headers=imm)
    immutable_id = r.json()["id"]
    assert immutable_id == got["immutableId"] != got["id"]
    r = graph.post(f"/v1.0/users/{ALEX}/messages/{got['id']}/move",
                   json={"destinationId": "archive"})
    assert r.status_code == 201
    moved = r.json()
    assert moved["id"] != got["id"]
    assert graph.get(f"/v1.0/users/{ALEX}/messages/{got['id']}").status_code == 404
    r = graph.post(f"/v1.0/users/{ALEX}/messages/{moved['id']}/move",
                   json={"destinationId": "inbox"}, headers=imm)
    assert r.json()["id"] == immutable_id
    assert graph.get(f"/v1.0/users/{ALEX}/messages/{immutable_id}").status_code == 200


def test_attachments(sb: Any, graph: Graph) -> None:
    [got] = deliver(sb, to=ALEX, subject="With file")
    base = f"/v1.0/users/{ALEX}/messages/{got['id']}/attachments"
    r = graph.post(base, json={"@odata.type": "#microsoft.graph.fileAttachment",
                               "name": "a.txt", "contentType": "text/plain",
                               "contentBytes": "aGVsbG8="})
    assert r.status_code == 201 and r.json()["size"] == 5
    aid = r.json()["id"]
    assert [a["id"] for a in graph.get(base).json()["value"]] == [aid]
    assert graph.get(f"{base}/{aid}").json()["contentBytes"] == "aGVsbG8="
    assert graph.delete(f"{base}/{aid}").status_code == 204


def test_folders_categories_settings(sb: Any, graph: Graph) -> None:
    r = graph.get(f"/v1.0/users/{ALEX}/mailFolders/inbox")
    inbox = r.json()
    assert inbox["displayName"] == "Inbox"
    r = graph.post(f"/v1.0/users/{ALEX}/mailFolders/inbox/childFolders",
                   json={"displayName": "Deals 2027"})
    assert r.status_code == 201 and r.json()["parentFolderId"] == inbox["id"]
    assert graph.post(f"/v1.0/users/{ALEX}/mailFolders/inbox/childFolders",
                      json={"displayName": "Deals 2027"}).status_code == 409
    names = [f["displayName"] for f in graph.get(
        f"/v1.0/users/{ALEX}/mailFolders/inbox/childFolders").json()["value"]]
    assert "Deals 2027" in names
    # an app without a MailboxSettings.* role is denied categories and settings
    weak = Graph(sb, sb.app_token(f"{GRAPH}/.default", client_id=UNPRIVILEGED[0],
                                  client_secret=UNPRIVILEGED[1]))
    r = weak.get(f"/v1.0/users/{ALEX}/outlook/masterCategories")
    assert r.status_code == 403 and r.json()["error"]["code"] == "ErrorAccessDenied"
    me = user_graph(sb, ALEX, ["MailboxSettings.ReadWrite"])
    r = me.post(f"/v1.0/users/{ALEX}/outlook/masterCategories",
                json={"displayName": "Tracked to Dynamics 365", "color": "preset9"})
    assert r.status_code == 201
    cid = r.json()["id"]
    assert me.get(f"/v1.0/users/{ALEX}/outlook/masterCategories").json()["value"][0][
        "displayName"] == "Tracked to Dynamics 365"
    assert me.delete(f"/v1.0/users/{ALEX}/outlook/masterCategories/{cid}").status_code == 204
    assert me.get(f"/v1.0/users/{ALEX}/mailboxSettings").json()["timeZone"] == "UTC"


# ---- authorization -----------------------------------------------------------------------

def test_authorization_rules(sb: Any, graph: Graph) -> None:
    bad = sb.client(headers={"Authorization": "Bearer not-a-token"},
                    event_hooks={"response": [conformance_hook]})
    r = bad.get(f"/v1.0/users/{ALEX}/messages")
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"
    weak = Graph(sb, sb.app_token(f"{GRAPH}/.default", client_id=UNPRIVILEGED[0],
                                  client_secret=UNPRIVILEGED[1]))
    for method, url in (("GET", f"/v1.0/users/{ALEX}/messages"),
                        ("GET", f"/v1.0/users/{ALEX}/events"),
                        ("GET", f"/v1.0/users/{ALEX}/contacts"),
                        ("GET", f"/v1.0/users/{ALEX}/todo/lists")):
        r = weak.request(method, url)
        assert r.status_code == 403 and r.json()["error"]["code"] == "ErrorAccessDenied"
    reader = user_graph(sb, ALEX, ["Mail.Read"])
    assert reader.get(f"/v1.0/users/{ALEX}/messages").status_code == 200
    assert reader.get(f"/v1.0/users/{MEGAN}/messages").status_code == 403
    r = reader.post(f"/v1.0/users/{ALEX}/sendMail", json={"message": {
        "subject": "x", "toRecipients": [{"emailAddress": {"address": MEGAN}}]}})
    assert r.status_code == 403
    [got] = deliver(sb, to=ALEX, subject="read only")
    assert reader.patch(f"/v1.0/users/{ALEX}/messages/{got['id']}",
                        json={"isRead": True}).status_code == 403
    wrong_audience = sb.client(headers={"Authorization": "Bearer " + sb.user_token(ALEX)})
    assert wrong_audience.get(f"/v1.0/users/{ALEX}/messages").status_code == 401


# ---- sending -----------------------------------------------------------------------------

def test_send_mail_delivers_internally_and_records_external(sb: Any, graph: Graph) -> None:
    [orig] = deliver(sb, to=ALEX, **{"from": "ana@fabrikam.com"}, subject="Question",
                     internetMessageId="<q1@fabrikam.com>")
    prop = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name SssMarker"
    r = graph.post(f"/v1.0/users/{ALEX}/sendMail", json={
        "message": {
            "subject": "RE: Question", "body": {"contentType": "html", "content": "<p>A</p>"},
            "toRecipients": [{"emailAddress": {"address": "ana@fabrikam.com"}}],
            "ccRecipients": [{"emailAddress": {"address": MEGAN}}],
            "internetMessageHeaders": [{"name": "x-sss-activity", "value": "act-1"}],
            "singleValueExtendedProperties": [
                {"id": prop, "value": "act-1"},
                {"id": "String 0x1042", "value": "<q1@fabrikam.com>"}],
        }, "saveToSentItems": True})
    assert r.status_code == 202, r.text
    flt = f"singleValueExtendedProperties/Any(ep: ep/id eq '{prop}' and ep/value eq 'act-1')"
    r = graph.get(f"/v1.0/users/{ALEX}/mailFolders/sentitems/messages",
                  params={"$filter": flt, "$select":
                          "internetMessageId,conversationId,internetMessageHeaders"})
    [sent] = r.json()["value"]
    original = graph.get(f"/v1.0/users/{ALEX}/messages/{orig['id']}").json()
    assert sent["conversationId"] == original["conversationId"]
    assert sent["internetMessageId"].endswith("@contoso.com>")
    headers = {h["name"]: h["value"] for h in sent["internetMessageHeaders"]}
    assert headers["x-sss-activity"] == "act-1" and headers["In-Reply-To"] == "<q1@fabrikam.com>"
    r = graph.get(f"/v1.0/users/{MEGAN}/messages", params={
        "$filter": f"internetMessageId eq '{sent['internetMessageId']}'",
        "$select": "internetMessageHeaders,conversationId,from"})
    [copy] = r.json()["value"]
    assert copy["id"] != sent["id"] and copy["conversationId"] == sent["conversationId"]
    assert copy["from"]["emailAddress"]["address"] == ALEX
    outbox = sb.control.get("/_sandbox/graph/outbox").json()["value"]
    assert outbox[-1]["external"] == ["ana@fabrikam.com"]
    # non x- headers are refused as Graph does
    r = graph.post(f"/v1.0/users/{ALEX}/sendMail", json={"message": {
        "subject": "x", "toRecipients": [{"emailAddress": {"address": MEGAN}}],
        "internetMessageHeaders": [{"name": "In-Reply-To", "value": "<a@b>"}]}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidInternetMessageHeader"


def test_draft_send_keeps_immutable_id_and_pascal_case(sb: Any, graph: Graph) -> None:
    imm = {"Prefer": 'IdType="ImmutableId"'}
    r = graph.post(f"/v1.0/users/{ALEX}/messages", headers=imm, json={
        "subject": "Draft", "toRecipients": [{"emailAddress": {"address": NESTOR}}]})
    assert r.status_code == 201 and r.json()["isDraft"] is True
    draft_id = r.json()["id"]
    assert graph.post(f"/v1.0/users/{ALEX}/messages/{draft_id}/send").status_code == 202
    sent = graph.get(f"/v1.0/users/{ALEX}/messages/{draft_id}", headers=imm).json()
    inbox = graph.get(f"/v1.0/users/{ALEX}/mailFolders/sentitems").json()
    assert sent["isDraft"] is False and sent["parentFolderId"] == inbox["id"]
    r = graph.post(f"/v1.0/users/{ALEX}/microsoft.graph.sendMail", json={
        "Message": {"subject": "Pascal", "toRecipients": [
            {"emailAddress": {"address": NESTOR}}]}, "SaveToSentItems": False})
    assert r.status_code == 202
    subjects = [m["subject"] for m in graph.get(f"/v1.0/users/{NESTOR}/mailFolders/inbox/"
                                                "messages").json()["value"]]
    assert {"Draft", "Pascal"} <= set(subjects)


def test_send_rate_limit(sb: Any, graph: Graph) -> None:
    msg = {"message": {"subject": "s", "toRecipients": [{"emailAddress": {"address": MEGAN}}]},
           "saveToSentItems": False}
    statuses = [graph.post(f"/v1.0/users/{NESTOR}/sendMail", json=msg).status_code
                for _ in range(31)]
    assert statuses[:30] == [202] * 30
    assert statuses[30] == 429
    r = graph.post(f"/v1.0/users/{NESTOR}/sendMail", json=msg)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    sb.control.post("/_sandbox/graph/clock", json={"advance_seconds": 61})
    assert graph.post(f"/v1.0/users/{NESTOR}/sendMail", json=msg).status_code == 202


# ---- delta -------------------------------------------------------------------------------

def _drain(graph: Graph, url: str, **kw: Any) -> tuple[list[dict[str, Any]], str, int]:
    items, pages = [], 0
    r = graph.get(url, **kw)
    while True:
        assert r.status_code == 200, r.text
        pages += 1
        body = r.json()
        items += body["value"]
        if "@odata.deltaLink" in body:
            return items, body["@odata.deltaLink"], pages
        r = graph.get(body["@odata.nextLink"], headers=kw.get("headers"))


def test_message_delta_paging_removed_and_moves(sb: Any, graph: Graph) -> None:
    made = [d["id"] for n in range(23) for d in deliver(sb, to=NESTOR, subject=f"d{n}")]
    url = f"/v1.0/users/{NESTOR}/mailFolders/inbox/messages/delta"
    pref = {"Prefer": "odata.maxpagesize=5"}
    r = graph.get(url, params={"$select": "subject,isRead"}, headers=pref)
    assert r.headers["Preference-Applied"] == "odata.maxpagesize=5"
    assert set(r.json()["value"][0]) <= {"@odata.etag", "id", "subject", "isRead"}
    items, delta_link, pages = _drain(graph, url, params={"$select": "subject,isRead"},
                                      headers=pref)
    assert {m["id"] for m in items} >= set(made) and pages >= 5
    # nothing changed: empty round
    again, delta_link, _ = _drain(graph, delta_link)
    assert again == []
    graph.patch(f"/v1.0/users/{NESTOR}/messages/{made[0]}", json={"isRead": True})
    graph.delete(f"/v1.0/users/{NESTOR}/messages/{made[1]}")
    graph.post(f"/v1.0/users/{NESTOR}/messages/{made[2]}/move", json={"destinationId": "archive"})
    [new] = deliver(sb, to=NESTOR, subject="late")
    changes, delta_link, _ = _drain(graph, delta_link)
    by_id = {c["id"]: c for c in changes}
    assert by_id[made[0]]["isRead"] is True and "subject" in by_id[made[0]]
    assert by_id[made[1]]["@removed"] == {"reason": "deleted"}
    assert "@removed" in by_id[made[2]]
    assert by_id[new["id"]]["subject"] == "late"
    assert len(changes) == 4
    # a message moved into the folder appears there
    archive_url = f"/v1.0/users/{NESTOR}/mailFolders/archive/messages/delta"
    arch, _, _ = _drain(graph, archive_url)
    assert any(m["subject"] == "d2" for m in arch)


def test_delta_expired_token_is_410(sb: Any, graph: Graph) -> None:
    url = f"/v1.0/users/{ALEX}/mailFolders/inbox/messages/delta"
    _, delta_link, _ = _drain(graph, url)
    sb.faults({"service": "graph", "kind": "expire_delta", "user": ALEX})
    r = graph.get(delta_link)
    assert r.status_code == 410 and r.json()["error"]["code"] == "syncStateNotFound"
    assert r.headers["Location"].endswith("/mailFolders/inbox/messages/delta") or \
        "/messages/delta" in r.headers["Location"]
    items, _, _ = _drain(graph, r.headers["Location"])
    assert len(items) == len(inbox_ids(graph, ALEX))
    sb.reset()  # a reset invalidates all state tokens
    assert graph.get(delta_link).status_code == 410


def test_delta_immutable_ids_and_top(sb: Any, graph: Graph) -> None:
    for n in range(4):
        deliver(sb, to=MEGAN, subject=f"t{n}")
    url = f"/v1.0/users/{MEGAN}/mailFolders/inbox/messages/delta"
    imm = {"Prefer": 'IdType="ImmutableId"'}
    r = graph.get(url, params={"$top": "2"}, headers=imm)
    assert len(r.json()["value"]) == 2 and "@odata.nextLink" in r.json()
    items, _, _ = _drain(graph, url, headers=imm)
    ids = {m["id"] for m in items}
    for m in items:
        assert graph.get(f"/v1.0/users/{MEGAN}/messages/{m['id']}", headers=imm).json()[
            "id"] == m["id"]
    assert len(ids) == len(items)


def test_folder_contacts_todo_delta(sb: Any, graph: Graph) -> None:
    _, folder_link, _ = _drain(graph, f"/v1.0/users/{ALEX}/mailFolders/delta")
    graph.post(f"/v1.0/users/{ALEX}/mailFolders", json={"displayName": "Top level"})
    changed, _, _ = _drain(graph, folder_link)
    assert [f["displayName"] for f in changed] == ["Top level"]
    _, contact_link, _ = _drain(graph, f"/v1.0/users/{ALEX}/contacts/delta")
    r = graph.post(f"/v1.0/users/{ALEX}/contacts", json={
        "givenName": "Ana", "surname": "Lopez",
        "emailAddresses": [{"address": "ana@fabrikam.com", "name": "Ana Lopez"}]})
    assert r.status_code == 201 and r.json()["displayName"] == "Ana Lopez"
    cid = r.json()["id"]
    changed, contact_link, _ = _drain(graph, contact_link)
    assert [c["id"] for c in changed] == [cid]
    graph.patch(f"/v1.0/users/{ALEX}/contacts/{cid}", json={"jobTitle": "Buyer"})
    assert graph.get(f"/v1.0/users/{ALEX}/contacts/{cid}").json()["jobTitle"] == "Buyer"
    graph.delete(f"/v1.0/users/{ALEX}/contacts/{cid}")
    changed, _, _ = _drain(graph, contact_link)
    assert changed == [{"id": cid, "@removed": {"reason": "deleted"}}]
    lists = graph.get(f"/v1.0/users/{ALEX}/todo/lists").json()["value"]
    lid = next(x["id"] for x in lists if x["wellknownListName"] == "defaultList")
    turl = f"/v1.0/users/{ALEX}/todo/lists/{lid}/tasks"
    _, task_link, _ = _drain(graph, turl + "/delta")
    r = graph.post(turl, json={"title": "Call Ana", "dueDateTime": {
        "dateTime": "2026-12-01T00:00:00", "timeZone": "UTC"}})
    assert r.status_code == 201
    tid = r.json()["id"]
    graph.patch(f"{turl}/{tid}", json={"status": "completed"})
    changed, _, _ = _drain(graph, task_link)
    assert [(t["id"], t["status"]) for t in changed] == [(tid, "completed")]
    r = graph.post(f"/v1.0/users/{ALEX}/todo/lists", json={"displayName": "CRM"})
    assert r.status_code == 201
    _, _, _ = _drain(graph, f"/v1.0/users/{ALEX}/todo/lists/delta")


def test_large_backlog_delta_is_cheap(sb: Any, graph: Graph) -> None:
    r = sb.control.post("/_sandbox/graph/bulk-deliver", json={"to": [MEGAN], "count": 5000})
    assert r.status_code == 201 and r.json()["created"] == 5000
    url = f"/v1.0/users/{MEGAN}/mailFolders/inbox/messages/delta"
    started = time.monotonic()
    items, _, pages = _drain(graph, url, params={"$select": "subject"},
                             headers={"Prefer": "odata.maxpagesize=500"})
    assert len(items) >= 5000 and pages >= 10
    assert time.monotonic() - started < 30


# ---- events ------------------------------------------------------------------------------

def test_events_crud_transaction_recurrence_cancel(sb: Any, graph: Graph) -> None:
    base = f"/v1.0/users/{ALEX}/events"
    body = {"subject": "Review", "transactionId": "tx-1",
            "start": {"dateTime": "2026-12-01T09:00:00", "timeZone": "Pacific Standard Time"},
            "end": {"dateTime": "2026-12-01T10:00:00", "timeZone": "Pacific Standard Time"},
            "attendees": [{"emailAddress": {"address": MEGAN}, "type": "required"}],
            "location": {"displayName": "Room 1"}, "showAs": "busy", "categories": ["CRM"]}
    r = graph.post(base, json=body)
    assert r.status_code == 201
    ev = r.json()
    assert ev["start"]["dateTime"].startswith("2026-12-01T17:00:00") and ev["isOrganizer"]
    again = graph.post(base, json=body).json()
    assert again["id"] == ev["id"]
    r = graph.get(f"{base}/{ev['id']}", headers={"Prefer": 'outlook.timezone="W. Europe '
                                                          'Standard Time"'})
    assert r.json()["start"]["dateTime"].startswith("2026-12-01T18:00:00")
    megan = graph.get(f"/v1.0/users/{MEGAN}/events").json()["value"]
    copy = next(e for e in megan if e["iCalUId"] == ev["iCalUId"])
    assert copy["isOrganizer"] is False
    r = graph.patch(f"{base}/{ev['id']}", json={"subject": "Review v2"})
    assert r.json()["subject"] == "Review v2"
    assert graph.get(f"/v1.0/users/{MEGAN}/events/{copy['id']}").json()["subject"] == \
        "Review v2"
    r = graph.post(f"/v1.0/users/{MEGAN}/events/{copy['id']}/cancel", json={"comment": "x"})
    assert r.status_code == 400
    r = graph.post(f"{base}/{ev['id']}/cancel", json={"comment": "Sorry"})
    assert r.status_code == 202
    assert graph.get(f"{base}/{ev['id']}").status_code == 404
    assert graph.get(f"/v1.0/users/{MEGAN}/events/{copy['id']}").json()["isCancelled"] is True
    rec = {"subject": "Standup",
           "start": {"dateTime": "2026-12-07T09:00:00", "timeZone": "UTC"},
           "end": {"dateTime": "2026-12-07T09:15:00", "timeZone": "UTC"},
           "recurrence": {"pattern": {"type": "weekly", "interval": 1,
                                      "daysOfWeek": ["monday", "wednesday"]},
                          "range": {"type": "numbered", "startDate": "2026-12-07",
                                    "numberOfOccurrences": 5}}}
    master = graph.post(base, json=rec).json()
    assert master["type"] == "seriesMaster"
    r = graph.get(f"{base}/{master['id']}/instances", params={
        "startDateTime": "2026-12-01T00:00:00Z", "endDateTime": "2027-01-31T00:00:00Z"})
    occ = r.json()["value"]
    assert len(occ) == 5 and all(o["type"] == "occurrence" for o in occ)
    assert occ[1]["start"]["dateTime"].startswith("2026-12-09")
    assert graph.get(f"{base}/{occ[0]['id']}").json()["seriesMasterId"] == master["id"]
    assert graph.delete(f"{base}/{master['id']}").status_code == 204


def test_calendar_view_delta(sb: Any, graph: Graph) -> None:
    url = f"/v1.0/users/{NESTOR}/calendarView/delta"
    window = {"startDateTime": "2026-12-01T00:00:00Z", "endDateTime": "2026-12-31T00:00:00Z"}
    assert graph.get(url).status_code == 400
    _, link, _ = _drain(graph, url, params=window)
    ev = graph.post(f"/v1.0/users/{NESTOR}/events", json={
        "subject": "In window", "start": {"dateTime": "2026-12-10T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-12-10T11:00:00", "timeZone": "UTC"}}).json()
    graph.post(f"/v1.0/users/{NESTOR}/events", json={
        "subject": "Outside", "start": {"dateTime": "2027-03-10T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2027-03-10T11:00:00", "timeZone": "UTC"}})
    changed, link, _ = _drain(graph, link)
    assert [e["subject"] for e in changed] == ["In window"]
    graph.patch(f"/v1.0/users/{NESTOR}/events/{ev['id']}", json={
        "start": {"dateTime": "2027-02-10T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2027-02-10T11:00:00", "timeZone": "UTC"}})
    changed, _, _ = _drain(graph, link)
    assert changed == [{"id": ev["id"], "@removed": {"reason": "changed"}}]
    _, elink, _ = _drain(graph, f"/v1.0/users/{NESTOR}/events/delta")


# ---- batch -------------------------------------------------------------------------------

def test_batch_dependencies_and_inner_throttling(sb: Any, graph: Graph) -> None:
    [a] = deliver(sb, to=ALEX, subject="batch a")
    reqs = [
        {"id": "1", "method": "GET", "url": f"/users/{ALEX}/messages/{a['id']}"},
        {"id": "2", "method": "PATCH", "url": f"/users/{ALEX}/messages/{a['id']}",
         "headers": {"Content-Type": "application/json"}, "body": {"isRead": True},
         "dependsOn": ["1"]},
        {"id": "3", "method": "GET", "url": f"/users/{ALEX}/messages/nope-not-there"},
        {"id": "4", "method": "GET", "url": f"/users/{ALEX}/mailFolders/inbox",
         "dependsOn": ["3"]},
    ]
    r = graph.post("/v1.0/$batch", json={"requests": reqs})
    assert r.status_code == 200
    got = {x["id"]: x for x in r.json()["responses"]}
    assert got["1"]["status"] == 200 and got["2"]["body"]["isRead"] is True
    assert got["3"]["status"] == 404 and got["4"]["status"] == 424
    sb.faults({"service": "graph", "kind": "status", "status": 429, "retry_after": 7,
               "count": 1, "user": MEGAN})
    r = graph.post("/v1.0/$batch", json={"requests": [
        {"id": "a", "method": "GET", "url": f"/users/{MEGAN}/mailFolders/inbox"},
        {"id": "b", "method": "GET", "url": f"/users/{MEGAN}/mailFolders/inbox"}]})
    got = {x["id"]: x for x in r.json()["responses"]}
    assert got["a"]["status"] == 429 and got["a"]["headers"]["Retry-After"] == "7"
    assert got["b"]["status"] == 200
    too_many = [{"id": str(n), "method": "GET", "url": f"/users/{ALEX}/mailFolders/inbox"}
                for n in range(21)]
    assert graph.post("/v1.0/$batch", json={"requests": too_many}).status_code == 400
    r = graph.post("/v1.0/$batch", json={"requests": [
        {"id": "1", "method": "PATCH", "url": f"/users/{ALEX}/messages/{a['id']}",
         "body": {"isRead": False}}]})
    assert r.status_code == 400


# ---- subscriptions -----------------------------------------------------------------------

class _Listener:
    """A tiny HTTP endpoint on 127.0.0.1 that answers validation and records notifications."""

    def __init__(self, echo: bool = True) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                token = parse_qs(urlsplit(self.path).query).get("validationToken")
                if token:
                    text = token[0].encode() if echo else b"nope"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                    return
                outer.received.append(json.loads(raw))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), H)
        self.url = f"http://127.0.0.1:{port}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received


@pytest.fixture
def listener() -> Iterator[_Listener]:
    ln = _Listener()
    yield ln
    ln.server.shutdown()


def _expiry(minutes: int) -> str:
    import datetime as dt

    return (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def test_subscription_lifecycle(sb: Any, graph: Graph, listener: _Listener) -> None:
    body = {"changeType": "created,updated,deleted", "notificationUrl": listener.url,
            "lifecycleNotificationUrl": listener.url,
            "resource": f"/users/{ALEX}/mailFolders('inbox')/messages",
            "expirationDateTime": _expiry(60), "clientState": "secret-state"}
    assert graph.post("/v1.0/subscriptions", json={**body, "expirationDateTime": _expiry(
        20000)}).status_code == 400
    assert graph.post("/v1.0/subscriptions", json={**body, "clientState": "x" * 129}
                      ).status_code == 400
    assert graph.post("/v1.0/subscriptions", json={
        **body, "notificationUrl": "http://example.com/hook"}).status_code == 400
    r = graph.post("/v1.0/subscriptions", json=body)
    assert r.status_code == 201, r.text
    sub = r.json()
    assert graph.get(f"/v1.0/subscriptions/{sub['id']}").json()["clientState"] == "secret-state"
    [got] = deliver(sb, to=ALEX, subject="notify me")
    [payload] = listener.wait(1)
    [note] = payload["value"]
    assert note["changeType"] == "created" and note["clientState"] == "secret-state"
    assert note["resourceData"]["id"] == got["id"] and note["subscriptionId"] == sub["id"]
    r = graph.patch(f"/v1.0/subscriptions/{sub['id']}", json={
        "expirationDateTime": _expiry(120)})
    assert r.status_code == 200
    assert graph.post(f"/v1.0/subscriptions/{sub['id']}/reauthorize").status_code == 204
    sb.control.post(f"/_sandbox/graph/subscriptions/{sub['id']}/lifecycle",
                    json={"event": "reauthorizationRequired"})
    notes = listener.wait(2)
    assert notes[1]["value"][0]["lifecycleEvent"] == "reauthorizationRequired"
    deliveries = sb.control.get("/_sandbox/graph/notifications").json()["value"]
    assert deliveries and deliveries[0]["status"] == 202
    assert graph.delete(f"/v1.0/subscriptions/{sub['id']}").status_code == 204
    assert graph.get(f"/v1.0/subscriptions/{sub['id']}").status_code == 404


def test_subscription_validation_failure(sb: Any, graph: Graph) -> None:
    bad = _Listener(echo=False)
    try:
        r = graph.post("/v1.0/subscriptions", json={
            "changeType": "created", "notificationUrl": bad.url,
            "resource": f"/users/{ALEX}/messages", "expirationDateTime": _expiry(60)})
        assert r.status_code == 400 and r.json()["error"]["code"] == "ValidationError"
    finally:
        bad.server.shutdown()


def test_control_api_views(sb: Any, graph: Graph) -> None:
    r = sb.control.post("/_sandbox/graph/send-as", json={
        "from": MEGAN, "to": [ALEX], "subject": "Internal", "body": "hello",
        "headers": {"x-test": "1"}})
    assert r.status_code == 201 and r.json()["delivered"][0]["upn"] == ALEX
    everything = sb.control.get(f"/_sandbox/graph/mailboxes/{ALEX}/messages",
                                params={"folder": "inbox"}).json()["value"]
    mine = next(m for m in everything if m["subject"] == "Internal")
    assert {"internetMessageHeaders", "singleValueExtendedProperties", "immutableId"} <= set(mine)
    r = sb.control.patch(f"/_sandbox/graph/mailboxes/{ALEX}/messages/{mine['id']}",
                         json={"categories": ["Red"]})
    assert r.json()["categories"] == ["Red"]
    r = sb.control.post(f"/_sandbox/graph/mailboxes/{ALEX}/messages/{mine['id']}/move",
                        json={"folder": "archive"})
    assert r.json()["folder"] == "archive"
    r = sb.control.post(f"/_sandbox/graph/mailboxes/{ALEX}/events", json={
        "subject": "From Outlook", "start": {"dateTime": "2026-12-01T09:00:00"},
        "end": {"dateTime": "2026-12-01T09:30:00"}})
    assert r.status_code == 201
    assert sb.control.get(f"/_sandbox/graph/mailboxes/{ALEX}/tasks").status_code == 200


def test_graph_store_unit_delta_without_http() -> None:
    """The store works without the app: used by benchmarks that seed directly."""
    from sandbox.graph import GraphStore, delta, ops
    from sandbox.world import SandboxUser

    class W:
        users = {"u1": SandboxUser("u1", "u@contoso.com", "U", "s1", "b1")}
        tenant_id = "t"

        def user(self, key: str) -> Any:
            return self.users["u1"] if key.lower() in ("u1", "u@contoso.com") else None

    store = GraphStore(W())
    mbx = store.mailbox(W.users["u1"])
    for n in range(50):
        ops.deliver(mbx, {"subject": str(n)})
    key = f"message:{mbx.wellknown['inbox']}"
    body, _ = delta.run(mbx, key=key, url_base="u", params={}, page_size=100,
                        visible=lambda i: mbx.visible_in(i, key),
                        render=lambda i: [{"id": i.reg_id}], removed_ids=lambda i: [i.reg_id])
    assert len(body["value"]) == 50 and "@odata.deltaLink" in body
