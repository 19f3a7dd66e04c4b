"""The one retry loop both upstream clients send through.

Graph and Dataverse throttle the same way (429/503 with `Retry-After`), so one rule decides
when a request is sent again: only what Microsoft's own SDK retry handlers resend (429, 503,
504 and dropped connections), only when resending cannot duplicate a side effect, never
waiting longer in total than the policy allows. Every other status (500, 501, 502, ...) is
permanent and surfaces at once. Past the budget the caller gets the classified transient
error, and the engines back the mailbox off instead of holding a worker hostage.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from shared.errors import ErrorKind, UpstreamError

log = logging.getLogger("sss.http")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
ErrorMapper = Callable[[httpx.Response], UpstreamError]

# Methods a server applies the same way however often they arrive (RFC 9110 9.2.2). PATCH is
# not idempotent in general, but every PATCH these clients send sets absolute values.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})
# The statuses Microsoft's SDK retry handlers resend (msgraph-sdk-design
# middleware/RetryHandler.md and Kiota's RetryHandler: 429, 503, 504); the mappers classify
# exactly these as transient. A 500/501/502 is an answer, not a hiccup: resending it only
# repeats the failure and, for a write, risks doing it twice.
TRANSIENT_STATUSES = frozenset({429, 503, 504})
# Statuses that say the server refused the request before acting on it: safe to resend even
# a create. A 504 may come after the work was done, so it is resent only when safe.
REFUSED_STATUSES = frozenset({429, 503})
# Extension key carrying how many operations one HTTP request holds ($batch holds many).
OPERATIONS_EXTENSION = "sss_operations"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one upstream call tries. `sleep`/`clock` are seams for tests."""

    max_attempts: int = 4
    max_total_wait: float = 60.0
    base_delay: float = 0.5
    max_delay: float = 30.0
    sleep: Sleep = field(default=asyncio.sleep, compare=False, repr=False)
    clock: Clock = field(default=time.monotonic, compare=False, repr=False)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter for retry number `attempt` (1-based).

        Half the delay is fixed so retries never bunch at zero; half is random so many workers
        throttled together do not come back together.
        """
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(0, attempt - 1)))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass
class RequestStats:
    """HTTP requests and operations sent by a client (a $batch is one request, N operations)."""

    http_requests: int = 0
    operations: int = 0

    async def on_request(self, request: httpx.Request) -> None:
        """httpx request event hook: counts every request actually sent, retries included."""
        self.http_requests += 1
        self.operations += int(request.extensions.get(OPERATIONS_EXTENSION, 1))

    def reset(self) -> None:
        self.http_requests = 0
        self.operations = 0


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def transport_error(service: str, error: httpx.TransportError) -> UpstreamError:
    """A network failure as the transient error the engines understand (no URL: it may hold
    an address)."""
    return UpstreamError(
        f"{service or 'upstream'} network failure: {type(error).__name__}",
        kind=ErrorKind.TRANSIENT, service=service, code=type(error).__name__,
    )


def never_sent(error: httpx.TransportError) -> bool:
    """True when the request provably never reached the server, so any request may be resent."""
    return isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def may_resend(error: UpstreamError, *, safe: bool) -> bool:
    """The one resend rule, for whole requests and for the parts of a `$batch`: a transient
    failure, and either a safe request or one the server refused before acting on it."""
    return error.transient and (safe or error.status in REFUSED_STATUSES)


def with_operations(request: httpx.Request, operations: int) -> httpx.Request:
    """Mark a request as carrying `operations` operations (for RequestStats)."""
    request.extensions = {**request.extensions, OPERATIONS_EXTENSION: operations}
    return request


async def send_with_retry(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    policy: RetryPolicy,
    error_mapper: ErrorMapper,
    service: str,
    safe: bool | None = None,
    deadline: float | None = None,
) -> httpx.Response:
    """Send `request`, resending it on transient failures the policy allows.

    Returns the final response, successful or not, unless it is a transient failure: those
    raise the mapped `UpstreamError` (kind transient, with `retry_after`) once attempts or the
    wait budget run out. `safe` says whether resending can duplicate a side effect; by default
    idempotent methods are safe and POST is not. An unsafe request is still resent when the
    server refused it (429/503) or it never left (connect errors); after a 504 or a dropped
    connection it may have been acted on, so it is not. `deadline` is an absolute
    `policy.clock()` time no wait may run past (add-in calls have their own).
    """
    if safe is None:
        safe = request.method.upper() in IDEMPOTENT_METHODS
    waited = 0.0
    attempt = 0
    while True:
        attempt += 1
        failure: UpstreamError
        retryable: bool
        try:
            response = await client.send(request)
        except httpx.TransportError as error:
            failure = transport_error(service, error)
            retryable = safe or never_sent(error)
            if not retryable:
                log.warning("%s %s not resent after %s: not idempotent", service,
                            request.method, type(error).__name__)
                raise failure from error
            cause: BaseException | None = error
        else:
            if response.status_code < 400:
                return response
            failure = error_mapper(response)
            if not failure.transient:
                return response
            cause = None
            if not may_resend(failure, safe=safe):
                raise failure
        delay = failure.retry_after if failure.retry_after is not None else policy.backoff(attempt)
        if failure.retry_after is None:
            failure.retry_after = delay
        if attempt >= policy.max_attempts:
            log.warning("%s %s transient after %d attempts (%s)", service, request.method,
                        attempt, failure.summary())
            raise failure from cause
        if waited + delay > policy.max_total_wait or (
            deadline is not None and policy.clock() + delay > deadline
        ):
            log.warning("%s %s transient, wait budget spent after %d attempts (%s)", service,
                        request.method, attempt, failure.summary())
            raise failure from cause
        log.info("%s %s retry %d in %.2fs (%s)", service, request.method, attempt, delay,
                 failure.summary())
        await policy.sleep(delay)
        waited += delay


__all__ = [
    "IDEMPOTENT_METHODS",
    "REFUSED_STATUSES",
    "RequestStats",
    "RetryPolicy",
    "TRANSIENT_STATUSES",
    "may_resend",
    "never_sent",
    "parse_retry_after",
    "send_with_retry",
    "transport_error",
    "with_operations",
]
