"""Graph's limit of 4 concurrent requests per app and mailbox, kept on our side.

Outlook answers a fifth concurrent request to one mailbox with 429 `ApplicationThrottled`
("MailboxConcurrency"), and Graph dispatches up to four parts of a `$batch` at once, each
counting against its mailbox (learn.microsoft.com/graph/throttling-limits#outlook-service-limits;
learn.microsoft.com/en-us/answers/questions/1660054/). Waiting for a slot here costs nothing
at the service; a 429 costs a round trip and a `Retry-After`. So every Graph request of a
worker passes one `MailboxGate`: a request holds one slot of its mailbox, a `$batch` holding
k parts for a mailbox holds min(k, 4) of its slots, from sending until its answer is read.

The gate sits in the transport, under the retry loop: a backoff sleep holds no slot, and a
request waiting for a slot holds none. Mailboxes are keyed by the `/users/{id or UPN}` path
segment, lower-cased; an object id and a UPN naming the same mailbox are two keys (the client
cannot tell they are one without asking Graph), so the engines address a mailbox by one form
(its mailbox id). A request cancelled in flight gives its slots back at once, although Graph
may still be working on it: keeping them would cost a task per request; the rare 429 that
follows is resent by the retry loop.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from urllib.parse import unquote

import httpx

MAILBOX_CONCURRENCY = 4
# Request extension carrying a $batch's slots per mailbox ({mailbox: weight}).
MAILBOXES_EXTENSION = "sss_mailboxes"


def mailbox_of(path: str) -> str | None:
    """The mailbox a Graph path (or a $batch part's URL) addresses, lower-cased, or None."""
    start = path.find("/users/")
    if start < 0:
        return None
    start += 7
    end = len(path)
    for stop in ("/", "?"):
        found = path.find(stop, start)
        if 0 <= found < end:
            end = found
    key = unquote(path[start:end]).lower()
    return key or None


def batch_weights(urls: Iterable[str], limit: int = MAILBOX_CONCURRENCY) -> dict[str, int]:
    """Slots a $batch of these part URLs holds per mailbox: Graph runs at most `limit` at once."""
    counts = Counter(key for key in map(mailbox_of, urls) if key is not None)
    return {key: min(count, limit) for key, count in counts.items()}


class _Slots:
    __slots__ = ("free", "waiters")

    def __init__(self, free: int) -> None:
        self.free = free
        self.waiters: deque[tuple[int, asyncio.Future[None]]] = deque()


class MailboxGate:
    """A weighted, first-come-first-served semaphore per mailbox (one per worker and loop).

    First come, first served: a batch waiting for four slots is not overtaken by single
    requests arriving after it. Idle mailboxes leave no state behind.
    """

    def __init__(self, limit: int = MAILBOX_CONCURRENCY) -> None:
        self.limit = limit
        self._slots: dict[str, _Slots] = {}

    def in_flight(self, key: str) -> int:
        slots = self._slots.get(key)
        return 0 if slots is None else self.limit - slots.free

    def waiting(self, key: str) -> int:
        slots = self._slots.get(key)
        return 0 if slots is None else len(slots.waiters)

    async def acquire(self, key: str, weight: int = 1) -> int:
        """Take `weight` slots of `key` (capped at the limit); returns what to release."""
        weight = max(1, min(weight, self.limit))
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = _Slots(self.limit)
        if not slots.waiters and slots.free >= weight:
            slots.free -= weight
            return weight
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (weight, future)
        slots.waiters.append(entry)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self.release(key, weight)  # granted just as we were cancelled: give it back
            else:
                try:
                    slots.waiters.remove(entry)
                except ValueError:
                    pass
                self._wake(key, slots)  # we may have been the head holding others back
            raise
        return weight

    def release(self, key: str, weight: int) -> None:
        slots = self._slots.get(key)
        if slots is None:
            return
        slots.free += weight
        self._wake(key, slots)

    async def acquire_all(self, weights: Mapping[str, int]) -> list[tuple[str, int]]:
        """Slots in several mailboxes, taken in key order (so two batches never wait on each
        other crosswise); all or none: on cancellation what was taken is given back."""
        held: list[tuple[str, int]] = []
        try:
            for key in sorted(weights):
                held.append((key, await self.acquire(key, weights[key])))
        except BaseException:
            self.release_all(held)
            raise
        return held

    def release_all(self, held: Iterable[tuple[str, int]]) -> None:
        for key, weight in held:
            self.release(key, weight)

    def _wake(self, key: str, slots: _Slots) -> None:
        waiters = slots.waiters
        while waiters:
            weight, future = waiters[0]
            if future.done():  # cancelled, not yet removed
                waiters.popleft()
                continue
            if weight > slots.free:
                break
            waiters.popleft()
            slots.free -= weight
            future.set_result(None)
        if not waiters and slots.free >= self.limit and self._slots.get(key) is slots:
            del self._slots[key]


class _Releasing(httpx.AsyncByteStream):
    """A response body that gives its slots back once it is read and closed."""

    def __init__(self, inner: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class GatedTransport(httpx.AsyncBaseTransport):
    """Wraps a transport so each request holds its mailbox's slots while it is in flight."""

    def __init__(self, inner: httpx.AsyncBaseTransport, gate: MailboxGate) -> None:
        self.inner = inner
        self.gate = gate

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        weights: Mapping[str, int] | None = request.extensions.get(MAILBOXES_EXTENSION)
        gate = self.gate
        if weights is None:
            key = mailbox_of(request.url.path)
            if key is None:
                return await self.inner.handle_async_request(request)
            held = [(key, await gate.acquire(key))]
        elif weights:
            held = await gate.acquire_all(weights)
        else:
            return await self.inner.handle_async_request(request)
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException:
            gate.release_all(held)
            raise
        stream = response.stream
        if response.is_closed or not isinstance(stream, httpx.AsyncByteStream):
            gate.release_all(held)  # already read in full (a body given whole, as in tests)
            return response
        response.stream = _Releasing(stream, lambda: gate.release_all(held))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


__all__ = ["MAILBOXES_EXTENSION", "MAILBOX_CONCURRENCY", "GatedTransport", "MailboxGate",
           "batch_weights", "mailbox_of"]
