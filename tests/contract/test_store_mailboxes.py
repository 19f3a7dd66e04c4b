"""MailboxRepository against real Azurite: CRUD, ETag races, paging, lookup by address."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from shared.domain.mailbox import Mailbox
from shared.store import AlreadyExists, ConcurrencyError, email_key

NOW = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def new_mailbox(email: str | None = None) -> Mailbox:
    return Mailbox.new(
        owner_object_id=str(uuid4()), email=email or f"{uuid4().hex[:8]}@contoso.example",
        now=NOW,
    )


async def test_insert_get_update_round_trip(store):
    mailbox = new_mailbox()
    etag = await store.mailboxes.insert(mailbox)

    read, read_etag = await store.mailboxes.get(mailbox.mailbox_id)
    assert read == mailbox
    assert read_etag == etag

    read.approve(NOW)
    new_etag = await store.mailboxes.update(read, read_etag)
    assert new_etag != read_etag
    again, _ = await store.mailboxes.get(mailbox.mailbox_id)
    assert again.approved is True


async def test_get_missing_is_none(store):
    assert await store.mailboxes.get("nobody") is None


async def test_insert_twice_conflicts(store):
    mailbox = new_mailbox()
    await store.mailboxes.insert(mailbox)
    with pytest.raises(AlreadyExists):
        await store.mailboxes.insert(mailbox)


async def test_stale_etag_is_a_concurrency_error(store):
    mailbox = new_mailbox()
    first = await store.mailboxes.insert(mailbox)
    await store.mailboxes.update(mailbox, first)
    with pytest.raises(ConcurrencyError):
        await store.mailboxes.update(mailbox, first)


async def test_update_of_deleted_row_is_a_concurrency_error(store):
    mailbox = new_mailbox()
    etag = await store.mailboxes.insert(mailbox)
    await store.mailboxes.delete(mailbox.mailbox_id)
    with pytest.raises(ConcurrencyError):
        await store.mailboxes.update(mailbox, etag)


async def test_concurrent_updates_exactly_one_wins(store):
    mailbox = new_mailbox()
    etag = await store.mailboxes.insert(mailbox)
    a = mailbox.model_copy(deep=True)
    a.display_name = "A"
    b = mailbox.model_copy(deep=True)
    b.display_name = "B"

    results = await asyncio.gather(
        store.mailboxes.update(a, etag), store.mailboxes.update(b, etag),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, str)]
    losses = [r for r in results if isinstance(r, ConcurrencyError)]
    assert len(wins) == 1 and len(losses) == 1
    stored, _ = await store.mailboxes.get(mailbox.mailbox_id)
    assert stored.display_name == ("A" if isinstance(results[0], str) else "B")


async def test_list_pages_through_every_mailbox(store):
    ids = set()
    for _ in range(7):
        mailbox = new_mailbox()
        ids.add(mailbox.mailbox_id)
        await store.mailboxes.insert(mailbox)

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        items, token = await store.mailboxes.list(page_size=3, continuation=token)
        pages += 1
        assert len(items) <= 3
        seen.extend(item.mailbox_id for item in items)
        if token is None:
            break
    assert set(seen) == ids and len(seen) == 7
    assert pages >= 3


async def test_list_filters_on_enabled_column(store):
    on = new_mailbox()
    on.approve(NOW)
    on.apply_test_results({c: "success" for c in on.channels}, NOW)
    assert on.enabled
    off = new_mailbox()
    await store.mailboxes.insert(on)
    await store.mailboxes.insert(off)

    enabled, _ = await store.mailboxes.list(enabled=True)
    disabled, _ = await store.mailboxes.list(enabled=False)
    assert [m.mailbox_id for m in enabled] == [on.mailbox_id]
    assert [m.mailbox_id for m in disabled] == [off.mailbox_id]


async def test_find_by_email_is_case_insensitive_and_hash_based(store):
    mailbox = new_mailbox("Alice.Smith@Contoso.Example")
    await store.mailboxes.insert(mailbox)
    await store.mailboxes.insert(new_mailbox())

    found = await store.mailboxes.find_by_email("alice.smith@contoso.example")
    assert found is not None and found[0].mailbox_id == mailbox.mailbox_id
    assert await store.mailboxes.find_by_email("bob@contoso.example") is None

    # the address appears in no plain column, only inside the JSON document
    table = await store.mailboxes._table()
    entity = await table.get_entity("mailbox", mailbox.mailbox_id)
    plain = {k: v for k, v in entity.items() if not k.startswith("doc")}
    assert entity["emailKey"] == email_key("alice.smith@contoso.example")
    assert not any("contoso" in str(v).lower() for v in plain.values())
