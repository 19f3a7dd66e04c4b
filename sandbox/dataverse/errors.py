"""Dataverse's error shape and the codes the emulator raises.

Body: `{"error": {"code": "0x...", "message": "..."}}` (compose-http-requests-handle-errors);
codes from the web service error code list and the pages named beside each constant.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

UNKNOWN_PROPERTY = "0x80060888"        # Could not find a property named ... / bad query
PICKLIST_OUT_OF_RANGE = "0x8004431A"   # option value outside the valid range
MAX_LENGTH = "0x80044331"              # length exceeded (execute-batch-operations example)
INVALID_ARGUMENT = "0x80040203"        # generic invalid argument
NOT_FOUND = "0x80040217"               # ObjectDoesNotExist
CONCURRENCY = "0x80060882"             # ConcurrencyVersionMismatch (If-Match)
DUPLICATE = "0x80040237"               # DuplicateRecord (If-None-Match: * upsert)
ACCESS_DENIED = "0x80040220"           # SecLib::AccessCheckEx failed / privilege denied
FIELD_READ = "0x8004F504"              # AttributePermissionReadIsMissing
FIELD_UPDATE = "0x8004F507"            # AttributePermissionUpdateIsMissingDuringUpdate
FIELD_CREATE = "0x8004F502"            # AttributePrivilegeCreateIsMissing
CANNOT_IMPERSONATE = "0x8004A110"      # CannotActOnBehalfOfAnotherUser
NOT_ORG_MEMBER = "0x80072560"          # The user is not a member of the organization.
USER_DISABLED = "0x80040225"           # The user ... is disabled
UNAUTHORIZED = "0x80072560"
THROTTLE_REQUESTS = "0x80072322"
THROTTLE_TIME = "0x80072321"
THROTTLE_CONCURRENCY = "0x80072326"
UNEXPECTED = "0x80040216"

THROTTLE_MESSAGES = {
    THROTTLE_REQUESTS: "Number of requests exceeded the limit of 6000 over time window of 300 "
                       "seconds.",
    THROTTLE_TIME: "Combined execution time of incoming requests exceeded limit of 1,200,000 "
                   "milliseconds over time window of 300 seconds. Decrease number of concurrent "
                   "requests or reduce the duration of requests and try again later.",
    THROTTLE_CONCURRENCY: "Number of concurrent requests exceeded the limit of 52.",
}


class DataverseError(Exception):
    """Raised anywhere in a handler; rendered as Dataverse's JSON error."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}

    def response(self) -> Response:
        return error_response(self.status, self.code, self.message, self.headers)


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status_code=status, headers={"OData-Version": "4.0", **(headers or {})},
                     media_type="application/json; odata.metadata=minimal")


def bad_request(message: str, code: str = INVALID_ARGUMENT) -> DataverseError:
    return DataverseError(400, code, message)


def unknown_property(name: str, logical: str) -> DataverseError:
    return DataverseError(400, UNKNOWN_PROPERTY,
                          f"Could not find a property named '{name}' on type "
                          f"'Microsoft.Dynamics.CRM.{logical}'.")


def not_found(logical: str, record_id: str) -> DataverseError:
    return DataverseError(404, NOT_FOUND, f"{logical} With Id = {record_id} Does Not Exist")


def throttled(code: str, retry_after: float | None) -> DataverseError:
    headers = {"Retry-After": str(max(0, round(retry_after)))} if retry_after is not None else {}
    return DataverseError(429, code, THROTTLE_MESSAGES.get(code, "Too many requests."), headers)
