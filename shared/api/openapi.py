"""The OpenAPI 3.1 document of every /api route, generated from the pydantic models.

Generated, not hand-written, so the document cannot drift from what the handlers validate;
`python -m shared.api.openapi > docs/openapi.json` refreshes the committed copy and a test
checks it is current and that it lists exactly the HTTP routes of function_app.py. Served
without authentication at /api/openapi.json (it holds no secrets, and clients need it to learn
how to authenticate).
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from shared.api import addin_models as am
from shared.api import admin_models as adm
from shared.api.http import ApiRequest, ApiResponse

VERSION = "1.0.0"
REF = "#/components/schemas/{model}"


class Problem(BaseModel):
    """RFC 9457 problem details; `field` names the input at fault."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    errors: list[dict[str, Any]] | None = None
    correlation_id: str | None = Field(None, description="500 only: the request id, also in "
                                       "`x-request-id`, to quote when reporting it.")


class PendingResponse(BaseModel):
    intent_id: str
    state: str = Field(..., description="Always `pending`: poll GET /api/intents/{id}.")


class MailboxList(BaseModel):
    items: list[adm.MailboxView]
    continuation: str | None = None


class ImportResult(BaseModel):
    created: list[str]
    existing: list[str]
    skipped: list[dict[str, str]]


@dataclass
class Op:
    route: str  # as in function_app.py, without /api
    method: str
    function: str
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    path_params: tuple[str, ...] = ()
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    auth: bool = True
    idempotency: bool = False


ADMIN = "admin"
ADDIN = "add-in"
_ITEM_ERRORS = {403: Problem, 404: Problem}

OPERATIONS: list[Op] = [
    Op("admin/mailboxes", "GET", "admin_list_mailboxes", "List mailboxes", ADMIN,
       query=adm.ListQuery, responses={200: MailboxList}),
    Op("admin/mailboxes", "POST", "admin_register_mailbox", "Register a mailbox", ADMIN,
       body=adm.RegisterMailbox, responses={201: adm.MailboxView, 404: Problem, 409: Problem}),
    Op("admin/mailboxes/import", "POST", "admin_import_mailboxes",
       "Register the mailboxes of CRM users", ADMIN, body=adm.ImportMailboxes,
       responses={200: ImportResult}),
    Op("admin/mailboxes/{mailbox_id}", "GET", "admin_get_mailbox", "Read a mailbox", ADMIN,
       path_params=("mailbox_id",), responses={200: adm.MailboxView, 404: Problem}),
    Op("admin/mailboxes/{mailbox_id}", "PATCH", "admin_update_mailbox",
       "Change a mailbox's configuration", ADMIN, body=adm.UpdateMailbox,
       path_params=("mailbox_id",), responses={200: adm.MailboxView, 404: Problem, 409: Problem}),
    Op("admin/mailboxes/{mailbox_id}/approve", "POST", "admin_approve_mailbox",
       "Approve a mailbox's address", ADMIN, path_params=("mailbox_id",),
       responses={200: adm.MailboxView, 404: Problem, 409: Problem}),
    Op("admin/mailboxes/{mailbox_id}/test-enable", "POST", "admin_test_enable_mailbox",
       "Test every configured channel and enable the mailbox", ADMIN,
       path_params=("mailbox_id",), responses={200: adm.MailboxView, 404: Problem, 409: Problem}),
    Op("admin/mailboxes/{mailbox_id}/disable", "POST", "admin_disable_mailbox",
       "Disable a mailbox", ADMIN, body=adm.DisableMailbox, path_params=("mailbox_id",),
       responses={200: adm.MailboxView, 404: Problem, 409: Problem}),
    Op("track", "POST", "addin_track", "Track an email or appointment", ADDIN,
       body=am.TrackRequest, idempotency=True,
       responses={200: am.ActionResponse, 202: PendingResponse, 409: Problem, 422: Problem,
                  **_ITEM_ERRORS}),
    Op("regarding", "POST", "addin_set_regarding", "Set or change the regarding record",
       ADDIN, body=am.SetRegardingRequest, idempotency=True,
       responses={200: am.ActionResponse, 202: PendingResponse, 409: Problem, 422: Problem,
                  **_ITEM_ERRORS}),
    Op("untrack", "POST", "addin_untrack", "Untrack an item", ADDIN, body=am.UntrackRequest,
       idempotency=True,
       responses={200: am.ActionResponse, 202: PendingResponse, 409: Problem, 422: Problem,
                  **_ITEM_ERRORS}),
    Op("status", "GET", "addin_status", "Tracking status of a message or meeting", ADDIN,
       query=am.StatusQuery, responses={200: am.TrackingStatus, 404: Problem}),
    Op("should-track", "POST", "addin_should_track",
       "Would the caller's tracking option track such an email?", ADDIN,
       body=am.ShouldTrackRequest, responses={200: am.ShouldTrackResponse}),
    Op("lookup", "POST", "addin_lookup", "CRM records of email addresses", ADDIN,
       body=am.LookupRequest, responses={200: am.LookupResponse}),
    Op("me/options", "GET", "addin_get_options", "The caller's own options", ADDIN,
       responses={200: am.MyOptions, 404: Problem}),
    Op("me/options", "PATCH", "addin_update_options", "Change the caller's own options",
       ADDIN, body=am.UpdateMyOptions, responses={200: am.MyOptions, **_ITEM_ERRORS}),
    Op("intents/{intent_id}", "GET", "addin_get_intent", "State of an intent", ADDIN,
       path_params=("intent_id",), responses={200: am.IntentView, 404: Problem}),
    Op("openapi.json", "GET", "openapi_document", "This document", "meta",
       responses={200: None}, auth=False),
]

_PATH_SCHEMAS = {
    "mailbox_id": {"type": "string", "minLength": 1, "maxLength": 64,
                   "pattern": "^[A-Za-z0-9-]+$"},
    "intent_id": {"type": "string", "pattern": "^[0-9a-f]{40}$"},
}


def _models() -> list[tuple[type[BaseModel], str]]:
    """(model, mode): request bodies validate, responses serialize."""
    seen: list[tuple[type[BaseModel], str]] = [(Problem, "serialization")]
    for op in OPERATIONS:
        pairs = [(op.body, "validation")] + [(m, "serialization") for m in op.responses.values()]
        for model, mode in pairs:
            if model is not None and (model, mode) not in seen:
                seen.append((model, mode))
    return seen


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        any_of = prop.pop("anyOf", None)
        if any_of:  # `X | None` in a query string: the parameter is simply optional
            prop.update(next(s for s in any_of if s.get("type") != "null"))
        prop.pop("default", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required,
                                 "schema": prop}
        if description:
            param["description"] = description
        out.append(param)
    return out


def build_document() -> dict[str, Any]:
    """The whole document, deterministic (sorted keys when dumped)."""
    keys, defs = models_json_schema(_models(), ref_template=REF)  # type: ignore[arg-type]
    schemas = defs.get("$defs", {})

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return dict(keys[(model, mode)])  # type: ignore[index]

    problem_ref = ref(Problem, "serialization")
    problem = {"application/problem+json": {"schema": problem_ref}}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        operation: dict[str, Any] = {"operationId": op.function, "summary": op.summary,
                                     "tags": [op.tag], "responses": {}}
        parameters = [{"name": p, "in": "path", "required": True, "schema": _PATH_SCHEMAS[p]}
                      for p in op.path_params]
        if op.query is not None:
            parameters += _query_parameters(op.query)
        if op.idempotency:
            parameters.append({
                "name": "Idempotency-Key", "in": "header", "required": False,
                "description": "1 to 128 printable ASCII characters; the same key returns the "
                               "same answer. Default: derived from user, item, action and "
                               "regarding.",
                "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,128}$"}})
        if parameters:
            operation["parameters"] = parameters
        if op.body is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": ref(op.body, "validation")}}}
        for status, model in sorted(op.responses.items()):
            description = {200: "OK", 201: "Created", 202: "Accepted: queued, see the intent",
                           403: "Forbidden", 404: "Not found", 409: "Conflict",
                           422: "Idempotency key reused"}.get(status, "Answer")
            if model is Problem:
                operation["responses"][str(status)] = {"description": description,
                                                       "content": problem}
            elif model is None:
                operation["responses"][str(status)] = {
                    "description": description,
                    "content": {"application/json": {"schema": {"type": "object"}}}}
            else:
                content: dict[str, Any] = {"application/json": {
                    "schema": ref(model, "serialization")}}
                operation["responses"][str(status)] = {"description": description,
                                                       "content": content}
        if op.body is not None or op.query is not None or op.path_params:
            operation["responses"]["400"] = {"description": "Malformed input (names the "
                                             "field)", "content": problem}
        if op.body is not None:
            operation["responses"]["413"] = {"description": "Body too large",
                                             "content": problem}
        operation["responses"]["500"] = {"description": "Unexpected failure (carries a "
                                         "correlation id)", "content": problem}
        if op.auth:
            operation["security"] = [{"entra": []}]
            operation["responses"]["401"] = {
                "description": "Missing or invalid token", "content": problem,
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}}
            operation["responses"]["403"] = {
                "description": "Forbidden (a missing scope or role also carries "
                               "`WWW-Authenticate: Bearer error=\"insufficient_scope\"`)",
                "content": problem}
            operation["responses"]["502"] = {"description": "Upstream failure",
                                             "content": problem}
            operation["responses"]["503"] = {"description": "Upstream unavailable",
                                             "content": problem}
        else:
            operation["security"] = []
        paths.setdefault(f"/api/{op.route}", {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Server-side synchronization API",
            "version": VERSION,
            "description": "Admin API (`/api/admin/...`, app role ADMIN_ROLE) and Outlook "
                           "add-in API (delegated scope API_SCOPE). Every call carries an "
                           "Entra ID bearer token issued for API_AUDIENCE.",
        },
        "servers": [{"url": "/"}],
        "security": [{"entra": []}],
        "tags": [{"name": ADMIN}, {"name": ADDIN}, {"name": "meta"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"entra": {"type": "http", "scheme": "bearer",
                                          "bearerFormat": "JWT",
                                          "description": "Entra ID access token for "
                                                         "API_AUDIENCE."}},
        },
    }


def render() -> str:
    return json.dumps(build_document(), indent=2, sort_keys=True) + "\n"


@functools.cache
def _encoded() -> bytes:
    """The document as served: a pure function of the code, built once (about 15 ms) and
    immutable, so an unauthenticated caller cannot make every request pay for it."""
    return json.dumps(build_document(), default=str).encode()


async def serve(request: ApiRequest) -> ApiResponse:
    """GET /api/openapi.json, without authentication."""
    return ApiResponse(200, _encoded(), headers={"Cache-Control": "public, max-age=300"})


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
