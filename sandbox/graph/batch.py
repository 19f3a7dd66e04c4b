"""JSON batching (POST /v1.0/$batch): each inner request runs through the same routes,
in-process, with the outer Authorization, its own fault decision and dependsOn handling
(learn.microsoft.com/graph/json-batching). As Graph does, up to four parts run at once, in
request order otherwise, and each counts against its mailbox's concurrency limit while it
runs (learn.microsoft.com/graph/throttling-limits#outlook-service-limits;
learn.microsoft.com/en-us/answers/questions/1660054/)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.faults import MAILBOX_CONCURRENCY_CODE, MAILBOX_CONCURRENCY_MESSAGE, graph_error_code
from sandbox.graph.api import authenticate, handler, json_body, ok
from sandbox.graph.errors import GraphError, error_body

MAX_REQUESTS = 20
PARALLEL_PARTS = 4  # Graph sends Outlook up to four parts of a batch at a time
PASS_HEADERS = ("content-type", "location", "retry-after", "preference-applied", "etag")


def _bad(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def _relative(url: str) -> str:
    if url.lower().startswith(("http://", "https://")):
        parts = urlsplit(url)
        url = parts.path + ("?" + parts.query if parts.query else "")
    if not url.startswith("/"):
        url = "/" + url
    if url.lower().startswith("/v1.0/"):
        url = url[5:]
    return url


def _user_key(path: str) -> str | None:
    parts = path.split("/")
    if len(parts) > 2 and parts[1].lower() == "users":
        return parts[2].lower()
    return None


async def _dispatch(request: Request, method: str, url: str, headers: dict[str, str],
                    body: Any) -> tuple[int, dict[str, str], Any]:
    path, _, query = url.partition("?")
    raw_body = b""
    if body is not None:
        raw_body = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    hdrs = [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
    auth = request.headers.get("authorization")
    if auth and "authorization" not in {k.lower() for k in headers}:
        hdrs.append((b"authorization", auth.encode()))
    hdrs.append((b"content-length", str(len(raw_body)).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method.upper(), "scheme": request.url.scheme,
        "path": "/v1.0" + path, "raw_path": ("/v1.0" + path).encode(),
        "query_string": query.encode(), "root_path": "", "headers": hdrs,
        "server": request.scope.get("server"), "client": request.scope.get("client"),
        "app": request.app, "state": {},
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw_body, "more_body": False}

    status, out_headers, chunks = 500, {}, []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, out_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            for k, v in message.get("headers", []):
                name = k.decode().lower()
                if name in PASS_HEADERS:
                    out_headers[name.title() if name != "etag" else "ETag"] = v.decode()
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await request.app.router(scope, receive, send)
    raw = b"".join(chunks)
    parsed: Any = None
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
    return status, out_headers, parsed


def _failed_dependency(rid: str) -> dict[str, Any]:
    return {"id": rid, "status": 424, "headers": {},
            "body": error_body("FailedDependency", "A dependency of this request failed.")}


def _throttled(rid: str, status: int, retry_after: float | None, code: str, message: str
               ) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if retry_after is not None:
        headers["Retry-After"] = str(max(0, int(round(retry_after))))
    return {"id": rid, "status": status, "headers": headers, "body": error_body(code, message)}


async def _part(request: Request, world: Any, r: dict[str, Any]) -> dict[str, Any]:
    """One part, as Outlook runs it: it counts against its mailbox's concurrency while it
    runs (a fifth at once is answered 429 MailboxConcurrency), then faults, then the route."""
    rid = str(r["id"])
    url = _relative(str(r["url"]))
    user_key = _user_key(url.partition("?")[0])
    known = world.user(user_key) if user_key else None
    user_key = known.object_id if known is not None else user_key
    faults = world.faults
    faults.count_op("graph")
    if user_key is not None and not faults.enter_mailbox(user_key):
        return _throttled(rid, 429, 1.0, MAILBOX_CONCURRENCY_CODE, MAILBOX_CONCURRENCY_MESSAGE)
    try:
        decision = faults.decide("graph", user_key)
        if decision and decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        if decision and decision.status:
            code, message = graph_error_code(decision.status)
            return _throttled(rid, decision.status, decision.retry_after, code, message)
        status, headers, resp_body = await _dispatch(
            request, str(r["method"]), url, dict(r.get("headers") or {}), r.get("body"))
    finally:
        if user_key is not None:
            faults.leave_mailbox(user_key)
    entry: dict[str, Any] = {"id": rid, "status": status, "headers": headers}
    if resp_body is not None:
        entry["body"] = resp_body
    return entry


@handler
async def batch(request: Request) -> Response:
    authenticate(request)
    world = request.app.state.world
    body = await json_body(request)
    reqs = body.get("requests")
    if not isinstance(reqs, list) or not reqs:
        raise _bad("Invalid batch payload format.")
    if len(reqs) > MAX_REQUESTS:
        raise _bad(f"The number of requests in the batch ({len(reqs)}) exceeds the maximum "
                   f"of {MAX_REQUESTS}.")
    ids = [str(r.get("id", "")) for r in reqs]
    if any(not i for i in ids) or len(set(ids)) != len(ids):
        raise _bad("Batch request ids must be present and unique.")
    for r in reqs:
        if not r.get("method") or not r.get("url"):
            raise _bad(f"Request {r.get('id')} must have a method and a url.")
        headers = {k.lower(): v for k, v in (r.get("headers") or {}).items()}
        if r.get("body") is not None and "content-type" not in headers:
            raise _bad(f"Write request id : {r['id']} does not contain Content-Type header "
                       "or body.")
        for dep in r.get("dependsOn") or []:
            if str(dep) not in ids:
                raise _bad(f"Request {r['id']} depends on unknown request {dep}.")
    results: dict[str, dict[str, Any]] = {}
    finished = {rid: asyncio.Event() for rid in ids}
    position = {rid: n for n, rid in enumerate(ids)}
    window = asyncio.Semaphore(PARALLEL_PARTS)

    async def run(r: dict[str, Any]) -> None:
        rid = str(r["id"])
        try:
            deps = [str(d) for d in r.get("dependsOn") or []]
            if any(position[d] >= position[rid] for d in deps):  # only earlier parts run first
                results[rid] = _failed_dependency(rid)
                return
            for dep in deps:
                await finished[dep].wait()
            if any(results[d]["status"] >= 400 for d in deps):
                results[rid] = _failed_dependency(rid)
                return
            async with window:
                results[rid] = await _part(request, world, r)
        finally:
            finished[rid].set()

    # parts start in request order, up to PARALLEL_PARTS at once (asyncio's semaphore wakes
    # its waiters first come, first served); a part with dependsOn waits for them outside
    await asyncio.gather(*(run(r) for r in reqs))
    return ok({"responses": [results[i] for i in ids]})


def routes() -> list[Route]:
    return [Route("/v1.0/$batch", batch, methods=["POST"])]
