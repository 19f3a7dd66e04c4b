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
    await store.tracked.update(message, claim.etag)  # > 32K chars: split over doc chunks
    stored, _ = await store.tracked.get(MESSAGE_ID)
    assert stored.copies == copies
