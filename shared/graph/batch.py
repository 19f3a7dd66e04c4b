"""JSON `$batch` for Graph: up to 20 requests per call, each part answered (and failing) alone.

Kept apart from the per-resource calls of `GraphClient` because it has its own retry of parts:
one throttled part never fails the batch, and only the parts the one resend rule allows
(`may_resend`: 429/503 always, 504 only when the part is safe) are sent again, after the
largest inner `Retry-After`, within the client's retry policy. Each part counts against its
mailbox's concurrency limit, so the batch carries its slots per mailbox for the gate
(learn.microsoft.com/graph/json-batching, /graph/throttling-limits#outlook-service-limits).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ErrorKind, UpstreamError
from shared.graph.concurrency import MAILBOXES_EXTENSION, batch_weights
from shared.graph.errors import SERVICE, graph_error_from
from shared.http.retry import IDEMPOTENT_METHODS, may_resend
from shared.http.service import ServiceClient

log = logging.getLogger("sss.graph")

IMMUTABLE_IDS = 'IdType="ImmutableId"'
BATCH_LIMIT = 20  # learn.microsoft.com/graph/json-batching#batch-size-limitations


@dataclass
class BatchRequest:
    """One request inside a JSON $batch; `url` is relative to the version, e.g. /users/x/..."""

    method: str
    url: str
    body: Any = None
    headers: dict[str, str] | None = None
    id: str | None = None
    depends_on: list[str] | None = None
    safe: bool | None = None  # resendable; default: idempotent methods only

    @property
    def resend_safe(self) -> bool:
        return self.safe if self.safe is not None else self.method.upper() in IDEMPOTENT_METHODS


@dataclass
class BatchResponse:
    id: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    error: UpstreamError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_for_error(self) -> BatchResponse:
        if self.error is not None:
            raise self.error
        return self


class GraphBatching(ServiceClient):
    """The `$batch` layer of GraphClient (its base class)."""

    default_headers = {"Accept": "application/json", "Prefer": IMMUTABLE_IDS}

    async def batch(self, requests: Sequence[BatchRequest]) -> list[BatchResponse]:
        """Send many requests in JSON $batch calls of at most 20, answers in request order.

        Parts the resend rule allows are sent again alone; what still fails when the budget
        runs out comes back with its transient error, and every other failure at once.
        """
        prepared: list[BatchRequest] = []
        for index, request in enumerate(requests):
            rid = request.id or str(index + 1)
            prepared.append(BatchRequest(request.method.upper(), request.url, request.body,
                                         request.headers, rid, request.depends_on,
                                         request.safe))
        if len({r.id for r in prepared}) != len(prepared):
            raise ValueError("batch request ids must be unique")
        results: dict[str, BatchResponse] = {}
        for start in range(0, len(prepared), BATCH_LIMIT):
            await self._batch_chunk(prepared[start:start + BATCH_LIMIT], results)
        return [results[str(r.id)] for r in prepared]

    async def _batch_chunk(self, chunk: list[BatchRequest],
                           results: dict[str, BatchResponse]) -> None:
        pending = chunk
        waited = 0.0
        attempt = 0
        while pending:
            attempt += 1
            answers = await self._send_batch(pending)
            results.update(answers)
            again = [r for r in pending if (error := answers[str(r.id)].error) is not None
                     and may_resend(error, safe=r.resend_safe)]
            if not again:
                return
            hints = [error.retry_after for r in again
                     if (error := answers[str(r.id)].error) is not None]
            known = [h for h in hints if h is not None]
            # Requests that failed only because one they depend on is being resent (424).
            blocked = {str(r.id) for r in again}
            again += [r for r in pending if answers[str(r.id)].status == 424
                      and blocked.intersection(r.depends_on or [])]
            delay = max(known) if known else self.retry.backoff(attempt)
            if attempt >= self.retry.max_attempts or waited + delay > self.retry.max_total_wait:
                log.warning("graph batch: %d inner requests still failing", len(again))
                return
            log.info("graph batch: resending %d of %d in %.2fs", len(again), len(chunk), delay)
            await self.retry.sleep(delay)
            waited += delay
            pending = again

    async def _send_batch(self, chunk: list[BatchRequest]) -> dict[str, BatchResponse]:
        ids = {str(r.id) for r in chunk}
        payload = []
        for r in chunk:
            headers = {"Prefer": IMMUTABLE_IDS, **(r.headers or {})}
            item: dict[str, Any] = {"id": r.id, "method": r.method, "url": r.url}
            if r.body is not None:
                headers.setdefault("Content-Type", "application/json")
                item["body"] = r.body
            item["headers"] = headers
            depends = [d for d in (r.depends_on or []) if d in ids]
            if depends:
                item["dependsOn"] = depends
            payload.append(item)
        safe = all(r.resend_safe for r in chunk)
        response = await self._send(
            "POST", "/$batch", json_body={"requests": payload}, safe=safe,
            operations=len(chunk),
            extensions={MAILBOXES_EXTENSION: batch_weights(r.url for r in chunk)})
        body = self._json(response)
        answers: dict[str, BatchResponse] = {}
        for raw in body.get("responses", []):
            rid = str(raw.get("id"))
            if rid not in ids:
                continue
            status = int(raw.get("status", 0))
            headers = {str(k): str(v) for k, v in (raw.get("headers") or {}).items()}
            inner = raw.get("body")
            error = graph_error_from(status, headers, inner) if status >= 400 else None
            answers[rid] = BatchResponse(rid, status, headers, inner, error)
        for rid in ids - answers.keys():
            answers[rid] = BatchResponse(rid, 503, {}, None, UpstreamError(
                "graph batch answer missing", kind=ErrorKind.TRANSIENT, status=503,
                service=SERVICE))
        return answers


__all__ = ["BATCH_LIMIT", "IMMUTABLE_IDS", "BatchRequest", "BatchResponse", "GraphBatching"]
