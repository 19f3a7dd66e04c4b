"""Switchable faults per service and per user, applied the way the real services fail.

Tests set rules through the control API; a rule fires a bounded number of times (`count`) so
that a test can say "the next two calls are throttled" and then watch the client recover.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SERVICES = ("entra", "graph", "dataverse")
KINDS = ("status", "latency", "drop", "expire_delta", "rate_limit")

# Graph allows 4 concurrent requests per app per mailbox
# (learn.microsoft.com/graph/throttling-limits#outlook-service-limits), and each part of a
# $batch counts (learn.microsoft.com/en-us/answers/questions/1660054/).
GRAPH_CONCURRENCY_PER_MAILBOX = 4
MAILBOX_CONCURRENCY_CODE = "ApplicationThrottled"
MAILBOX_CONCURRENCY_MESSAGE = "Application is over its MailboxConcurrency limit."


@dataclass
class FaultRule:
    """One switchable fault. `count` None means every matching call until cleared."""

    service: str
    kind: str
    user: str | None = None
    status: int = 429
    retry_after: float | None = 1.0
    latency_ms: int = 0
    count: int | None = 1
    limit: int = 0  # rate_limit: requests allowed per window
    window_seconds: float = 60.0
    fired: int = 0
    _window: list[float] = field(default_factory=list)

    def matches(self, service: str, user_key: str | None) -> bool:
        if self.service != service:
            return False
        return self.user is None or (user_key is not None and self.user == user_key.lower())

    def exhausted(self) -> bool:
        return self.count is not None and self.fired >= self.count

    def public(self) -> dict[str, Any]:
        return {
            "service": self.service, "kind": self.kind, "user": self.user,
            "status": self.status, "retry_after": self.retry_after,
            "latency_ms": self.latency_ms, "count": self.count, "limit": self.limit,
            "window_seconds": self.window_seconds, "fired": self.fired,
        }


@dataclass
class FaultDecision:
    status: int | None = None
    retry_after: float | None = None
    latency_ms: int = 0
    drop: bool = False


class FaultRegistry:
    """The rules in force; consulted by the middleware and by emulators for batch parts."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self.ops: Counter[str] = Counter()
        # Graph requests (top-level and $batch parts) the service is working on, per mailbox;
        # never cleared: it falls back to zero as they finish
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()  # the most seen at once, per mailbox
        self.concurrency_throttled: Counter[str] = Counter()  # MailboxConcurrency 429s
        self.concurrency_enforced = True

    def clear(self) -> None:
        self.rules.clear()
        self.concurrency_enforced = True
        self.reset_counts()

    def reset_counts(self) -> None:
        self.ops.clear()
        self.max_in_flight.clear()
        self.concurrency_throttled.clear()

    def enter_mailbox(self, user_key: str) -> bool:
        """Count one more Graph request at this mailbox; False (and counted as throttled)
        when it would be over the limit while the limit is enforced."""
        if (self.concurrency_enforced
                and self.in_flight[user_key] >= GRAPH_CONCURRENCY_PER_MAILBOX):
            self.concurrency_throttled[user_key] += 1
            return False
        self.in_flight[user_key] += 1
        if self.in_flight[user_key] > self.max_in_flight[user_key]:
            self.max_in_flight[user_key] = self.in_flight[user_key]
        return True

    def leave_mailbox(self, user_key: str) -> None:
        self.in_flight[user_key] -= 1
        if self.in_flight[user_key] <= 0:
            del self.in_flight[user_key]

    def concurrency(self) -> dict[str, Any]:
        """What the control API reports: per mailbox object id."""
        return {"enforced": self.concurrency_enforced,
                "limit": GRAPH_CONCURRENCY_PER_MAILBOX,
                "in_flight": dict(self.in_flight),
                "max_in_flight": dict(self.max_in_flight),
                "throttled": dict(self.concurrency_throttled)}

    def add(self, raw: dict[str, Any]) -> FaultRule:
        service, kind = raw.get("service"), raw.get("kind", "status")
        if service not in SERVICES:
            raise ValueError(f"service must be one of {SERVICES}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        rule = FaultRule(
            service=service,
            kind=kind,
            user=(raw.get("user") or None) and str(raw["user"]).lower(),
            status=int(raw.get("status", 429)),
            retry_after=raw.get("retry_after", 1.0),
            latency_ms=int(raw.get("latency_ms", 0)),
            count=raw.get("count", 1 if kind in ("status", "drop", "expire_delta") else None),
            limit=int(raw.get("limit", 0)),
            window_seconds=float(raw.get("window_seconds", 60.0)),
        )
        self.rules.append(rule)
        return rule

    def _consume(self, rule: FaultRule) -> None:
        rule.fired += 1

    def decide(self, service: str, user_key: str | None) -> FaultDecision | None:
        """What to do to this call; consumes one shot of each rule that fires."""
        decision = FaultDecision()
        fired = False
        now = time.monotonic()
        for rule in self.rules:
            if not rule.matches(service, user_key) or rule.exhausted():
                continue
            if rule.kind == "latency":
                decision.latency_ms += rule.latency_ms
                fired = True
            elif rule.kind == "status" and decision.status is None:
                self._consume(rule)
                decision.status, decision.retry_after = rule.status, rule.retry_after
                fired = True
            elif rule.kind == "drop" and not decision.drop:
                self._consume(rule)
                decision.drop = True
                fired = True
            elif rule.kind == "rate_limit":
                rule._window = [t for t in rule._window if now - t < rule.window_seconds]
                if len(rule._window) >= rule.limit and decision.status is None:
                    oldest = rule._window[0] if rule._window else now
                    decision.status = 429
                    decision.retry_after = max(1.0, rule.window_seconds - (now - oldest))
                    rule.fired += 1
                    fired = True
                else:
                    rule._window.append(now)
        return decision if fired else None

    def take(self, service: str, user_key: str | None, kind: str) -> bool:
        """Consume one shot of a service-specific fault (e.g. expire_delta)."""
        for rule in self.rules:
            if rule.kind == kind and rule.matches(service, user_key) and not rule.exhausted():
                self._consume(rule)
                return True
        return False

    def count_op(self, service: str, n: int = 1) -> None:
        self.ops[service] += n


def service_of(path: str) -> str | None:
    if path.startswith("/v1.0/"):
        return "graph"
    if path.startswith("/api/data/"):
        return "dataverse"
    if path.startswith("/_sandbox"):
        return None
    return "entra"


def user_key_of(service: str, scope: Scope) -> str | None:
    """The mailbox or impersonated user a call is about, for per-user faults and limits."""
    if service == "graph":
        parts = scope["path"].split("/")
        if len(parts) > 3 and parts[2] == "users":
            return parts[3].lower()
        return None
    if service == "dataverse":
        for name, value in scope.get("headers", []):
            if name.lower() == b"callerobjectid":
                return value.decode("latin-1").lower()
    return None


def graph_error_code(status: int) -> tuple[str, str]:
    """Graph's error code and message for an injected status (learn.microsoft.com/graph/errors)."""
    return {
        429: ("TooManyRequests", "Too many requests."),
        500: ("generalException", "An unspecified error has occurred."),
        501: ("notSupported", "The requested feature isn't implemented."),
        503: ("ServiceNotAvailable", "Service is temporarily unavailable."),
        504: ("GatewayTimeout", "The gateway timed out."),
    }.get(status, ("UnknownError", "Injected fault."))


def _error_body(service: str, status: int, code: str | None = None) -> bytes:
    import json

    if service == "dataverse":
        code, message = (
            ("0x80072322", "Number of requests exceeded the limit of 6000 over time window "
             "of 300 seconds.")
            if status == 429
            else ("0x80040216", "An unexpected error occurred.")
        )
    elif service == "graph":
        code, message = ((code, MAILBOX_CONCURRENCY_MESSAGE) if code
                         else graph_error_code(status))
    else:
        return json.dumps(
            {"error": "temporarily_unavailable", "error_description": "Injected fault."}
        ).encode()
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class FaultMiddleware:
    """Counts requests, injects latency/status/drops, and enforces Graph's mailbox concurrency."""

    def __init__(self, app: ASGIApp, registry_getter: Any) -> None:
        self.app = app
        self.registry_getter = registry_getter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service = service_of(scope["path"])
        if service is None:
            await self.app(scope, receive, send)
            return
        world = self.registry_getter()
        registry: FaultRegistry = world.faults
        world.counters[service] += 1
        is_batch = scope["path"].endswith("/$batch")
        if not is_batch:
            registry.count_op(service)
        user_key = user_key_of(service, scope)
        if user_key is not None:
            # a UPN and an object id name the same mailbox: one key for limits and faults
            known = world.user(user_key)
            user_key = known.object_id if known is not None else user_key
        slot: str | None = None
        if service == "graph" and user_key and not is_batch:
            # the limit counts every request the service is working on, injected latency
            # included (it stands for time spent at the service); a $batch's parts count
            # one by one in the batch emulator
            if not registry.enter_mailbox(user_key):
                await _respond(send, service, 429, 1.0, code=MAILBOX_CONCURRENCY_CODE)
                return
            slot = user_key

        def leave() -> None:
            nonlocal slot
            if slot is not None:
                registry.leave_mailbox(slot)
                slot = None

        async def sending(message: Message) -> None:
            # done before the answer's last byte leaves: a client that has read the whole
            # answer never finds the request still counted
            if message["type"] == "http.response.body" and not message.get("more_body"):
                leave()
            await send(message)

        try:
            decision = registry.decide(service, user_key)
            if decision and decision.latency_ms:
                await asyncio.sleep(decision.latency_ms / 1000)
            if decision and decision.drop:
                await _drop(sending)
                return
            if decision and decision.status:
                await _respond(sending, service, decision.status, decision.retry_after)
                return
            await self.app(scope, receive, sending)
        finally:
            leave()


async def _respond(send: Send, service: str, status: int, retry_after: float | None, *,
                   code: str | None = None) -> None:
    body = _error_body(service, status, code)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(max(0, int(round(retry_after)))).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _drop(send: Send) -> None:
    """Promise a body and close mid-way: the client sees the connection dropped."""
    start: Message = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")],
    }
    await send(start)
    await send({"type": "http.response.body", "body": b'{"partial":', "more_body": True})
    raise ConnectionAbortedError("sandbox fault: connection dropped")
