"""Resending the operations of a Dataverse $batch that came back throttled.

The client runs a batch with continue-on-error and hands back one result per operation; an
inner failure is not retried there. Failing the whole page for one throttled create would
throw away the 99 that worked, so only the operations the one resend rule allows
(`may_resend`: 429/503 always, 504 only for idempotent methods, as for a top-level request)
are sent again, plus those the service never executed, after the largest Retry-After, within
the client's retry policy (its sleep, attempts and wait budget).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from shared.dataverse import DataverseClient, DataverseOperation, DataverseResult
from shared.http.retry import IDEMPOTENT_METHODS, may_resend


def _resendable(operation: DataverseOperation, result: DataverseResult) -> bool:
    if result.error is None:
        return False
    if result.status == 0 and result.error.transient:  # no answer: never executed
        return True
    return may_resend(result.error, safe=operation.method.upper() in IDEMPOTENT_METHODS)


async def batch_with_retry(
    client: DataverseClient, operations: Sequence[DataverseOperation], *,
    attempts: int | None = None, max_wait: float | None = None,
) -> list[DataverseResult]:
    """`client.batch` with the resendable operations sent again; `attempts` and `max_wait`
    default to the client's retry policy."""
    if not operations:
        return []
    policy = client.retry
    attempts = policy.max_attempts if attempts is None else attempts
    max_wait = policy.max_total_wait if max_wait is None else max_wait
    results = await client.batch(list(operations))
    waited = 0.0
    for attempt in range(1, attempts):
        retry = [i for i, r in enumerate(results) if _resendable(operations[i], r)]
        if not retry:
            break
        hints = [e.retry_after for i in retry if (e := results[i].error) is not None
                 and e.retry_after is not None]
        delay = max(hints) if hints else policy.backoff(attempt)
        if waited + delay > max_wait:
            break
        if delay:
            await policy.sleep(delay)
        waited += delay
        again = await client.batch([operations[i] for i in retry])
        for i, result in zip(retry, again, strict=True):
            results[i] = result
    return results


def query_path(entity_set: str, *, select: Sequence[str] | None = None,
               filter: str | None = None, top: int | None = None) -> str:
    """A GET path for a batch request line: the filter percent-encoded, OData's quotes,
    parentheses and brackets left readable."""
    parts = []
    if select:
        parts.append("$select=" + ",".join(select))
    if filter:
        parts.append("$filter=" + quote(filter, safe="'(),[]"))
    if top:
        parts.append(f"$top={top}")
    return entity_set + ("?" + "&".join(parts) if parts else "")


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def in_filter(column: str, values: Sequence[str]) -> str:
    joined = ",".join(literal(v) for v in values)
    return f"Microsoft.Dynamics.CRM.In(PropertyName={literal(column)},PropertyValues=[{joined}])"


__all__ = ["batch_with_retry", "in_filter", "literal", "query_path"]
