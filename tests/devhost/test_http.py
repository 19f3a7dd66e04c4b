"""HTTP triggers through a real uvicorn socket and a real httpx client."""

from __future__ import annotations

import json
import logging
import uuid

import httpx
import pytest

from devhost import DevHost
from tests.devhost import sample_app


@pytest.fixture
async def client(tmp_path):
    host = DevHost(
        sample_app.app,
        port=0,
        host_json_path=tmp_path / "none.json",
        environ={},
        timers=False,
        queues=False,
    )
    await host.start()
    try:
        async with httpx.AsyncClient(base_url=host.base_url, timeout=10) as http:
            yield http
    finally:
        await host.stop()


async def test_route_params_query_and_headers(client):
    response = await client.get(
        "/api/admin/mailboxes/mbx-1?full=true&tag=a&tag=b", headers={"X-Test": "yes"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    data = response.json()
    assert data["method"] == "GET"
    assert data["route"] == {"mailbox_id": "mbx-1"}
    assert data["params"] == {"full": "true", "tag": "a,b"}
    assert data["url"].endswith("/api/admin/mailboxes/mbx-1?full=true&tag=a&tag=b")
    assert data["header"] == "yes"


async def test_post_body_reaches_async_function_with_context(client):
    body = json.dumps({"hello": "world"}).encode()
    response = await client.post(
        "/api/admin/mailboxes/7", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 201
    assert response.content == body
    assert response.headers["x-function"] == "post_mailbox"
    assert response.headers["set-cookie"] == "a=1"
    assert response.headers["content-type"].startswith("application/json")
    (call,) = sample_app.CALLS["post_mailbox"]
    assert call["body"] == body
    uuid.UUID(call["id"])


async def test_literal_route_beats_parameter_and_str_return(client):
    response = await client.get("/api/admin/mailboxes/special")
    assert response.status_code == 200
    assert response.text == "literal wins"
    assert response.headers["content-type"].startswith("text/plain")


async def test_unknown_route_wrong_method_and_failed_constraint_are_404(client):
    assert (await client.get("/api/nowhere")).status_code == 404
    assert (await client.put("/api/admin/mailboxes/1")).status_code == 404
    assert (await client.get("/api/items/not-a-guid")).status_code == 404
    assert (await client.get("/admin/mailboxes/1")).status_code == 404  # prefix required
    guid = str(uuid.uuid4())
    assert (await client.get(f"/api/items/{guid}")).json() == {"id": guid}


async def test_catch_all_any_method(client):
    response = await client.patch("/api/files/a/b/c.txt")
    assert response.json() == {"rest": "a/b/c.txt", "method": "PATCH"}


async def test_exception_is_500_without_details(client, caplog):
    with caplog.at_level(logging.INFO, logger="devhost"):
        response = await client.get("/api/boom")
    assert response.status_code == 500
    assert b"kaboom" not in response.content
    summary = [
        r.getMessage() for r in caplog.records if "Executed 'Functions.boom'" in r.getMessage()
    ]
    assert len(summary) == 1 and "Failed" in summary[0] and "-> 500" in summary[0]


async def test_function_name_decorator_and_none_is_204(client):
    response = await client.delete("/api/no-content")
    assert response.status_code == 204


async def test_one_log_line_per_invocation_without_body(client, caplog):
    with caplog.at_level(logging.INFO, logger="devhost"):
        await client.post("/api/admin/mailboxes/9", content=b"secret-body-text")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Executed")]
    assert len(lines) == 1
    assert "post_mailbox" in lines[0] and "Succeeded" in lines[0] and "httpTrigger" in lines[0]
    assert "duration=" in lines[0] and "-> 201" in lines[0]
    assert all("secret-body-text" not in r.getMessage() for r in caplog.records)


async def test_route_prefix_from_host_json(write_host_json, tmp_path):
    path = tmp_path / "host.json"
    path.write_text('{"version": "2.0", "extensions": {"http": {"routePrefix": "v1"}}}')
    async with DevHost(
        sample_app.app, port=0, host_json_path=path, environ={}, timers=False, queues=False
    ) as host:
        async with httpx.AsyncClient(base_url=host.base_url) as http:
            assert (await http.get("/v1/admin/mailboxes/special")).text == "literal wins"
            assert (await http.get("/api/admin/mailboxes/special")).status_code == 404
