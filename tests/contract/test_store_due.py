"""DueIndexRepository: only due rows come back, at a cost independent of non-due rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from shared.store import due_bucket

NOW = datetime(2025, 1, 6, 9, 30, 20, tzinfo=UTC)


async def test_bucket_is_the_utc_minute():
    local = datetime(2025, 1, 6, 10, 30, 59, tzinfo=UTC).astimezone()
    assert due_bucket(local) == "202501061030"


async def test_list_due_returns_only_due_rows(store):
    await store.due.set_due("past", NOW - timedelta(hours=3))
    await store.due.set_due("now", NOW)
    await store.due.set_due("same-minute-later", NOW + timedelta(seconds=30))
    await store.due.set_due("future", NOW + timedelta(minutes=5))

    due = await store.due.list_due(NOW)
    assert [entry.mailbox_id for entry in due] == ["past", "now"]
    assert due[0].due_at == NOW - timedelta(hours=3)


async def test_set_due_moves_the_row_and_remove_deletes_it(store):
    earlier = NOW - timedelta(minutes=1)
    await store.due.set_due("m1", earlier)
    await store.due.set_due("m1", NOW + timedelta(minutes=10), old_due_at=earlier)
    assert await store.due.list_due(NOW) == []
    later = NOW + timedelta(minutes=10)
    assert [e.mailbox_id for e in await store.due.list_due(later)] == ["m1"]

    await store.due.remove("m1", later)
    assert await store.due.list_due(later) == []


async def test_list_due_honours_limit(store):
    for i in range(5):
        await store.due.set_due(f"m{i}", NOW - timedelta(minutes=i))
    assert len(await store.due.list_due(NOW, limit=3)) == 3


async def _requests_for_list_due(store) -> tuple[int, int]:
    await store.due.list_due(NOW)  # the table exists and is warm before measuring
    before = store.request_count
    due = await store.due.list_due(NOW, limit=100)
    return store.request_count - before, len(due)


async def test_list_due_cost_does_not_grow_with_non_due_rows(store):
    for i in range(5):
        await store.due.set_due(f"due{i}", NOW - timedelta(minutes=i))
    baseline, found = await _requests_for_list_due(store)
    assert found == 5

    await asyncio.gather(*(
        store.due.set_due(f"later{i}", NOW + timedelta(minutes=1 + i)) for i in range(300)
    ))
    with_many, found = await _requests_for_list_due(store)
    assert found == 5
    assert with_many == baseline == 1


async def test_moving_a_mailbox_within_the_same_minute_keeps_its_index_row(store):
    from shared.domain.mailbox import Channel, Mailbox

    mailbox = Mailbox.new(owner_object_id="m-same-minute", email="m@contoso.example", now=NOW)
    mailbox.enabled = True
    status = mailbox.channels[Channel.INCOMING]
    status.enabled, status.next_due_at = True, NOW
    etag = await store.save_mailbox(mailbox, None, None)
    previous = mailbox.next_due_at
    status.next_due_at = NOW + timedelta(seconds=20)  # a new time in the same minute bucket
    await store.save_mailbox(mailbox, etag, previous)
    later = NOW + timedelta(minutes=1)
    assert [e.mailbox_id for e in await store.due.list_due(later)] == ["m-same-minute"]
