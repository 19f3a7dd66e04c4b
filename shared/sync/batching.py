"""Resending the operations of a Dataverse $batch that came back throttled.

The client runs a batch with continue-on-error and hands back one result per operation; an
inner 429/503 is not retried there. Failing the whole page for one throttled create would
throw away the 99 that worked, so only the transient ones are resent, after the largest
Retry-After, within the same bounded budget as a top-level call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from urllib.parse import quote

from shared.dataverse import DataverseClient, DataverseOperation, DataverseResult
from shared.errors import ErrorKind


async def batch_with_retry(
    client: DataverseClient, operations: Sequence[DataverseOperation], *,
    attempts: int = 4, max_wait: float = 60.0,
) -> list[DataverseResult]:
    if not operations:
        return []
    results = await client.batch(list(operations))
    waited = 0.0
    for _ in range(attempts - 1):
        transient = [(i, r.error) for i, r in enumerate(results)
                     if r.error is not None and r.error.kind is ErrorKind.TRANSIENT]
        if not transient:
            break
        retry = [i for i, _ in transient]
        delay = max((error.retry_after or 0.0 for _, error in transient), default=0.0)
        delay = max(0.0, min(delay, 30.0))
        if waited + delay > max_wait:
            break
        if delay:
            await asyncio.sleep(delay)
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
