"""The shared retry loop: what is resent, how long it waits, when it gives up.

Runs against httpx.MockTransport with a fake sleep, so no test waits for real.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable

import httpx
import pytest

from shared.dataverse.errors import dataverse_error
from shared.errors import ErrorKind, UpstreamError
from shared.graph.errors import graph_error
from shared.http.retry import (
    RequestStats,
    RetryPolicy,
    parse_retry_after,
    send_with_retry,
    with_operations,
)


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def scripted(*steps: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[str]]:
    """A transport answering with `steps` in order (exceptions are raised), recording methods."""
    calls: list[str] = []
    queue = list(steps)

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        step = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(step, Exception):
            raise step
        return step

    return httpx.MockTransport(handler), calls


def policy(fake: FakeTime, **kwargs: float) -> RetryPolicy:
    options = {"max_attempts": 4, "max_total_wait": 30.0, "base_delay": 0.5, "max_delay": 8.0}
    options.update(kwargs)
    return RetryPolicy(**options, sleep=fake.sleep, clock=fake.clock)  # type: ignore[arg-type]


async def send(transport: httpx.MockTransport, retry: RetryPolicy, method: str = "GET",
               *, safe: bool | None = None, deadline: float | None = None,
               mapper: Callable[[httpx.Response], UpstreamError] = graph_error
               ) -> httpx.Response:
    async with httpx.AsyncClient(transport=transport, base_url="https://graph.test") as client:
        request = client.build_request(method, "/v1.0/users/x/messages",
                                       json={"a": 1} if method == "POST" else None)
        return await send_with_retry(client, request, policy=retry, error_mapper=mapper,
                                     service="graph", safe=safe, deadline=deadline)


def throttled(retry_after: str | None = "2", status: int = 429) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(status, headers=headers,
                          json={"error": {"code": "TooManyRequests", "message": "slow down"}})


async def test_honours_retry_after_seconds_then_succeeds() -> None:
    fake = FakeTime()
    transport, calls = scripted(throttled("2"), throttled("3"), httpx.Response(200, json={}))
    response = await send(transport, policy(fake))
    assert response.status_code == 200
    assert fake.sleeps == [2.0, 3.0]
    assert len(calls) == 3


async def test_honours_retry_after_http_date() -> None:
    fake = FakeTime()
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    transport, _ = scripted(throttled(when, 503), httpx.Response(200))
    await send(transport, policy(fake))
    assert len(fake.sleeps) == 1
    assert 3.0 <= fake.sleeps[0] <= 5.0


async def test_backoff_with_jitter_without_retry_after() -> None:
    fake = FakeTime()
    transport, _ = scripted(throttled(None, 503), throttled(None, 504), throttled(None, 429),
                            httpx.Response(200))
    await send(transport, policy(fake, base_delay=1.0))
    first, second, third = fake.sleeps
    assert 0.5 <= first <= 1.0
    assert 1.0 <= second <= 2.0
    assert 2.0 <= third <= 4.0


async def test_total_wait_budget_raises_transient_with_retry_after() -> None:
    fake = FakeTime()
    transport, calls = scripted(throttled("2"), throttled("20"))
    with pytest.raises(UpstreamError) as caught:
        await send(transport, policy(fake, max_total_wait=10.0))
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert caught.value.status == 429
    assert caught.value.retry_after == 20.0
    assert fake.sleeps == [2.0]  # never slept past the budget
    assert len(calls) == 2


async def test_attempts_exhausted_raises_transient() -> None:
    fake = FakeTime()
    transport, calls = scripted(throttled("0", 503))
    with pytest.raises(UpstreamError) as caught:
        await send(transport, policy(fake, max_attempts=3))
    assert caught.value.transient
    assert len(calls) == 3


async def test_deadline_bounds_the_wait() -> None:
    fake = FakeTime()
    transport, calls = scripted(throttled("5"))
    with pytest.raises(UpstreamError):
        await send(transport, policy(fake), deadline=fake.now + 3)
    assert fake.sleeps == []
    assert len(calls) == 1


@pytest.mark.parametrize("mapper", [graph_error, dataverse_error])
@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 412,
                                    500, 501, 502, 505, 507])
async def test_non_transient_answers_are_returned_not_retried(
    status: int, mapper: Callable[[httpx.Response], UpstreamError]
) -> None:
    # what Microsoft's SDK retry handlers do not resend (anything but 429/503/504) is an
    # answer: one request, no wait, even for a GET that could safely be sent again
    fake = FakeTime()
    transport, calls = scripted(httpx.Response(status, json={"error": {"code": "X"}}),
                                httpx.Response(200))
    response = await send(transport, policy(fake), mapper=mapper)
    assert response.status_code == status
    assert calls == ["GET"]
    assert fake.sleeps == []


@pytest.mark.parametrize("mapper", [graph_error, dataverse_error])
@pytest.mark.parametrize("status", [429, 503, 504])
async def test_what_the_sdks_retry_is_retried(
    status: int, mapper: Callable[[httpx.Response], UpstreamError]
) -> None:
    fake = FakeTime()
    transport, calls = scripted(throttled("1", status), httpx.Response(200))
    assert (await send(transport, policy(fake), mapper=mapper)).status_code == 200
    assert calls == ["GET", "GET"]
    assert fake.sleeps == [1.0]


async def test_empty_body_400_is_not_retried() -> None:
    fake = FakeTime()
    transport, calls = scripted(httpx.Response(400), httpx.Response(200))
    response = await send(transport, policy(fake))
    assert response.status_code == 400
    assert graph_error(response).kind is ErrorKind.INVALID
    assert len(calls) == 1


@pytest.mark.parametrize("error", [
    httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
    httpx.ReadError("connection reset"),
    httpx.ReadTimeout("timed out"),
])
async def test_transport_errors_on_get_are_retried(error: Exception) -> None:
    fake = FakeTime()
    transport, calls = scripted(error, httpx.Response(200))
    assert (await send(transport, policy(fake))).status_code == 200
    assert len(calls) == 2


@pytest.mark.parametrize("error", [httpx.ReadTimeout("timed out"),
                                   httpx.RemoteProtocolError("dropped")])
async def test_ambiguous_failure_of_a_create_is_not_resent(error: Exception) -> None:
    fake = FakeTime()
    transport, calls = scripted(error, httpx.Response(201))
    with pytest.raises(UpstreamError) as caught:
        await send(transport, policy(fake), "POST")
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert calls == ["POST"]


async def test_create_marked_safe_is_resent() -> None:
    fake = FakeTime()
    transport, calls = scripted(httpx.ReadError("reset"), httpx.Response(201))
    assert (await send(transport, policy(fake), "POST", safe=True)).status_code == 201
    assert calls == ["POST", "POST"]


async def test_create_that_never_left_is_resent() -> None:
    fake = FakeTime()
    transport, calls = scripted(httpx.ConnectError("refused"), httpx.Response(201))
    assert (await send(transport, policy(fake), "POST")).status_code == 201
    assert len(calls) == 2


async def test_create_refused_with_429_or_503_is_resent_but_504_is_not() -> None:
    fake = FakeTime()
    for refused in (429, 503):
        transport, calls = scripted(throttled("1", refused), httpx.Response(201))
        assert (await send(transport, policy(fake), "POST")).status_code == 201
        assert len(calls) == 2

    # a gateway timeout may come after the create landed: not resent, surfaced as transient
    transport, calls = scripted(throttled(None, 504), httpx.Response(201))
    with pytest.raises(UpstreamError) as caught:
        await send(transport, policy(fake), "POST")
    assert (caught.value.status, caught.value.kind) == (504, ErrorKind.TRANSIENT)
    assert calls == ["POST"]

    # a 500 is an answer: returned at once, permanent
    transport, calls = scripted(throttled(None, 500), httpx.Response(201))
    response = await send(transport, policy(fake), "POST")
    assert response.status_code == 500
    assert graph_error(response).kind is ErrorKind.PERMANENT
    assert calls == ["POST"]


async def test_stats_count_requests_and_operations() -> None:
    stats = RequestStats()
    transport, _ = scripted(throttled("0"), httpx.Response(200))
    fake = FakeTime()
    async with httpx.AsyncClient(transport=transport, base_url="https://graph.test",
                                 event_hooks={"request": [stats.on_request]}) as client:
        request = with_operations(client.build_request("POST", "/v1.0/$batch", json={}), 7)
        await send_with_retry(client, request, policy=policy(fake), error_mapper=graph_error,
                              service="graph", safe=True)
    assert stats.http_requests == 2  # the throttled one counts too
    assert stats.operations == 14


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


def test_backoff_is_capped() -> None:
    retry = RetryPolicy(base_delay=1.0, max_delay=4.0)
    for attempt in range(1, 12):
        assert 0 < retry.backoff(attempt) <= 4.0
    assert retry.backoff(10) >= 2.0
