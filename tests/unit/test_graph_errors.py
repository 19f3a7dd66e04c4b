"""Graph's one error mapper: status and code -> the failure kind the engines act on."""

from __future__ import annotations

import httpx
import pytest

from shared.errors import ErrorKind
from shared.graph.errors import graph_error, graph_error_from


def response(status: int, code: str | None = None, headers: dict[str, str] | None = None,
             *, body: bytes | None = None) -> httpx.Response:
    if body is None and code is not None:
        return httpx.Response(status, headers=headers,
                              json={"error": {"code": code, "message": "for alex@contoso.com"}})
    return httpx.Response(status, headers=headers, content=body or b"")


@pytest.mark.parametrize(("status", "code", "kind"), [
    (429, "TooManyRequests", ErrorKind.TRANSIENT),
    (503, "ServiceNotAvailable", ErrorKind.TRANSIENT),
    (504, "GatewayTimeout", ErrorKind.TRANSIENT),
    # only what Graph's SDK retry handlers resend is transient: other 5xx surface at once
    (500, "InternalServerError", ErrorKind.PERMANENT),
    (501, "notSupported", ErrorKind.PERMANENT),
    (502, None, ErrorKind.PERMANENT),
    (507, None, ErrorKind.PERMANENT),
    (401, "InvalidAuthenticationToken", ErrorKind.AUTH),
    (403, "ErrorAccessDenied", ErrorKind.FORBIDDEN),
    (403, "MailboxNotEnabledForRESTAPI", ErrorKind.AUTH),
    (404, "MailboxNotEnabledForRESTAPI", ErrorKind.AUTH),
    (404, "ErrorItemNotFound", ErrorKind.NOT_FOUND),
    (409, "ErrorIrresolvableConflict", ErrorKind.CONFLICT),
    (412, "ErrorIrresolvableConflict", ErrorKind.CONFLICT),
    (410, "syncStateNotFound", ErrorKind.EXPIRED),
    (410, "resyncRequired", ErrorKind.EXPIRED),
    (400, "ErrorInvalidIdMalformed", ErrorKind.INVALID),
    (405, "ErrorInvalidRequest", ErrorKind.PERMANENT),
])
def test_status_and_code_map_to_kind(status: int, code: str | None, kind: ErrorKind) -> None:
    error = graph_error(response(status, code))
    assert error.kind is kind
    assert error.status == status
    assert error.service == "graph"
    assert error.code == code


def test_message_never_leaks_into_text() -> None:
    error = graph_error(response(404, "ErrorItemNotFound"))
    assert "alex@contoso.com" not in str(error)
    assert "alex@contoso.com" not in error.summary()
    assert error.detail == "for alex@contoso.com"  # type: ignore[attr-defined]


def test_a_400_is_invalid_with_or_without_a_body() -> None:
    # no Microsoft SDK retries a 400, bare or not: it surfaces at once
    assert graph_error(response(400)).kind is ErrorKind.INVALID
    assert graph_error(response(400, body=b"  ")).kind is ErrorKind.INVALID
    assert graph_error(response(400, "BadRequest")).kind is ErrorKind.INVALID


def test_retry_after_is_read_from_the_header() -> None:
    error = graph_error(response(429, "TooManyRequests", {"Retry-After": "12"}))
    assert error.retry_after == 12.0
    assert graph_error(response(503, "x")).retry_after is None


def test_expired_delta_carries_the_restart_location() -> None:
    restart = "https://graph.test/v1.0/users/x/mailFolders/inbox/messages/delta"
    error = graph_error(response(410, "syncStateNotFound", {"Location": restart}))
    assert error.kind is ErrorKind.EXPIRED
    assert error.location == restart


def test_inner_batch_answers_use_the_same_rules() -> None:
    error = graph_error_from(429, {"Retry-After": "4"}, {"error": {"code": "TooManyRequests"}})
    assert (error.kind, error.retry_after) == (ErrorKind.TRANSIENT, 4.0)
    assert graph_error_from(404, {}, {"error": {"code": "ErrorItemNotFound"}}).kind is \
        ErrorKind.NOT_FOUND
    assert graph_error_from(400, {}, None).kind is ErrorKind.INVALID
    assert graph_error_from(504, {}, None).kind is ErrorKind.TRANSIENT
    assert graph_error_from(501, {}, None).kind is ErrorKind.PERMANENT


def test_non_json_body_does_not_break_the_mapper() -> None:
    error = graph_error(response(502, body=b"<html>Bad gateway</html>"))
    assert error.kind is ErrorKind.PERMANENT
    assert error.code is None
    assert graph_error(response(503, body=b"<html>busy</html>")).kind is ErrorKind.TRANSIENT
