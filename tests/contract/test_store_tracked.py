"""TrackedMessageRepository: concurrent claims create exactly one owner of the activity."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from shared.store import ConcurrencyError, Regarding

NOW = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
MESSAGE_ID = "<CAF=abc/def+123@mail.contoso.example>"


async def test_concurrent_claims_have_one_winner_and_losers_see_its_row(store):
    claims = await asyncio.gather(
        *(store.tracked.claim(MESSAGE_ID, f"mailbox-{i}", NOW, item_id=f"item-{i}")
          for i in range(6))
    )
    winners = [c for c in claims if c.won]
    assert len(winners) == 1
    winner = winners[0].message.claimed_by
    for claim in claims:
        assert claim.message.claimed_by == winner
        assert claim.message.state == "pending"


async def test_update_with_etag_records_the_activity(store):
    claim = await store.tracked.claim(MESSAGE_ID, "mailbox-a", NOW)
    message = claim.message.model_copy(update={
        "state": "tracked", "activity_id": "act-1", "tracked_by": "user-1", "tracked_at": NOW,
        "regarding": Regarding(table="account", id="acc-1", name="Contoso"),
    })
    await store.tracked.update(message, claim.etag)
    with pytest.raises(ConcurrencyError):
        await store.tracked.update(message, claim.etag)

    later = await store.tracked.claim(MESSAGE_ID, "mailbox-b", NOW)
    assert not later.won
    assert later.message.activity_id == "act-1"
    assert later.message.regarding.name == "Contoso"
    stored, _ = await store.tracked.get(MESSAGE_ID)
    assert stored == message


async def test_many_copies_fit_in_one_row(store):
    claim = await store.tracked.claim(MESSAGE_ID, "mailbox-0", NOW)
    copies = {f"mailbox-{i:04d}-{'x' * 30}": "AAMk" + "y" * 150 for i in range(250)}
    message = claim.message.model_copy(update={"copies": copies})
    await store.tracked.update(message, claim.etag)  # 200 copy columns, the rest as JSON
    stored, _ = await store.tracked.get(MESSAGE_ID)
    assert stored.copies == copies


def _patch(message_id: str, mailbox: str, **extra):
    from shared.store import TrackedPatch

    return TrackedPatch(internet_message_id=message_id, activity_id="a-" + message_id,
                        mailbox_id=mailbox, item_id=f"item-{mailbox}", **extra)


async def test_a_page_of_rows_costs_one_transaction_per_bucket(store):
    from shared.store.tracked import BUCKETS

    ids = [f"<m{i}@contoso.example>" for i in range(100)]
    await store.tracked.get(ids[0])  # the table exists: only the writes are counted
    before = store.request_count
    await store.tracked.merge_many([_patch(m, "mailbox-a", tracked_by="owner-a", tracked_at=NOW)
                                    for m in ids])
    assert store.request_count - before <= BUCKETS
    stored = await asyncio.gather(*(store.tracked.get(m) for m in ids))
    assert all(s is not None and s[0].state == "tracked" and s[0].activity_id == "a-" + m
               and s[0].copies == {"mailbox-a": "item-mailbox-a"}
               for m, s in zip(ids, stored, strict=True))


async def test_merges_keep_who_tracked_it_and_every_mailboxs_copy(store):
    await store.tracked.merge_many([_patch(MESSAGE_ID, "mailbox-a", tracked_by="owner-a",
                                           tracked_at=NOW,
                                           regarding=Regarding(table="account", id="r1"))])
    # two other mailboxes record their copies at the same time, knowing only the activity
    await asyncio.gather(store.tracked.merge_many([_patch(MESSAGE_ID, "mailbox-b")]),
                         store.tracked.merge_many([_patch(MESSAGE_ID, "mailbox-c")]))
    stored, _ = await store.tracked.get(MESSAGE_ID)
    assert stored.tracked_by == "owner-a" and stored.tracked_at == NOW
    assert stored.regarding == Regarding(table="account", id="r1")
    assert set(stored.copies) == {"mailbox-a", "mailbox-b", "mailbox-c"}


async def test_drop_copy_forgets_one_copy_and_keeps_the_activity(store):
    await store.tracked.merge_many([_patch(MESSAGE_ID, m) for m in ("mailbox-a", "mailbox-b")])
    after = await store.tracked.drop_copy(MESSAGE_ID, "mailbox-b")
    stored, _ = await store.tracked.get(MESSAGE_ID)
    assert after == stored
    assert stored.state == "tracked" and stored.copies == {"mailbox-a": "item-mailbox-a"}


async def test_untrack_markers_are_per_mailbox(store):
    from shared.store.untracked import marker_key

    await store.untracked.add(["mailbox-a", "mailbox-b"], MESSAGE_ID, NOW)
    await store.untracked.remove("mailbox-b", MESSAGE_ID)
    assert await store.untracked.keys("mailbox-a") == {marker_key(MESSAGE_ID)}
    assert await store.untracked.keys("mailbox-b") == set()
