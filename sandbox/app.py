"""Composes the three emulators and the control API into one Starlette app."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from sandbox import control, entra
from sandbox.faults import FaultMiddleware
from sandbox.world import World


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
        middleware=[Middleware(FaultMiddleware, registry_getter=lambda: holder["world"])],
    )
    app.state.world = world
    app.state.issuer = entra.TokenIssuer()
    return app
