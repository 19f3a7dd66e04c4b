"""PendingItemRepository batches and IntentRepository idempotency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from shared.store import PendingItem

NOW = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


async def test_add_many_batches_and_lists_by_stream(store):
    items = [PendingItem(mailbox_id="m1", stream="incoming:inbox", item_id=f"AA/{i}+=")
             for i in range(230)]
    items += [PendingItem(mailbox_id="m1", stream="incoming:folder:F/1", item_id="x")]
    items += [PendingItem(mailbox_id="m2", stream="incoming:inbox", item_id="y", removed=True)]
    before = store.request_count
    assert await store.pending.add_many(items, NOW) == 232
    # 230 -> 3 transactions, 1 for the folder item (same partition), 1 for m2, 1 table create
    assert store.request_count - before == 5

    inbox = await store.pending.list("m1", "incoming:inbox")
    assert {item.item_id for item in inbox} == {f"AA/{i}+=" for i in range(230)}
    assert [i.item_id for i in await store.pending.list("m1", "incoming:folder:F/1")] == ["x"]
    assert len(await store.pending.list("m1")) == 231
    assert (await store.pending.list("m2"))[0].removed is True


async def test_relisting_keeps_attempts_and_remove_deletes(store):
    item = PendingItem(mailbox_id="m1", stream="incoming:inbox", item_id="i1")
    await store.pending.add_many([item, item], NOW)  # duplicates in one batch are fine
    await store.pending.record_attempt(item, "dataverse transient 503")
    await store.pending.add_many([item], NOW)
    [stored] = await store.pending.list("m1")
    assert stored.attempts == 1 and stored.last_error == "dataverse transient 503"

    await store.pending.remove("m1", "incoming:inbox", "i1")
    await store.pending.remove("m1", "incoming:inbox", "i1")
    assert await store.pending.list("m1") == []


async def test_intent_create_or_get_is_idempotent(store):
    args = dict(user_object_id="user-1", mailbox_id="m1", action="track",
                payload={"item_id": "AA/1"}, now=NOW)
    results = await asyncio.gather(
        *(store.intents.create_or_get("key-1", **args) for _ in range(5))
    )
    assert sum(created for _, _, created in results) == 1
    assert len({intent.intent_id for intent, _, _ in results}) == 1

    other_user, _, created = await store.intents.create_or_get(
        "key-1", **{**args, "user_object_id": "user-2"}
    )
    assert created and other_user.intent_id != results[0][0].intent_id


async def test_intent_update_and_list_pending(store):
    args = dict(user_object_id="u", mailbox_id="m1", action="untrack", payload={}, now=NOW)
    first, etag, _ = await store.intents.create_or_get("k1", **args)
    await store.intents.create_or_get("k2", **args)
    await store.intents.create_or_get("k3", **{**args, "mailbox_id": "m2"})

    done = first.model_copy(update={"state": "done", "attempts": 1, "result": {"ok": True}})
    await store.intents.update(done, etag)
    pending = await store.intents.list_pending("m1")
    assert [intent.idempotency_key for intent, _ in pending] == ["k2"]
    again, _, created = await store.intents.create_or_get("k1", **args)
    assert not created and again.state == "done" and again.result == {"ok": True}
