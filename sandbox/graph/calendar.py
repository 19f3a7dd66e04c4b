"""Events: CRUD, instances, cancel, calendarView, and events/calendarView delta."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.graph import delta, ops
from sandbox.graph.api import (
    Ctx,
    check_if_match,
    handler,
    json_body,
    list_page,
    no_content,
    ok,
    page_size,
    user_context,
)
from sandbox.graph.errors import GraphError, not_found
from sandbox.graph.mail import _both
from sandbox.graph.serialize import filter_record, parse_local, render
from sandbox.graph.store import Item

U = "/v1.0/users/{user}"
KEY = "event:*"


def _event(ctx: Ctx, eid: str) -> Item:
    item = ctx.mbx.find(eid, "event")
    if item is None:
        raise not_found()
    return item


def _occurrence(ctx: Ctx, eid: str) -> tuple[Item, dt.datetime] | None:
    if "_OCC" not in eid:
        return None
    master_id, _, stamp = eid.rpartition("_OCC")
    master = ctx.mbx.find(master_id, "event")
    if master is None:
        return None
    try:
        when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return master, when


def _render_occ(ctx: Ctx, master: Item, occ: dt.datetime) -> dict[str, Any]:
    fake = Item("event", "", "", "", ops.occurrence_view(master, occ, ""))
    fake.change_key, fake.created, fake.modified = (master.change_key, master.created,
                                                    master.modified)
    fake.extra = master.extra
    out = render(ctx.mbx, fake, ctx.view)
    out["id"] = ops.occurrence_id(ctx.view.item_id(master), occ)
    if "seriesMasterId" in out or not ctx.view.select:
        out["seriesMasterId"] = ctx.view.item_id(master)
    return out


def _window(ctx: Ctx, params: dict[str, str]) -> tuple[dt.datetime, dt.datetime]:
    win = delta.window(params)
    if win is None:
        raise GraphError(400, "ErrorInvalidParameter",
                         "This request requires a time window specified by the query string "
                         "parameters StartDateTime and EndDateTime.")
    return win


def _overlaps(item: Item, a: dt.datetime, b: dt.datetime) -> bool:
    s, e = parse_local(item.data.get("start")), parse_local(item.data.get("end"))
    return bool(s and e and s < b and e > a) or bool(s and e and s == e and a <= s < b)


def _expand(ctx: Ctx, item: Item, a: dt.datetime, b: dt.datetime) -> list[dict[str, Any]]:
    if item.data.get("type") == "seriesMaster":
        return [_render_occ(ctx, item, occ) for occ in ops.occurrences(item, a, b)]
    return [render(ctx.mbx, item, ctx.view)] if _overlaps(item, a, b) else []


@handler
async def list_events(request: Request) -> Response:
    ctx = user_context(request, "calendar", False)
    return list_page(ctx, ctx.mbx.of_kind("event"), default_order=[],
                     render=lambda i: render(ctx.mbx, i, ctx.view),
                     record=lambda i: filter_record(ctx.mbx, i))


@handler
async def calendar_view(request: Request) -> Response:
    ctx = user_context(request, "calendar", False)
    a, b = _window(ctx, ctx.params)
    rows: list[dict[str, Any]] = []
    for item in ctx.mbx.of_kind("event"):
        rows.extend(_expand(ctx, item, a, b))
    rows.sort(key=lambda r: (r.get("start") or {}).get("dateTime", ""))
    return ok({"value": rows[:1000]})


@handler
async def create_event(request: Request) -> Response:
    ctx = user_context(request, "calendar", True)
    item, _created = ops.create_event(ctx.mbx, await json_body(request))
    return ok(render(ctx.mbx, item, ctx.view), 201)


@handler
async def get_event(request: Request) -> Response:
    ctx = user_context(request, "calendar", False)
    occ = _occurrence(ctx, request.path_params["id"])
    if occ:
        return ok(_render_occ(ctx, *occ))
    return ok(render(ctx.mbx, _event(ctx, request.path_params["id"]), ctx.view))


@handler
async def patch_event(request: Request) -> Response:
    ctx = user_context(request, "calendar", True)
    item = _event(ctx, request.path_params["id"])
    check_if_match(request, item)
    ops.update_event(ctx.mbx, item, await json_body(request))
    return ok(render(ctx.mbx, item, ctx.view))


@handler
async def delete_event(request: Request) -> Response:
    ctx = user_context(request, "calendar", True)
    occ = _occurrence(ctx, request.path_params["id"])
    if occ:
        master, when = occ
        master.data.setdefault("cancelledOccurrences", []).append(when.date().isoformat())
        ctx.mbx.touch(master, ctx.mbx.keys_of(master))
        return no_content()
    item = _event(ctx, request.path_params["id"])
    check_if_match(request, item)
    ops.delete_event(ctx.mbx, item)
    return no_content()


@handler
async def cancel_event(request: Request) -> Response:
    ctx = user_context(request, "calendar", True)
    item = _event(ctx, request.path_params["id"])
    body = await json_body(request)
    ops.cancel_event(ctx.mbx, item, body.get("comment") or body.get("Comment"))
    return no_content(202)


@handler
async def instances(request: Request) -> Response:
    ctx = user_context(request, "calendar", False)
    item = _event(ctx, request.path_params["id"])
    a, b = _window(ctx, ctx.params)
    return ok({"value": _expand(ctx, item, a, b)})


def _delta(ctx: Ctx, with_window: bool) -> Response:
    mbx = ctx.mbx
    params = dict(ctx.request.query_params)
    token = params.get("$deltatoken") or params.get("$skiptoken")
    options = delta.decode(token).get("o", {}) if token else params
    win = delta.window(options) if with_window else None
    if with_window and win is None:
        _window(ctx, options)

    def visible(item: Item) -> bool:
        if item.deleted:
            return False
        if win is None:
            return True
        if item.data.get("type") == "seriesMaster":
            return bool(ops.occurrences(item, *win))
        return _overlaps(item, *win)

    def rend(item: Item) -> list[dict[str, Any]]:
        if win is not None:
            return _expand(ctx, item, *win)
        return [render(mbx, item, ctx.view)]

    def removed(item: Item) -> list[str]:
        master_id = item.imm_id if ctx.view.immutable else item.reg_in.get(KEY, item.reg_id)
        if win is not None and item.data.get("type") == "seriesMaster":
            return [ops.occurrence_id(master_id, o) for o in ops.occurrences(item, *win)] or [
                master_id]
        return [master_id]

    url = ctx.base() + ctx.request.url.path
    body, size = delta.run(mbx, key=KEY, url_base=url, params=params,
                           page_size=page_size(ctx.request), visible=visible, render=rend,
                           removed_ids=removed)
    headers = {"Preference-Applied": f"odata.maxpagesize={size}"} if page_size(
        ctx.request) else {}
    return ok(body, headers=headers)


@handler
async def events_delta(request: Request) -> Response:
    return _delta(user_context(request, "calendar", False), False)


@handler
async def calendar_view_delta(request: Request) -> Response:
    return _delta(user_context(request, "calendar", False), True)


def routes() -> list[Route]:
    r: list[Route] = []
    for p in _both(f"{U}/events/delta"):
        r.append(Route(p, events_delta, methods=["GET"]))
    for p in _both(f"{U}/calendarView/delta"):
        r.append(Route(p, calendar_view_delta, methods=["GET"]))
    r += [
        Route(f"{U}/calendarView", calendar_view, methods=["GET"]),
        Route(f"{U}/events", list_events, methods=["GET"]),
        Route(f"{U}/events", create_event, methods=["POST"]),
        Route(f"{U}/events/{{id}}", get_event, methods=["GET"]),
        Route(f"{U}/events/{{id}}", patch_event, methods=["PATCH"]),
        Route(f"{U}/events/{{id}}", delete_event, methods=["DELETE"]),
        Route(f"{U}/events/{{id}}/instances", instances, methods=["GET"]),
        Route(f"{U}/events/{{id}}/cancel", cancel_event, methods=["POST"]),
        Route(f"{U}/events/{{id}}/microsoft.graph.cancel", cancel_event, methods=["POST"]),
    ]
    return r
