"""Microsoft Graph emulator: Outlook mail, calendar, contacts, To Do, subscriptions, $batch.

`GraphStore(world)` holds the state; `routes()` are mounted at the app root and
`control_routes()` under /_sandbox (see docs/sandbox-contract.md).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.graph import batch, calendar, control, mail, people, subscriptions
from sandbox.graph.errors import GraphError, error_response
from sandbox.graph.store import GraphStore as _Store


class GraphStore(_Store):
    def __init__(self, world: object) -> None:
        super().__init__(world)
        self.notifier = subscriptions.make_notifier(self)


async def _unknown(request: Request) -> Response:
    segment = request.url.path.rsplit("/", 1)[-1]
    return error_response(GraphError(400, "BadRequest",
                                     f"Resource not found for the segment '{segment}'."))


USER_READ_ROLES = {"User.Read.All", "User.ReadBasic.All", "Directory.Read.All"}


async def _get_user(request: Request) -> Response:
    """GET /users/{id | userPrincipalName}: needs User.Read.All (app) or the user themself."""
    from sandbox.graph.api import authenticate

    try:
        principal = authenticate(request)
        user = request.app.state.world.user(request.path_params["user"])
        if user is None:
            raise GraphError(404, "Request_ResourceNotFound",
                             f"Resource '{request.path_params['user']}' does not exist.")
        own = principal.kind == "user" and principal.user is not None and \
            principal.user.object_id == user.object_id
        if not own and not (set(principal.roles) & USER_READ_ROLES):
            raise GraphError(403, "Authorization_RequestDenied",
                             "Insufficient privileges to complete the operation.")
    except GraphError as err:
        return error_response(err)
    return JSONResponse({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
        "id": user.object_id, "displayName": user.display_name, "mail": user.upn,
        "userPrincipalName": user.upn, "accountEnabled": not user.disabled,
    })


def routes() -> list[BaseRoute]:
    return [*batch.routes(), *subscriptions.routes(), *mail.routes(), *calendar.routes(),
            *people.routes(), Route("/v1.0/users/{user}", _get_user, methods=["GET"]),
            Route("/v1.0/{rest:path}", _unknown,
                  methods=["GET", "POST", "PATCH", "PUT", "DELETE"])]


def control_routes() -> list[BaseRoute]:
    return control.control_routes()


__all__ = ["GraphStore", "routes", "control_routes"]
