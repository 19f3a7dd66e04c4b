"""HTTP face of the emulator: bearer auth, the calling user, then the Api or `$batch`.

Who a call acts as (impersonate-another-user-web-api): an app-only token must belong to an app
registered as an application user (else 403 "not a member of the organization"); with
`CallerObjectId` it acts as that Entra user (unknown: 403, disabled: 400), and records it
creates carry `createdonbehalfby` = the application user. A delegated user token acts as its
user; such a user holds no prvActOnBehalfOfAnotherUser, so a CallerObjectId naming somebody
else is refused (0x8004A110), and naming themselves is a no-op.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.dataverse import errors
from sandbox.dataverse.api import Api, ApiRequest
from sandbox.dataverse.batch import BatchRunner
from sandbox.dataverse.errors import DataverseError
from sandbox.dataverse.query import Prefer
from sandbox.dataverse.store import Caller, CrmStore
from sandbox.entra import InvalidToken, Principal, authenticate

METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]


def resolve_caller(world: Any, store: CrmStore, principal: Principal,
                   caller_object_id: str | None) -> Caller:
    oid = (caller_object_id or "").strip().lower() or None
    if principal.kind == "user":
        user = principal.user
        assert user is not None
        if oid and oid != user.object_id:
            raise DataverseError(403, errors.CANNOT_IMPERSONATE,
                                 "User does not have the privilege to act on behalf another "
                                 "user.")
        return Caller(user.systemuser_id, user, fault_key=oid)
    app = world.apps.get((principal.app_id or "").lower())
    if app is None or not app.dataverse_application_user or app.client_id not in store.app_users:
        raise DataverseError(403, errors.NOT_ORG_MEMBER, "The user is not a member of the "
                             "organization.")
    app_user = store.app_users[app.client_id]
    if oid is None:
        return Caller(app_user)
    try:
        uuid.UUID(oid)
    except ValueError as error:
        raise errors.bad_request(f"CallerObjectId '{caller_object_id}' is not a valid "
                                 f"Guid.") from error
    user = world.users.get(oid)
    if user is None:
        raise DataverseError(403, errors.NOT_ORG_MEMBER,
                             f"The user with ObjectId = {oid} is not a member of the "
                             f"organization.")
    if user.disabled:
        raise DataverseError(400, errors.USER_DISABLED,
                             f"The user with SystemUserId={user.systemuser_id} in "
                             f"OrganizationContext={world.tenant_id} is disabled. Disabled "
                             f"users cannot access the system. Consider enabling this user.")
    return Caller(user.systemuser_id, user, on_behalf_of=app_user, fault_key=oid)


def _unauthorized(world: Any, reason: str) -> Response:
    challenge = (f"Bearer authorization_uri={world.base_url}/{world.tenant_id}/oauth2/"
                 f"authorize, resource_id={world.base_url}/")
    return Response(status_code=401, headers={"WWW-Authenticate": challenge,
                                              "x-ms-diagnostics": reason})


async def endpoint(request: Request) -> Response:
    world = request.app.state.world
    store: CrmStore = world.crm
    try:
        principal = authenticate(request, world.base_url)
    except InvalidToken as error:
        return _unauthorized(world, error.reason)
    outer_oid = request.headers.get("callerobjectid")
    try:
        caller = resolve_caller(world, store, principal, outer_oid)
    except DataverseError as error:
        return error.response()
    path = request.path_params.get("path", "")
    body = await request.body()
    api = Api(store, world.base_url)
    headers = {k.lower(): v for k, v in request.headers.items()}
    if path.rstrip("/") == "$batch":
        if request.method != "POST":
            return errors.error_response(405, errors.INVALID_ARGUMENT, "$batch takes POST.")
        runner = BatchRunner(
            api, world,
            lambda oid: resolve_caller(world, store, principal, oid or outer_oid),
            outer_oid)
        try:
            status, out_headers, payload = await runner.run(
                body, headers.get("content-type", ""), Prefer.parse(headers.get("prefer")))
        except DataverseError as error:
            return error.response()
        return Response(payload, status_code=status, headers=out_headers)
    response = api.handle(ApiRequest(request.method, path, request.url.query, headers, body,
                                     caller))
    return Response(response.encoded(), status_code=response.status, headers=response.headers)


def routes() -> list[Route]:
    return [
        Route("/api/data/v9.2", endpoint, methods=METHODS),
        Route("/api/data/v9.2/{path:path}", endpoint, methods=METHODS),
    ]
