"""Graph's error envelope, raised as an exception so handlers stay linear."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from starlette.responses import Response


class GraphError(Exception):
    """An error Graph would return: status, `error.code`, `error.message`, extra headers."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error_body(code: str, message: str, client_request_id: str | None = None) -> dict[str, Any]:
    request_id = str(uuid.uuid4())
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id or request_id,
            },
        }
    }


def error_response(err: GraphError, client_request_id: str | None = None) -> Response:
    body = json.dumps(error_body(err.code, err.message, client_request_id))
    return Response(body, status_code=err.status, media_type="application/json",
                    headers=err.headers)


def not_found(what: str = "item") -> GraphError:
    return GraphError(404, "ErrorItemNotFound",
                      "The specified object was not found in the store.")


def bad_request(message: str, code: str = "ErrorInvalidRequest") -> GraphError:
    return GraphError(400, code, message)


DENIED = "Access is denied. Check credentials and try again."


def access_denied(message: str = DENIED) -> GraphError:
    return GraphError(403, "ErrorAccessDenied", message)
