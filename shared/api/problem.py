"""RFC 9457 problem details: every 4xx/5xx the API returns, naming the field at fault."""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"


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
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.errors = errors or []
        self.headers = headers or {}

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
        return body


def bad_request(field: str, detail: str) -> ApiError:
    return ApiError(400, "Invalid request", f"{field}: {detail}", field=field)


