"""Other FunctionApp shapes the host must run unchanged: ASGI apps, blueprints, Out bindings."""

from __future__ import annotations

import azure.functions as func
import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def test_asgi_function_app_catch_all_route(make_host):
    async def hello(request):
        return JSONResponse({"path": request.url.path, "q": request.query_params.get("q")})

    inner = Starlette(routes=[Route("/api/hello/{name}", hello)])
    app = func.AsgiFunctionApp(app=inner, http_auth_level=func.AuthLevel.ANONYMOUS)
    host = make_host(app, port=0, host_json_path=None, environ={}, timers=False, queues=False)
    await host.start()
    async with httpx.AsyncClient(base_url=host.base_url) as client:
        response = await client.get("/api/hello/world?q=1")
    assert response.status_code == 200
    assert response.json() == {"path": "/api/hello/world", "q": "1"}


async def test_blueprint_and_named_http_output(make_host):
    bp = func.Blueprint()

    @bp.route(route="bp/{x:int}", methods=["GET"], binding_arg_name="res")
    def from_blueprint(req: func.HttpRequest, res: func.Out[func.HttpResponse]) -> None:
        res.set(func.HttpResponse(f"x={req.route_params['x']}", status_code=202))

    app = func.FunctionApp()
    app.register_functions(bp)
    host = make_host(app, port=0, host_json_path=None, environ={}, timers=False, queues=False)
    await host.start()
    async with httpx.AsyncClient(base_url=host.base_url) as client:
        response = await client.get("/api/bp/5")
        assert (response.status_code, response.text) == (202, "x=5")
        assert (await client.get("/api/bp/five")).status_code == 404


async def test_app_already_indexed_elsewhere(make_host):
    """A test may call app.get_functions() itself before building a DevHost."""
    app = func.FunctionApp()

    @app.route(route="ping")
    def ping(req: func.HttpRequest) -> str:
        return "pong"

    assert [f.get_function_name() for f in app.get_functions()] == ["ping"]
    host = make_host(app, port=0, host_json_path=None, environ={}, timers=False, queues=False)
    assert list(host.functions) == ["ping"]
