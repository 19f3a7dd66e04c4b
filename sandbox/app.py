"""Composes the three emulators and the control API into one Starlette app."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox import control, entra
from sandbox.faults import FaultMiddleware
from sandbox.world import World


class HangUpMiddleware:
    """A client that hangs up mid-request is no error of ours: there is nobody left to answer,
    so the request ends quietly instead of uvicorn logging "Exception in ASGI application"."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            return


def build_app(world: World) -> Starlette:
    from sandbox import dataverse, graph

    holder: dict[str, World] = {"world": world}
    app = Starlette(
        routes=[
            Mount("/_sandbox", routes=control.routes() + graph.control_routes()
                  + dataverse.control_routes()),
            *graph.routes(),
            *dataverse.routes(),
            *entra.routes(),
        ],
        middleware=[Middleware(HangUpMiddleware),
                    Middleware(FaultMiddleware, registry_getter=lambda: holder["world"])],
    )
    app.state.world = world
    app.state.issuer = entra.TokenIssuer()
    return app
