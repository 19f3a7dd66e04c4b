"""RFC 9457 problem details: every 4xx/5xx the API returns, naming the field at fault."""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"

# One title per status, so the same refusal reads the same from every endpoint.
TITLES = {400: "Invalid request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
          409: "Refused", 413: "Payload too large", 422: "Idempotency key reused",
          500: "Internal error", 502: "Upstream failure", 503: "Upstream unavailable"}


def title_of(status: int) -> str:
    return TITLES.get(status, "Refused")


class ApiError(Exception):
    """An answer other than success, raised anywhere below a handler and rendered once."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.errors = errors or []
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://sss.dev/problems/{self.title.lower().replace(' ', '-')}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.field:
            body["field"] = self.field
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


def refused(status: int, detail: str, *, field: str | None = None) -> ApiError:
    """A refusal titled by its status (a 404 always says "Not found")."""
    return ApiError(status, title_of(status), detail, field=field)


def bad_request(field: str, detail: str) -> ApiError:
    return ApiError(400, "Invalid request", f"{field}: {detail}", field=field)
