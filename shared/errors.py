"""The fixed set of upstream failure kinds every engine reasons about.

Each client maps its service's status codes into these in exactly one place (its own mapper),
so the sync engines decide retry, back-off, reset or disable without knowing which service
failed.
"""

from __future__ import annotations

from enum import Enum


class ErrorKind(str, Enum):
    TRANSIENT = "transient"  # 429, 5xx, network, timeout: back off and retry
    AUTH = "auth"  # 401, invalid_grant, missing role: mailbox needs attention
    FORBIDDEN = "forbidden"  # 403: the acting user may not do this
    NOT_FOUND = "not_found"  # 404: gone (deletes treat this as success)
    CONFLICT = "conflict"  # 409/412: someone else changed it; re-read and retry
    EXPIRED = "expired"  # 410 on delta: restart with a full delta
    INVALID = "invalid"  # 400: our request is wrong; permanent for this item
    PERMANENT = "permanent"  # anything else we cannot recover from by retrying


class UpstreamError(Exception):
    """A failure talking to Graph, Dataverse or Entra ID, already classified."""

    kind: ErrorKind = ErrorKind.PERMANENT

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind | None = None,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        service: str = "",
        location: str | None = None,
    ) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.service = service
        self.location = location

    @property
    def transient(self) -> bool:
        return self.kind is ErrorKind.TRANSIENT

    def summary(self) -> str:
        """Safe one-line text for status and logs: no tokens, bodies or addresses."""
        parts = [self.service or "upstream", self.kind.value]
        if self.status:
            parts.append(str(self.status))
        if self.code:
            parts.append(self.code)
        return " ".join(parts)
