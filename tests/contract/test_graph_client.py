"""GraphClient against the sandbox's Graph emulator over HTTPS, with injected faults."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from shared.errors import ErrorKind, UpstreamError
from shared.graph import BatchRequest, GraphClient, new_transaction_id
from shared.http.retry import RetryPolicy
from shared.identity import AppTokenAuth, credential_from_settings
from shared.settings import Settings
from tests.contract.conftest import Sleeps
from tests.fixtures.sandbox import SandboxHandle

ALEX = "alex@contoso.com"
MEGAN = "megan@contoso.com"
MARKER = "String {00020329-0000-0000-C000-000000000046} Name SssTrackingId"


@pytest.fixture
async def graph(fresh_sandbox: SandboxHandle, settings: Settings, sleeps: Sleeps
                ) -> AsyncIterator[GraphClient]:
    credential = credential_from_settings(settings)
    retry = RetryPolicy(max_attempts=4, max_total_wait=3.0, base_delay=0.05, max_delay=0.2,
                        sleep=sleeps)
    client = GraphClient(settings.graph_base_url, AppTokenAuth(credential, settings.graph_scope),
                         retry=retry)
    await client.get_mail_folder(ALEX, "inbox")  # token fetched; counts start after this
    client.stats.reset()
    try:
        yield client
    finally:
        await client.aclose()
        await credential.close()


def deliver(sandbox: SandboxHandle, to: str, subject: str, **extra: object) -> dict:
    response = sandbox.control.post("/_sandbox/graph/deliver", json={
        "from": "ana@fabrikam.com", "to": [to], "subject": subject, "body": "<p>hi</p>",
        **extra})
    response.raise_for_status()
    return response.json()["value"][0]


def drafts(sandbox: SandboxHandle) -> list[dict]:
    response = sandbox.control.get(f"/_sandbox/graph/mailboxes/{ALEX}/messages",
                                   params={"folder": "drafts"})
    response.raise_for_status()
    return list(response.json()["value"])


async def test_folders(graph: GraphClient) -> None:
    inbox = await graph.get_mail_folder(ALEX, "inbox")
    children = [f async for f in graph.list_child_folders(ALEX, inbox["id"])]
    assert [f["displayName"] for f in children] == ["Fabrikam deals"]
    assert children[0]["parentFolderId"] == inbox["id"]


async def test_mailbox_settings(graph: GraphClient) -> None:
    mailbox = await graph.get_mailbox_settings(ALEX)
    assert "timeZone" in mailbox


async def test_master_categories(graph: GraphClient) -> None:
    category = await graph.ensure_master_category(ALEX, "Tracked to Dynamics 365")
    again = await graph.ensure_master_category(ALEX, "Tracked to Dynamics 365")
    assert category["id"] == again["id"]
    names = [c["displayName"] for c in await graph.list_master_categories(ALEX)]
    assert names.count("Tracked to Dynamics 365") == 1


async def test_delta_pages_and_resume(fresh_sandbox: SandboxHandle, graph: GraphClient) -> None:
    for n in range(3):
        deliver(fresh_sandbox, ALEX, f"Backlog {n}")
    pages = [p async for p in graph.delta_messages(ALEX, "inbox", select=["subject"],
                                                   page_size=2)]
    assert len(pages) >= 3
    assert all(p.next_link for p in pages[:-1]) and pages[-1].delta_link
    subjects = [m["subject"] for p in pages for m in p.items]
    assert {"Backlog 0", "Backlog 1", "Backlog 2"} <= set(subjects)
    assert len(subjects) == len(set(subjects))

    # resume mid-backlog from a persisted next link: only the rest comes back
    rest = [p async for p in graph.delta_messages(ALEX, "inbox", link=pages[0].next_link)]
    assert sum(len(p.items) for p in rest) == len(subjects) - len(pages[0].items)

    # from the delta link: only what changed since
    new = deliver(fresh_sandbox, ALEX, "Fresh one")
    gone = pages[0].items[0]["id"]
    await graph.delete_message(ALEX, gone)
    changes = [p async for p in graph.delta_messages(ALEX, "inbox", link=pages[-1].delta_link)]
    assert [m["subject"] for p in changes for m in p.items] == ["Fresh one"]
    assert gone in [r for p in changes for r in p.removed]
    assert new["immutableId"] in [m["id"] for p in changes for m in p.items]


async def test_expired_delta_is_410_with_location(fresh_sandbox: SandboxHandle,
                                                   graph: GraphClient) -> None:
    pages = [p async for p in graph.delta_messages(ALEX, "inbox")]
    fresh_sandbox.faults({"service": "graph", "kind": "expire_delta", "user": ALEX})
    with pytest.raises(UpstreamError) as caught:
        async for _ in graph.delta_messages(ALEX, "inbox", link=pages[-1].delta_link):
            pass
    assert caught.value.kind is ErrorKind.EXPIRED
    assert caught.value.status == 410
    assert caught.value.location and "delta" in caught.value.location


async def test_429_with_retry_after_then_success(fresh_sandbox: SandboxHandle,
                                                 graph: GraphClient, sleeps: Sleeps) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "status", "status": 429,
                          "retry_after": 1, "count": 1, "user": ALEX},
                         {"service": "graph", "kind": "status", "status": 429,
                          "retry_after": 0, "count": 1, "user": ALEX})
    inbox = await graph.get_mail_folder(ALEX, "inbox")
    assert inbox["displayName"] == "Inbox"
    assert sleeps.waits == [1.0, 0.0]
    assert graph.stats.http_requests == 3


async def test_503_is_retried(fresh_sandbox: SandboxHandle, graph: GraphClient) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "status", "status": 503,
                          "retry_after": None, "count": 2, "user": ALEX})
    messages = [m async for m in graph.list_messages(ALEX, "inbox", select=["subject"])]
    assert messages
    assert graph.stats.http_requests == 3


@pytest.mark.parametrize("status", [500, 501, 502])
async def test_other_5xx_surface_at_once_as_permanent(fresh_sandbox: SandboxHandle,
                                                      graph: GraphClient, sleeps: Sleeps,
                                                      status: int) -> None:
    # Graph's SDKs resend only 429, 503 and 504: a 501 "not implemented" (or a 500, 502) is
    # an answer, and resending a GET would only repeat it
    fresh_sandbox.faults({"service": "graph", "kind": "status", "status": status,
                          "retry_after": None, "count": None, "user": ALEX})
    fresh_sandbox.control.delete("/_sandbox/counters")
    with pytest.raises(UpstreamError) as caught:
        await graph.get_mail_folder(ALEX, "inbox")
    assert (caught.value.kind, caught.value.status) == (ErrorKind.PERMANENT, status)
    assert fresh_sandbox.counters()["requests"]["graph"] == 1
    assert graph.stats.http_requests == 1 and sleeps.waits == []


@pytest.mark.parametrize("status", [429, 503, 504])
async def test_what_the_sdks_retry_is_retried(fresh_sandbox: SandboxHandle, graph: GraphClient,
                                              status: int) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "status", "status": status,
                          "retry_after": 0, "count": 2, "user": ALEX})
    fresh_sandbox.control.delete("/_sandbox/counters")
    assert (await graph.get_mail_folder(ALEX, "inbox"))["displayName"] == "Inbox"
    assert fresh_sandbox.counters()["requests"]["graph"] == 3


async def test_dropped_connection_is_retried_for_get(fresh_sandbox: SandboxHandle,
                                                     graph: GraphClient) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "drop", "count": 1, "user": ALEX})
    inbox = await graph.get_mail_folder(ALEX, "inbox")
    assert inbox["displayName"] == "Inbox"
    assert graph.stats.http_requests == 2


async def test_dropped_send_is_not_resent(fresh_sandbox: SandboxHandle,
                                          graph: GraphClient) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "drop", "count": 1, "user": ALEX})
    with pytest.raises(UpstreamError) as caught:
        await graph.send_mail(ALEX, {"subject": "once", "toRecipients": [
            {"emailAddress": {"address": MEGAN}}]})
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert graph.stats.http_requests == 1


async def test_total_wait_budget_exceeded_is_transient(fresh_sandbox: SandboxHandle,
                                                       graph: GraphClient,
                                                       sleeps: Sleeps) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "status", "status": 429,
                          "retry_after": 30, "count": 3, "user": ALEX})
    with pytest.raises(UpstreamError) as caught:
        await graph.get_mail_folder(ALEX, "inbox")
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert caught.value.retry_after == 30.0
    assert sleeps.waits == []
    assert graph.stats.http_requests == 1


async def test_batch_retries_only_the_throttled_request(fresh_sandbox: SandboxHandle,
                                                        graph: GraphClient,
                                                        sleeps: Sleeps) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "status", "status": 429,
                          "retry_after": 1, "count": 1, "user": MEGAN})
    requests = [BatchRequest("GET", f"/users/{ALEX}/mailFolders/inbox"),
                BatchRequest("GET", f"/users/{MEGAN}/mailFolders/inbox"),
                BatchRequest("GET", f"/users/{ALEX}/mailFolders/sentitems"),
                BatchRequest("GET", f"/users/{ALEX}/messages/does-not-exist")]
    answers = await graph.batch(requests)
    assert [a.status for a in answers] == [200, 200, 200, 404]
    assert answers[3].error is not None and answers[3].error.kind is ErrorKind.NOT_FOUND
    assert sleeps.waits == [1.0]
    assert graph.stats.http_requests == 2
    assert graph.stats.operations == 5  # four, then the throttled one again


async def test_batch_parts_follow_the_one_resend_rule(fresh_sandbox: SandboxHandle,
                                                      graph: GraphClient,
                                                      sleeps: Sleeps) -> None:
    # the first two parts at alex answer 504, the part at megan 501
    fresh_sandbox.faults({"service": "graph", "kind": "status", "status": 504,
                          "retry_after": 0, "count": 2, "user": ALEX},
                         {"service": "graph", "kind": "status", "status": 501,
                          "retry_after": None, "count": 1, "user": MEGAN})
    answers = await graph.batch([
        BatchRequest("GET", f"/users/{ALEX}/mailFolders/inbox"),
        BatchRequest("POST", f"/users/{ALEX}/messages", body={"subject": "Draft once"}),
        BatchRequest("GET", f"/users/{MEGAN}/mailFolders/inbox")])
    get, create, other = answers
    assert get.status == 200  # a safe part is resent after a 504
    # a create may have landed before a gateway timeout: not resent, surfaced as transient
    assert create.status == 504 and create.error is not None and create.error.transient
    # a 501 is permanent: surfaced at once, never resent
    assert other.status == 501 and other.error is not None
    assert other.error.kind is ErrorKind.PERMANENT
    assert graph.stats.http_requests == 2 and graph.stats.operations == 4  # 3, then the GET
    assert sleeps.waits == [0.0]
    assert "Draft once" not in [m["subject"] for m in drafts(fresh_sandbox)]


async def test_batch_resends_a_create_the_service_refused(fresh_sandbox: SandboxHandle,
                                                          graph: GraphClient) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "status", "status": 503,
                          "retry_after": 0, "count": 1, "user": ALEX})
    [created] = await graph.batch([
        BatchRequest("POST", f"/users/{ALEX}/messages", body={"subject": "Refused once"})])
    assert created.status == 201
    assert graph.stats.operations == 2
    assert [m["subject"] for m in drafts(fresh_sandbox)].count("Refused once") == 1


async def test_batch_in_chunks_of_twenty(fresh_sandbox: SandboxHandle,
                                        graph: GraphClient) -> None:
    ids = [deliver(fresh_sandbox, ALEX, f"Bulk {n}")["immutableId"] for n in range(22)]
    graph.stats.reset()
    answers = await graph.patch_messages_categories(
        ALEX, [(i, ["Tracked to Dynamics 365"]) for i in ids])
    assert all(a.ok for a in answers), [a.status for a in answers]
    assert graph.stats.http_requests == 2 and graph.stats.operations == 22
    message = await graph.get_message(ALEX, ids[-1], select=["categories"])
    assert message["categories"] == ["Tracked to Dynamics 365"]


async def test_send_mail_and_find_it_by_marker(fresh_sandbox: SandboxHandle,
                                               graph: GraphClient) -> None:
    marker = str(uuid.uuid4())
    subject = f"Quote {marker[:8]}"
    await graph.send_mail(ALEX, {
        "subject": subject, "body": {"contentType": "Text", "content": "Hello"},
        "toRecipients": [{"emailAddress": {"address": MEGAN}}],
        "singleValueExtendedProperties": [{"id": MARKER, "value": marker}],
    })
    sent = await graph.find_sent_message_by_marker(ALEX, MARKER, marker)
    assert sent is not None and sent["internetMessageId"]
    assert await graph.find_sent_message_by_marker(ALEX, MARKER, "nothing-like-it") is None
    received = [m async for m in graph.list_messages(
        MEGAN, "inbox", filter=f"internetMessageId eq '{sent['internetMessageId']}'",
        select=["subject"])]
    assert [m["subject"] for m in received] == [subject]


async def test_draft_move_update_delete(graph: GraphClient) -> None:
    draft = await graph.create_draft(ALEX, {"subject": "Draft", "toRecipients": [
        {"emailAddress": {"address": MEGAN}}]})
    archive = await graph.get_mail_folder(ALEX, "archive")
    moved = await graph.move_message(ALEX, draft["id"], archive["id"])
    assert moved["id"] == draft["id"]  # immutable ids survive moves
    updated = await graph.update_message(ALEX, draft["id"], {"subject": "Draft 2"})
    assert updated["subject"] == "Draft 2"
    await graph.delete_message(ALEX, draft["id"])
    await graph.delete_message(ALEX, draft["id"])  # already gone: still fine
    with pytest.raises(UpstreamError) as caught:
        await graph.get_message(ALEX, draft["id"])
    assert caught.value.kind is ErrorKind.NOT_FOUND


async def test_event_create_is_idempotent_with_transaction_id(graph: GraphClient) -> None:
    body = {"subject": "Review", "start": {"dateTime": "2026-12-01T10:00:00",
                                           "timeZone": "UTC"},
            "end": {"dateTime": "2026-12-01T11:00:00", "timeZone": "UTC"}}
    transaction = new_transaction_id()
    first = await graph.create_event(ALEX, body, transaction_id=transaction)
    second = await graph.create_event(ALEX, body, transaction_id=transaction)
    assert first["id"] == second["id"]
    updated = await graph.update_event(ALEX, first["id"], {"subject": "Review 2"})
    assert updated["subject"] == "Review 2"
    assert (await graph.get_event(ALEX, first["id"]))["subject"] == "Review 2"
    pages = [p async for p in graph.delta_events(ALEX, start="2026-11-01T00:00:00Z",
                                                 end="2027-01-01T00:00:00Z")]
    assert first["id"] in [e["id"] for p in pages for e in p.items]
    await graph.delete_event(ALEX, first["id"])
    await graph.delete_event(ALEX, first["id"])


async def test_contacts_and_tasks(graph: GraphClient) -> None:
    contact = await graph.create_contact(ALEX, {"givenName": "Ana", "surname": "Lopez",
                                                "emailAddresses": [
                                                    {"address": "ana@fabrikam.com"}]})
    pages = [p async for p in graph.delta_contacts(ALEX)]
    assert contact["id"] in [c["id"] for p in pages for c in p.items]
    updated = await graph.update_contact(ALEX, contact["id"], {"jobTitle": "Buyer"})
    assert updated["jobTitle"] == "Buyer"
    await graph.delete_contact(ALEX, contact["id"])

    lists = await graph.list_todo_lists(ALEX)
    assert lists
    list_id = lists[0]["id"]
    task = await graph.create_task(ALEX, list_id, {"title": "Call back"})
    pages = [p async for p in graph.delta_tasks(ALEX, list_id)]
    assert task["id"] in [t["id"] for p in pages for t in p.items]
    done = await graph.update_task(ALEX, list_id, task["id"], {"status": "completed"})
    assert done["status"] == "completed"
    await graph.delete_task(ALEX, list_id, task["id"])
    await graph.delete_task(ALEX, list_id, task["id"])
