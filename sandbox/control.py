"""The sandbox's own control API (`/_sandbox/...`): seed, reset, faults, counters, tokens.

Service-specific control routes (delivering mail, reading CRM rows) live with their emulator.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.entra import TokenIssuer, mint
from sandbox.world import World


def _world(request: Request) -> World:
    return request.app.state.world


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"title": "Bad request", "status": status, "detail": detail},
                        status_code=status, media_type="application/problem+json")


async def health(request: Request) -> Response:
    world = _world(request)
    return JSONResponse({"status": "ok", "tenant": world.tenant_id, "base_url": world.base_url})


async def load_seed(request: Request) -> Response:
    seed = await request.json()
    if not isinstance(seed, dict):
        return _problem(400, "the seed must be a JSON object")
    _world(request).load_seed(seed)
    return JSONResponse({"loaded": True, "users": len(_world(request).users)})


async def reset(request: Request) -> Response:
    _world(request).reset()
    return JSONResponse({"reset": True})


async def get_faults(request: Request) -> Response:
    world = _world(request)
    return JSONResponse({"rules": [r.public() for r in world.faults.rules],
                         "concurrency_enforced": world.faults.concurrency_enforced})


async def add_fault(request: Request) -> Response:
    body = await request.json()
    rules = body if isinstance(body, list) else [body]
    world = _world(request)
    for raw in rules:
        # rules name a user by UPN or object id; the middleware keys on the object id
        if isinstance(raw, dict) and raw.get("user") and world.user(str(raw["user"])):
            raw["user"] = world.user(str(raw["user"])).object_id
    try:
        added = [world.faults.add(raw).public() for raw in rules]
    except (ValueError, TypeError, KeyError) as error:
        return _problem(400, str(error))
    return JSONResponse({"rules": added}, status_code=201)


async def clear_faults(request: Request) -> Response:
    _world(request).faults.clear()
    return Response(status_code=204)


async def set_concurrency(request: Request) -> Response:
    body = await request.json()
    _world(request).faults.concurrency_enforced = bool(body.get("enforced", True))
    return JSONResponse({"concurrency_enforced": _world(request).faults.concurrency_enforced})


async def counters(request: Request) -> Response:
    world = _world(request)
    return JSONResponse({
        "requests": dict(world.counters),
        "operations": dict(world.faults.ops),
        "graph_concurrency": world.faults.concurrency(),
    })


async def reset_counters(request: Request) -> Response:
    world = _world(request)
    world.counters.clear()
    world.faults.reset_counts()
    return Response(status_code=204)


async def user_token(request: Request) -> Response:
    """Mint the token Office SSO would hand the add-in for our API (or a deliberately bad one)."""
    world = _world(request)
    issuer: TokenIssuer = request.app.state.issuer
    body: dict[str, Any] = await request.json()
    user = world.user(str(body.get("user", "")))
    if user is None:
        return _problem(400, "user: unknown user")
    overrides: dict[str, Any] = {}
    if "tenant" in body:
        overrides["tid"] = body["tenant"]
    if "issuer" in body:
        overrides["iss"] = body["issuer"]
    now = time.time() - (7200 if body.get("expired") else 0)
    scopes = body.get("scopes", [world.api_scope])
    token, lifetime = mint(
        world, issuer,
        audience=body.get("audience", world.api_audience),
        app_id=body.get("client_id", world.api_client_id),
        user=user, scopes=scopes, roles=body.get("roles") or None,
        now=now, overrides=overrides, rogue=bool(body.get("rogue_key")),
    )
    return JSONResponse({"access_token": token, "expires_in": lifetime})


async def rotate_keys(request: Request) -> Response:
    issuer: TokenIssuer = request.app.state.issuer
    issuer.rotate()
    return JSONResponse(issuer.jwks())


def routes() -> list[Route]:
    return [
        Route("/health", health),
        Route("/seed", load_seed, methods=["POST"]),
        Route("/reset", reset, methods=["POST"]),
        Route("/faults", get_faults, methods=["GET"]),
        Route("/faults", add_fault, methods=["POST"]),
        Route("/faults", clear_faults, methods=["DELETE"]),
        Route("/faults/concurrency", set_concurrency, methods=["PUT"]),
        Route("/counters", counters, methods=["GET"]),
        Route("/counters", reset_counters, methods=["DELETE"]),
        Route("/tokens/user", user_token, methods=["POST"]),
        Route("/keys/rotate", rotate_keys, methods=["POST"]),
    ]
