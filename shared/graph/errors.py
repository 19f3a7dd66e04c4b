"""The one place a Graph response becomes an `UpstreamError`.

Graph's error envelope is `{"error": {"code": ..., "message": ...}}`; the status says most of
it, and a few codes override the status (learn.microsoft.com/graph/errors,
/graph/throttling, /graph/delta-query-overview#synchronization-reset). Transient means what
Microsoft's Graph SDKs retry (429, 503, 504); every other status is permanent. The upstream
message is kept on `detail` for debugging but never in the error's text, which lands in logs
and status rows (Graph messages may quote addresses).
"""

from __future__ import annotations

from typing import Any

import httpx

from shared.errors import ErrorKind, UpstreamError
from shared.http.retry import TRANSIENT_STATUSES, parse_retry_after

SERVICE = "graph"

# Delta state the server no longer has: restart with a full delta (410, sometimes 400).
_EXPIRED_CODES = {"syncstatenotfound", "resyncrequired", "syncstateinvalid"}
# The mailbox cannot be reached through REST at all (on-premises, unlicensed, inactive): the
# channel needs an admin, not retries.
_MAILBOX_CODES = {"mailboxnotenabledforrestapi", "mailboxnotsupportedforrestapi",
                  "errormailboxnotenabledforrestapi"}


def _envelope(body: Any) -> tuple[str | None, str | None]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = error.get("code")
        message = error.get("message")
        return (str(code) if code else None, str(message) if message else None)
    return None, None


def graph_error_from(status: int, headers: httpx.Headers | dict[str, str], body: Any
                     ) -> UpstreamError:
    """Classify one Graph failure (a top-level response or one inner $batch response)."""
    headers = httpx.Headers(headers)
    code, message = _envelope(body)
    low = (code or "").lower()
    retry_after = parse_retry_after(headers.get("retry-after"))
    location = None
    if low in _EXPIRED_CODES or status == 410:
        kind = ErrorKind.EXPIRED
        location = headers.get("location")
    elif low in _MAILBOX_CODES:
        kind = ErrorKind.AUTH
    elif status in TRANSIENT_STATUSES:
        # what Graph's SDKs retry; any other 5xx (500, 501 "not implemented", 502) is permanent
        kind = ErrorKind.TRANSIENT
    elif status == 401:
        kind = ErrorKind.AUTH
    elif status == 403:
        kind = ErrorKind.FORBIDDEN
    elif status == 404:
        kind = ErrorKind.NOT_FOUND
    elif status in (409, 412):
        kind = ErrorKind.CONFLICT
    elif status in (400, 413, 415, 422):  # a bare 400 too: no SDK retries it
        kind = ErrorKind.INVALID
    else:
        kind = ErrorKind.PERMANENT
    error = UpstreamError(
        f"{SERVICE} {status} {code or kind.value}",
        kind=kind, status=status, code=code, retry_after=retry_after, service=SERVICE,
        location=location,
    )
    error.detail = message  # type: ignore[attr-defined]
    return error


def graph_error(response: httpx.Response) -> UpstreamError:
    """Classify a top-level Graph error response."""
    content = response.content
    empty = not content.strip()
    body: Any = None
    if not empty:
        try:
            body = response.json()
        except ValueError:
            body = None
    return graph_error_from(response.status_code, response.headers, body)


__all__ = ["graph_error", "graph_error_from"]
