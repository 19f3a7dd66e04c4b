"""Durability: a failed immediate attempt answers 202, the retry queue finishes it, and past
the queue's attempts the scheduled cycle does. Nothing is lost, nothing done twice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2e.test_addin_support import (
    ALEX,
    ALEX_OID,
    CATEGORY,
    call,
    deliver,
    emails_with,
    item_id,
    message_by_imid,
    track,
)
from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e

DATAVERSE_DOWN = {"service": "dataverse", "kind": "status", "status": 503, "retry_after": 0,
                  "count": 1000}


async def intent_view(host: FunctionHost, intent_id: str) -> dict[str, Any]:
    response = await call(host, "addin_get_intent", "GET", f"intents/{intent_id}",
                          route={"intent_id": intent_id})
    assert response.status == 200, response.body
    return response.json()


async def pending_track(host: FunctionHost) -> tuple[dict[str, Any], str]:
    ids = deliver(host, [ALEX])
    host.sandbox.faults(DATAVERSE_DOWN)
    response = await track(host, item_id(ids[ALEX]))
    assert response.status == 202, response.body
    body = response.json()
    assert body["state"] == "pending"
    assert response.headers["location"] == f"/api/intents/{body['intent_id']}"
    host.sandbox.clear_faults()
    return ids[ALEX], body["intent_id"]


async def test_failed_immediate_attempt_is_queued_and_retried(app_host: FunctionHost) -> None:
    entry, intent_id = await pending_track(app_host)
    view = await intent_view(app_host, intent_id)
    assert view["state"] == "pending" and view["attempts"] == 1
    assert "dataverse" in (view["last_error"] or "")
    message = {"mailbox_id": ALEX_OID, "intent_id": intent_id}
    await app_host.queue("intent_retry", message)
    view = await intent_view(app_host, intent_id)
    assert view["state"] == "done", view
    assert view["result"]["outcome"] == "created"
    assert len(emails_with(app_host, entry["internetMessageId"])) == 1
    assert CATEGORY in message_by_imid(app_host, ALEX, entry["internetMessageId"])["categories"]
    # the caller's replay now gets the finished answer
    replay = await track(app_host, item_id(entry))
    assert replay.status == 200 and replay.json()["state"] == "done"


async def test_the_queue_message_is_really_sent_with_a_delay(app_host: FunctionHost,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    from shared.store.queues import JsonQueue

    sent: list[tuple[dict[str, Any], int | None]] = []
    original = JsonQueue.send

    async def spy(self: JsonQueue, message: dict[str, Any], visibility_timeout: int | None = None,
                  time_to_live: int | None = None) -> str:
        sent.append((message, visibility_timeout))
        return await original(self, message, visibility_timeout, time_to_live)

    monkeypatch.setattr(JsonQueue, "send", spy)
    _, intent_id = await pending_track(app_host)
    assert sent == [({"mailbox_id": ALEX_OID, "intent_id": intent_id}, 30)]


async def test_duplicate_queue_delivery_does_the_work_once(app_host: FunctionHost) -> None:
    entry, intent_id = await pending_track(app_host)
    message = {"mailbox_id": ALEX_OID, "intent_id": intent_id}
    await asyncio.gather(app_host.queue("intent_retry", message),
                         app_host.queue("intent_retry", message))
    await app_host.queue("intent_retry", message, dequeue_count=2)
    assert len(emails_with(app_host, entry["internetMessageId"])) == 1
    assert (await intent_view(app_host, intent_id))["state"] == "done"


async def test_poisoned_intent_is_finished_by_the_scheduled_cycle(app_host: FunctionHost) -> None:
    from tests.e2e.sync_support import enable, tick_and_drain

    # the owner's option tracks nothing by itself: only the intent can create the activity
    await enable(app_host, ALEX_OID, tracking_option="none")
    entry, intent_id = await pending_track(app_host)
    app_host.sandbox.faults(DATAVERSE_DOWN)
    message = {"mailbox_id": ALEX_OID, "intent_id": intent_id}
    for attempt in range(2, 6):  # the queue's attempts, all failing
        await app_host.queue("intent_retry", message, dequeue_count=attempt)
    view = await intent_view(app_host, intent_id)
    assert view["state"] == "pending" and view["attempts"] == 5
    assert emails_with(app_host, entry["internetMessageId"]) == []
    app_host.sandbox.clear_faults()
    # the mailbox's scheduled cycle: timer -> sync queue -> sync_mailbox
    jobs = await tick_and_drain(app_host)
    assert [job["mailbox_id"] for job in jobs] == [ALEX_OID]
    view = await intent_view(app_host, intent_id)
    assert view["state"] == "done"
    assert len(emails_with(app_host, entry["internetMessageId"])) == 1


async def test_missed_deadline_answers_202_and_retry_finishes(app_host: FunctionHost,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    from shared.runtime import reset_runtime

    monkeypatch.setenv("IMMEDIATE_DEADLINE_SECONDS", "0.2")
    await reset_runtime()
    ids = deliver(app_host, [ALEX])
    app_host.sandbox.faults({"service": "graph", "kind": "latency", "latency_ms": 600,
                             "count": None})
    response = await track(app_host, item_id(ids[ALEX]))
    assert response.status == 202, response.body
    intent_id = response.json()["intent_id"]
    app_host.sandbox.clear_faults()
    await app_host.queue("intent_retry", {"mailbox_id": ALEX_OID, "intent_id": intent_id})
    assert (await intent_view(app_host, intent_id))["state"] == "done"
    assert len(emails_with(app_host, ids[ALEX]["internetMessageId"])) == 1


async def test_intents_of_others_are_not_visible(app_host: FunctionHost) -> None:
    _, intent_id = await pending_track(app_host)
    response = await call(app_host, "addin_get_intent", "GET", f"intents/{intent_id}",
                          upn="megan@contoso.com", route={"intent_id": intent_id})
    assert response.status == 404
    bad = await call(app_host, "addin_get_intent", "GET", "intents/nope",
                     route={"intent_id": "nope"})
    assert bad.status == 400 and bad.json()["field"] == "intent_id"


async def test_unreadable_queue_message_is_consumed(app_host: FunctionHost) -> None:
    await app_host.queue("intent_retry", "not json")
    await app_host.queue("intent_retry", {"mailbox_id": ALEX_OID, "intent_id": "0" * 40})
