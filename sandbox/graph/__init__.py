"""Microsoft Graph emulator: Outlook mail, calendar, contacts, To Do, subscriptions, $batch.

`GraphStore(world)` holds the state; `routes()` are mounted at the app root and
`control_routes()` under /_sandbox (see docs/sandbox-contract.md).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
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


def routes() -> list[BaseRoute]:
    return [*batch.routes(), *subscriptions.routes(), *mail.routes(), *calendar.routes(),
            *people.routes(),
            Route("/v1.0/{rest:path}", _unknown,
                  methods=["GET", "POST", "PATCH", "PUT", "DELETE"])]


def control_routes() -> list[BaseRoute]:
    return control.control_routes()


__all__ = ["GraphStore", "routes", "control_routes"]
