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


async def exhaust_queue(host: FunctionHost, intent_id: str) -> None:
    """Every retry the queue has, all failing."""
    host.sandbox.faults(DATAVERSE_DOWN)
    message = {"mailbox_id": ALEX_OID, "intent_id": intent_id}
    for attempt in range(2, 6):
        await host.queue("intent_retry", message, dequeue_count=attempt)
    host.sandbox.clear_faults()


async def test_unregistered_mailbox_intent_fails_with_a_reason_when_the_queue_gives_up(
        app_host: FunctionHost) -> None:
    # Alex's mailbox is not registered: no scheduled cycle will ever run his intents
    entry, intent_id = await pending_track(app_host)
    await exhaust_queue(app_host, intent_id)
    view = await intent_view(app_host, intent_id)
    assert view["state"] == "failed" and view["reason"] == "mailbox_not_enabled", view
    assert view["result"]["status"] == 409 and "administrator" in view["result"]["detail"]
    assert emails_with(app_host, entry["internetMessageId"]) == []
    # a late duplicate delivery and a poisoned copy change nothing
    message = {"mailbox_id": ALEX_OID, "intent_id": intent_id}
    await app_host.queue("intent_retry", message, dequeue_count=6)
    await app_host.queue("intent_retry_poison", message)
    again = await intent_view(app_host, intent_id)
    assert again == view


async def test_disabled_mailbox_intent_fails_too(app_host: FunctionHost) -> None:
    from tests.e2e.sync_support import enable

    await enable(app_host, ALEX_OID, tracking_option="none")
    disabled = await app_host.http("admin_disable_mailbox", "POST",
                                   f"admin/mailboxes/{ALEX_OID}/disable",
                                   route={"mailbox_id": ALEX_OID}, token=app_host.admin_token())
    assert disabled.status == 200, disabled.body
    _, intent_id = await pending_track(app_host)
    await exhaust_queue(app_host, intent_id)
    assert (await intent_view(app_host, intent_id))["reason"] == "mailbox_not_enabled"


async def test_poisoned_message_of_an_unregistered_mailbox_ends_the_intent(
        app_host: FunctionHost) -> None:
    entry, intent_id = await pending_track(app_host)
    # the host moved the retry message aside after maxDequeueCount crashed deliveries
    await app_host.queue("intent_retry_poison", {"mailbox_id": ALEX_OID, "intent_id": intent_id})
    view = await intent_view(app_host, intent_id)
    assert view["state"] == "failed" and view["reason"] == "mailbox_not_enabled"
    await app_host.queue("intent_retry_poison", "not json")


async def test_poisoned_message_never_flips_a_finished_intent(app_host: FunctionHost) -> None:
    entry, intent_id = await pending_track(app_host)
    message = {"mailbox_id": ALEX_OID, "intent_id": intent_id}
    await app_host.queue("intent_retry", message)
    done = await intent_view(app_host, intent_id)
    assert done["state"] == "done"
    await app_host.queue("intent_retry_poison", message)
    assert await intent_view(app_host, intent_id) == done
    assert len(emails_with(app_host, entry["internetMessageId"])) == 1


async def test_poisoned_message_of_an_enabled_mailbox_is_left_to_the_cycle(
        app_host: FunctionHost) -> None:
    from tests.e2e.sync_support import enable, tick_and_drain

    await enable(app_host, ALEX_OID, tracking_option="none")
    entry, intent_id = await pending_track(app_host)
    await app_host.queue("intent_retry_poison", {"mailbox_id": ALEX_OID, "intent_id": intent_id})
    assert (await intent_view(app_host, intent_id))["state"] == "pending"
    await tick_and_drain(app_host)
    assert (await intent_view(app_host, intent_id))["state"] == "done"
    assert len(emails_with(app_host, entry["internetMessageId"])) == 1


async def test_the_same_track_after_the_mailbox_is_enabled_is_done_not_replayed(
        app_host: FunctionHost) -> None:
    from tests.e2e.sync_support import enable

    entry, intent_id = await pending_track(app_host)
    await exhaust_queue(app_host, intent_id)
    assert (await intent_view(app_host, intent_id))["state"] == "failed"
    await enable(app_host, ALEX_OID, tracking_option="none")
    again = await track(app_host, item_id(entry))
    assert again.status == 200, again.body
    assert again.json()["intent_id"] == intent_id and again.json()["outcome"] == "created"
    assert len(emails_with(app_host, entry["internetMessageId"])) == 1
