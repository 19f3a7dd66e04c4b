"""The per-mailbox gate: Graph's 4 concurrent requests per mailbox kept on the client side.

Plain asyncio and httpx.MockTransport; every wait is on an event the test controls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from shared.graph import BatchRequest, GraphClient
from shared.graph.concurrency import (
    MAILBOXES_EXTENSION,
    GatedTransport,
    MailboxGate,
    batch_weights,
    mailbox_of,
)
from shared.http.retry import RetryPolicy

ALEX = "a1a1a1a1-0000-4000-8000-000000000001"


async def turns(n: int = 5) -> None:
    """Let every ready task run (no timing involved)."""
    for _ in range(n):
        await asyncio.sleep(0)


def test_mailbox_of_reads_the_users_segment() -> None:
    assert mailbox_of(f"/v1.0/users/{ALEX}/messages/x") == ALEX
    assert mailbox_of("/v1.0/users/Alex%40Contoso.com/mailFolders/inbox") == "alex@contoso.com"
    assert mailbox_of("/users/alex@contoso.com?$select=id") == "alex@contoso.com"
    assert mailbox_of("/users/ALEX@contoso.com") == "alex@contoso.com"
    assert mailbox_of("/v1.0/$batch") is None
    assert mailbox_of("/v1.0/subscriptions/abc") is None


def test_batch_weights_count_parts_per_mailbox_up_to_four() -> None:
    urls = [f"/users/{ALEX}/messages/{n}" for n in range(20)]
    urls += ["/users/megan@contoso.com/messages/1", "/users/MEGAN@contoso.com/messages/2",
             "/subscriptions"]
    assert batch_weights(urls) == {ALEX: 4, "megan@contoso.com": 2}


async def test_at_most_four_at_once_per_mailbox_and_others_unaffected() -> None:
    gate = MailboxGate()
    release = asyncio.Event()
    running: list[str] = []
    peak = 0

    async def request(key: str) -> None:
        nonlocal peak
        weight = await gate.acquire(key)
        running.append(key)
        peak = max(peak, running.count(ALEX))
        await release.wait()
        running.remove(key)
        gate.release(key, weight)

    tasks = [asyncio.create_task(request(ALEX)) for _ in range(7)]
    other = asyncio.create_task(request("megan"))
    await turns()
    assert gate.in_flight(ALEX) == 4 and gate.waiting(ALEX) == 3
    assert gate.in_flight("megan") == 1  # another mailbox has its own four
    release.set()
    await asyncio.gather(*tasks, other)
    assert peak == 4
    assert gate.in_flight(ALEX) == 0 and gate._slots == {}  # noqa: SLF001 - no state left


async def test_a_batch_takes_its_weight_and_is_not_overtaken() -> None:
    gate = MailboxGate()
    order: list[str] = []
    single = await gate.acquire(ALEX)  # one request in flight: three slots free

    async def take(name: str, weight: int) -> int:
        got = await gate.acquire(ALEX, weight)
        order.append(name)
        return got

    batch = asyncio.create_task(take("batch", 20))  # 20 parts hold at most 4 slots
    await turns()
    assert not batch.done()  # needs four, three are free
    late = asyncio.create_task(take("late", 1))
    await turns()
    assert not late.done()  # first come, first served: it queues behind the batch
    gate.release(ALEX, single)
    assert await batch == 4
    await turns()
    assert not late.done() and gate.in_flight(ALEX) == 4
    gate.release(ALEX, 4)
    assert await late == 1
    assert order == ["batch", "late"]
    gate.release(ALEX, 1)
    assert gate.in_flight(ALEX) == 0


async def test_cancelled_waiter_leaves_nothing_behind_and_unblocks_the_queue() -> None:
    gate = MailboxGate()
    held = [await gate.acquire(ALEX) for _ in range(3)]
    batch = asyncio.create_task(gate.acquire(ALEX, 4))
    await turns()
    small = asyncio.create_task(gate.acquire(ALEX, 1))
    await turns()
    assert not small.done()  # behind the batch
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert await small == 1  # the cancelled head no longer holds it back
    for weight in [*held, 1]:
        gate.release(ALEX, weight)
    assert gate.in_flight(ALEX) == 0 and gate.waiting(ALEX) == 0
    assert gate._slots == {}  # noqa: SLF001


async def test_granted_then_cancelled_gives_the_slots_back() -> None:
    gate = MailboxGate()
    first = await gate.acquire(ALEX, 4)
    waiter = asyncio.create_task(gate.acquire(ALEX, 2))
    await turns()
    gate.release(ALEX, first)  # grants the waiter's future before it runs again
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert gate.in_flight(ALEX) == 0


async def test_acquire_all_takes_every_mailbox_or_none() -> None:
    gate = MailboxGate()
    full = await gate.acquire("b", 4)
    both = asyncio.create_task(gate.acquire_all({"b": 1, "a": 2}))
    await turns()
    assert gate.in_flight("a") == 2 and not both.done()  # key order: a, then b
    both.cancel()
    with pytest.raises(asyncio.CancelledError):
        await both
    assert gate.in_flight("a") == 0  # what it held is given back
    gate.release("b", full)


# --- the transport ----------------------------------------------------------------------------


def graph(handler: Callable[[httpx.Request], httpx.Response], gate: MailboxGate,
          retry: RetryPolicy | None = None) -> GraphClient:
    return GraphClient("https://graph.test/v1.0", None, transport=httpx.MockTransport(handler),
                       mailbox_gate=gate, retry=retry)


async def test_a_slot_is_held_until_the_answer_is_read_and_released_on_errors() -> None:
    gate = MailboxGate()
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(gate.in_flight(ALEX))
        if request.url.path.endswith("/boom"):
            raise httpx.ConnectError("refused")
        if request.url.path.endswith("/bad"):
            return httpx.Response(404, json={"error": {"code": "ErrorItemNotFound"}})
        return httpx.Response(200, json={"id": "inbox"})

    client = graph(handler, gate, RetryPolicy(max_attempts=1))
    assert (await client.get_mail_folder(ALEX, "inbox"))["id"] == "inbox"
    with pytest.raises(Exception):  # noqa: B017 - mapped transport error
        await client.get_json(f"/users/{ALEX}/boom")
    with pytest.raises(Exception):  # noqa: B017 - mapped 404
        await client.get_json(f"/users/{ALEX}/bad")
    assert seen == [1, 1, 1]
    assert gate.in_flight(ALEX) == 0


async def test_a_streamed_answer_keeps_its_slot_until_read_to_the_end() -> None:
    gate = MailboxGate()
    while_reading: list[int] = []

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            for chunk in (b'{"id":', b'"inbox"}'):
                while_reading.append(gate.in_flight(ALEX))
                yield chunk

    client = graph(lambda request: httpx.Response(200, stream=Body()), gate)
    assert (await client.get_mail_folder(ALEX, "inbox"))["id"] == "inbox"
    assert while_reading == [1, 1]
    assert gate.in_flight(ALEX) == 0


async def test_cancelled_request_gives_its_slot_back() -> None:
    gate = MailboxGate()
    entered = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        entered.set()
        await asyncio.Event().wait()  # never answers
        raise AssertionError

    transport = GatedTransport(httpx.MockTransport(slow), gate)
    async with httpx.AsyncClient(transport=transport) as http:
        task = asyncio.create_task(http.get(f"https://graph.test/v1.0/users/{ALEX}/messages"))
        await entered.wait()
        assert gate.in_flight(ALEX) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert gate.in_flight(ALEX) == 0


async def test_no_slot_is_held_during_a_retry_backoff() -> None:
    gate = MailboxGate()
    at_sleep: list[int] = []
    calls = 0

    async def sleep(seconds: float) -> None:
        at_sleep.append(gate.in_flight(ALEX))

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(429, headers={"Retry-After": "1"},
                                  json={"error": {"code": "TooManyRequests"}})
        return httpx.Response(200, json={"id": "inbox"})

    client = graph(handler, gate, RetryPolicy(sleep=sleep))
    await client.get_mail_folder(ALEX, "inbox")
    assert calls == 2 and at_sleep == [0]


async def test_a_batch_holds_min_of_parts_and_four_per_mailbox() -> None:
    gate = MailboxGate()
    seen: list[tuple[int, int, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        import json

        seen.append((gate.in_flight(ALEX), gate.in_flight("megan@contoso.com"),
                     request.extensions.get(MAILBOXES_EXTENSION)))
        parts = json.loads(request.content)["requests"]
        return httpx.Response(200, json={"responses": [
            {"id": p["id"], "status": 200, "body": {}} for p in parts]})

    client = graph(handler, gate)
    requests = [BatchRequest("GET", f"/users/{ALEX}/messages/{n}") for n in range(6)]
    requests.append(BatchRequest("GET", "/users/megan@contoso.com/messages/1"))
    answers = await client.batch(requests)
    assert all(a.ok for a in answers)
    assert seen == [(4, 1, {ALEX: 4, "megan@contoso.com": 1})]
    assert gate.in_flight(ALEX) == 0 and gate.in_flight("megan@contoso.com") == 0
