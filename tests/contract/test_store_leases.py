"""LeaseRepository: one holder at a time, takeover after expiry, explicit time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

NOW = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


async def test_second_owner_is_refused_while_the_lease_holds(store):
    lease = await store.leases.try_acquire("m1", "worker-a", NOW, 60)
    assert lease is not None and lease.owner == "worker-a"
    assert await store.leases.try_acquire("m1", "worker-b", NOW + timedelta(seconds=59), 60) is None


async def test_expired_lease_can_be_taken_over_and_the_old_holder_loses_it(store):
    old = await store.leases.try_acquire("m1", "worker-a", NOW, 60)
    later = NOW + timedelta(seconds=61)
    new = await store.leases.try_acquire("m1", "worker-b", later, 60)
    assert new is not None and new.owner == "worker-b"

    assert await store.leases.renew(old, later, 60) is None
    await store.leases.release(old)  # lost already: a no-op, must not free worker-b's lease
    assert await store.leases.try_acquire("m1", "worker-c", later, 60) is None


async def test_release_frees_and_renew_extends(store):
    lease = await store.leases.try_acquire("m1", "worker-a", NOW, 60)
    renewed = await store.leases.renew(lease, NOW + timedelta(seconds=50), 60)
    assert renewed is not None and renewed.expires_at == NOW + timedelta(seconds=110)
    at_100s = NOW + timedelta(seconds=100)
    assert await store.leases.try_acquire("m1", "worker-b", at_100s, 60) is None

    await store.leases.release(renewed)
    assert await store.leases.try_acquire("m1", "worker-b", NOW, 60) is not None


async def test_concurrent_acquire_has_exactly_one_winner(store):
    results = await asyncio.gather(
        *(store.leases.try_acquire("fresh", f"worker-{i}", NOW, 60) for i in range(8))
    )
    assert sum(lease is not None for lease in results) == 1


async def test_concurrent_takeover_of_expired_lease_has_exactly_one_winner(store):
    await store.leases.try_acquire("m2", "worker-old", NOW, 60)
    later = NOW + timedelta(minutes=5)
    results = await asyncio.gather(
        *(store.leases.try_acquire("m2", f"worker-{i}", later, 60) for i in range(8))
    )
    assert sum(lease is not None for lease in results) == 1
