"""The one place a Dataverse Web API response becomes an `UpstreamError`.

Dataverse errors are `{"error": {"code": "0x8...", "message": ...}}`. Service protection limits
(learn.microsoft.com/power-apps/developer/data-platform/api-limits) answer 429 with
`Retry-After` and one of three codes; those are transient whatever the status says, and so are
503 and 504 (what the SDK retry handlers resend); every other 5xx is permanent. The message
may quote record values, so it stays on `detail` and out of the error's text.
"""

from __future__ import annotations

from typing import Any

import httpx

from shared.errors import ErrorKind, UpstreamError
from shared.http.retry import TRANSIENT_STATUSES, parse_retry_after

SERVICE = "dataverse"

# Number of requests, combined execution time, concurrent requests.
SERVICE_PROTECTION_CODES = {"0x80072322", "0x80072321", "0x80072326"}
PRIVILEGE_CODE = "0x80040220"  # the acting user lacks a privilege


def _envelope(body: Any) -> tuple[str | None, str | None]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code, message = error.get("code"), error.get("message")
        return (str(code) if code else None, str(message) if message else None)
    return None, None


def dataverse_error_from(status: int, headers: httpx.Headers | dict[str, str], body: Any
                         ) -> UpstreamError:
    """Classify one Dataverse failure (a top-level response or one $batch part)."""
    headers = httpx.Headers(headers)
    code, message = _envelope(body)
    low = (code or "").lower()
    if status in TRANSIENT_STATUSES or low in SERVICE_PROTECTION_CODES:
        # 500/501/502 are answers, not throttling: permanent like any other status below
        kind = ErrorKind.TRANSIENT
    elif status == 401:
        kind = ErrorKind.AUTH
    elif status == 403 or low == PRIVILEGE_CODE:
        kind = ErrorKind.FORBIDDEN
    elif status == 404:
        kind = ErrorKind.NOT_FOUND
    elif status in (409, 412):
        kind = ErrorKind.CONFLICT
    elif status in (400, 413, 414, 415, 422):
        kind = ErrorKind.INVALID
    else:
        kind = ErrorKind.PERMANENT
    error = UpstreamError(
        f"{SERVICE} {status} {code or kind.value}",
        kind=kind, status=status, code=code,
        retry_after=parse_retry_after(headers.get("retry-after")), service=SERVICE,
    )
    error.detail = message  # type: ignore[attr-defined]
    return error


def dataverse_error(response: httpx.Response) -> UpstreamError:
    """Classify a top-level Dataverse error response."""
    body: Any = None
    if response.content.strip():
        try:
            body = response.json()
        except ValueError:
            body = None
    return dataverse_error_from(response.status_code, response.headers, body)


__all__ = ["dataverse_error", "dataverse_error_from"]
