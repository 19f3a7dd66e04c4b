"""CursorRepository and ItemLinkRepository: conditional writes and unsafe-character ids."""

from __future__ import annotations

import asyncio

import pytest

from shared.store import AlreadyExists, ConcurrencyError, ItemLink

# Exchange ids contain '/', '+' and '='; none of those may appear in a table key.
ITEM_ID = "AAMkAGI2TG93AAA/+bc=#?\\x=="
RECORD_ID = "6F1C3B2A-0000-0000-0000-00000000ABCD"


async def test_cursor_create_read_replace_and_race(store):
    assert await store.cursors.get("m1", "incoming:inbox") is None
    etag = await store.cursors.put("m1", "incoming:inbox", "https://graph/delta?token=1", None)
    cursor = await store.cursors.get("m1", "incoming:inbox")
    assert cursor.value == "https://graph/delta?token=1" and cursor.etag == etag

    results = await asyncio.gather(
        store.cursors.put("m1", "incoming:inbox", "a", etag),
        store.cursors.put("m1", "incoming:inbox", "b", etag),
        return_exceptions=True,
    )
    assert sum(isinstance(r, str) for r in results) == 1
    assert sum(isinstance(r, ConcurrencyError) for r in results) == 1

    with pytest.raises(ConcurrencyError):
        await store.cursors.put("m1", "incoming:inbox", "c", None)  # exists already


async def test_cursor_streams_with_folder_ids_and_reset(store):
    stream = f"incoming:folder:{ITEM_ID}"
    await store.cursors.put("m1", stream, "link-1", None)
    await store.cursors.put("m1", "incoming:inbox", "link-2", None)
    await store.cursors.put("m2", "incoming:inbox", "other", None)
    assert set(await store.cursors.list("m1")) == {stream, "incoming:inbox"}

    await store.cursors.reset("m1", stream)
    assert await store.cursors.get("m1", stream) is None
    await store.cursors.reset("m1")
    assert await store.cursors.list("m1") == {}
    assert (await store.cursors.get("m2", "incoming:inbox")).value == "other"


def link(**changes) -> ItemLink:
    values = dict(
        mailbox_id="m1", channel="act", item_id=ITEM_ID, record_table="appointment",
        record_id=RECORD_ID, change_key="ck1", record_etag="W/\"1\"",
        field_hashes={"subject": "h1", "start": "h2"},
    )
    values.update(changes)
    return ItemLink(**values)


async def test_link_lookup_from_both_sides(store):
    etag = await store.links.upsert(link())
    by_item = await store.links.get_by_item("m1", "act", ITEM_ID)
    by_record = await store.links.get_by_record("m1", "act", RECORD_ID.lower())
    assert by_item == (link(), etag)
    assert by_record == (link(), etag)
    assert await store.links.get_by_item("m1", "incoming", ITEM_ID) is None


async def test_link_create_twice_and_stale_update_fail(store):
    etag = await store.links.upsert(link())
    with pytest.raises(AlreadyExists):
        await store.links.upsert(link())
    new_etag = await store.links.upsert(link(change_key="ck2"), etag)
    with pytest.raises(ConcurrencyError):
        await store.links.upsert(link(change_key="ck3"), etag)
    assert (await store.links.get_by_item("m1", "act", ITEM_ID))[1] == new_etag


async def test_relinked_record_leaves_no_stale_lookup(store):
    etag = await store.links.upsert(link())
    other = "11111111-2222-3333-4444-555555555555"
    await store.links.upsert(link(record_id=other), etag)
    assert await store.links.get_by_record("m1", "act", RECORD_ID) is None
    assert (await store.links.get_by_record("m1", "act", other))[0].record_id == other


async def test_link_delete_and_list(store):
    await store.links.upsert(link())
    await store.links.upsert(link(item_id="second", record_id="r2"))
    assert {lk.item_id for lk, _ in await store.links.list("m1", "act")} == {ITEM_ID, "second"}

    await store.links.delete("m1", "act", ITEM_ID)
    await store.links.delete("m1", "act", ITEM_ID)  # gone already: fine
    assert await store.links.get_by_item("m1", "act", ITEM_ID) is None
    assert await store.links.get_by_record("m1", "act", RECORD_ID) is None
    assert [lk.item_id for lk, _ in await store.links.list("m1", "act")] == ["second"]


async def test_very_long_ids_are_hashed_into_keys(store):
    long_id = "A/" * 600
    await store.links.upsert(link(item_id=long_id))
    assert (await store.links.get_by_item("m1", "act", long_id))[0].item_id == long_id
