"""Contacts (default folder) and Microsoft To Do lists and tasks, with their delta."""

from __future__ import annotations

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
from sandbox.graph.errors import bad_request, not_found
from sandbox.graph.mail import _both
from sandbox.graph.serialize import filter_record, render
from sandbox.graph.store import Item

U = "/v1.0/users/{user}"


def _get(ctx: Ctx, kind: str, iid: str) -> Item:
    item = ctx.mbx.find(iid, kind)
    if item is None:
        raise not_found()
    return item


def _list(ctx: Ctx) -> Item:
    lst = ctx.mbx.find(ctx.request.path_params["list"], "list")
    if lst is None:
        raise not_found()
    return lst


def _task(ctx: Ctx) -> Item:
    lst = _list(ctx)
    item = _get(ctx, "task", ctx.request.path_params["id"])
    if item.container != lst.imm_id:
        raise not_found()
    return item


def _page(ctx: Ctx, items: list[Item]) -> Response:
    return list_page(ctx, items, default_order=[], render=lambda i: render(ctx.mbx, i, ctx.view),
                     record=lambda i: filter_record(ctx.mbx, i))


def _delta(ctx: Ctx, key: str) -> Response:
    mbx = ctx.mbx
    url = ctx.base() + ctx.request.url.path
    body, size = delta.run(
        mbx, key=key, url_base=url, params=dict(ctx.request.query_params),
        page_size=page_size(ctx.request), visible=lambda i: mbx.visible_in(i, key),
        render=lambda i: [render(mbx, i, ctx.view)],
        removed_ids=lambda i: [i.imm_id if ctx.view.immutable else i.reg_in.get(key, i.reg_id)])
    headers = {"Preference-Applied": f"odata.maxpagesize={size}"} if page_size(
        ctx.request) else {}
    return ok(body, headers=headers)


# ---- contacts ----------------------------------------------------------------------------

@handler
async def list_contacts(request: Request) -> Response:
    ctx = user_context(request, "contacts", False)
    return _page(ctx, ctx.mbx.of_kind("contact"))


@handler
async def create_contact(request: Request) -> Response:
    ctx = user_context(request, "contacts", True)
    item = ops.create_contact(ctx.mbx, await json_body(request))
    return ok(render(ctx.mbx, item, ctx.view), 201)


@handler
async def get_contact(request: Request) -> Response:
    ctx = user_context(request, "contacts", False)
    return ok(render(ctx.mbx, _get(ctx, "contact", request.path_params["id"]), ctx.view))


@handler
async def patch_contact(request: Request) -> Response:
    ctx = user_context(request, "contacts", True)
    item = _get(ctx, "contact", request.path_params["id"])
    check_if_match(request, item)
    ops.update_simple(ctx.mbx, item, await json_body(request), ops.CONTACT_WRITABLE, "contact")
    return ok(render(ctx.mbx, item, ctx.view))


@handler
async def delete_contact(request: Request) -> Response:
    ctx = user_context(request, "contacts", True)
    item = _get(ctx, "contact", request.path_params["id"])
    check_if_match(request, item)
    ctx.mbx.remove(item)
    return no_content()


@handler
async def contacts_delta(request: Request) -> Response:
    return _delta(user_context(request, "contacts", False), "contact:*")


# ---- To Do -------------------------------------------------------------------------------

@handler
async def list_lists(request: Request) -> Response:
    ctx = user_context(request, "tasks", False)
    return _page(ctx, ctx.mbx.of_kind("list"))


@handler
async def create_list(request: Request) -> Response:
    ctx = user_context(request, "tasks", True)
    body = await json_body(request)
    name = (body.get("displayName") or "").strip()
    if not name:
        raise bad_request("displayName is required.", "invalidRequest")
    return ok(render(ctx.mbx, ctx.mbx.add_list(name), ctx.view), 201)


@handler
async def get_list(request: Request) -> Response:
    ctx = user_context(request, "tasks", False)
    return ok(render(ctx.mbx, _list(ctx), ctx.view))


@handler
async def patch_list(request: Request) -> Response:
    ctx = user_context(request, "tasks", True)
    lst = _list(ctx)
    body = await json_body(request)
    if "displayName" in body:
        lst.data["displayName"] = body["displayName"]
    ctx.mbx.touch(lst, ctx.mbx.keys_of(lst))
    return ok(render(ctx.mbx, lst, ctx.view))


@handler
async def delete_list(request: Request) -> Response:
    ctx = user_context(request, "tasks", True)
    lst = _list(ctx)
    if lst.data.get("wellknownListName") == "defaultList":
        raise bad_request("The default list can't be deleted.", "invalidRequest")
    for task in ctx.mbx.of_kind("task", lst.imm_id):
        ctx.mbx.remove(task)
    ctx.mbx.remove(lst)
    return no_content()


@handler
async def lists_delta(request: Request) -> Response:
    return _delta(user_context(request, "tasks", False), "list:*")


@handler
async def list_tasks(request: Request) -> Response:
    ctx = user_context(request, "tasks", False)
    return _page(ctx, ctx.mbx.of_kind("task", _list(ctx).imm_id))


@handler
async def create_task(request: Request) -> Response:
    ctx = user_context(request, "tasks", True)
    item = ops.create_task(ctx.mbx, _list(ctx), await json_body(request))
    return ok(render(ctx.mbx, item, ctx.view), 201)


@handler
async def get_task(request: Request) -> Response:
    ctx = user_context(request, "tasks", False)
    return ok(render(ctx.mbx, _task(ctx), ctx.view))


@handler
async def patch_task(request: Request) -> Response:
    ctx = user_context(request, "tasks", True)
    item = _task(ctx)
    check_if_match(request, item)
    ops.update_simple(ctx.mbx, item, await json_body(request), ops.TASK_WRITABLE, "todoTask")
    return ok(render(ctx.mbx, item, ctx.view))


@handler
async def delete_task(request: Request) -> Response:
    ctx = user_context(request, "tasks", True)
    item = _task(ctx)
    ctx.mbx.remove(item)
    return no_content()


@handler
async def tasks_delta(request: Request) -> Response:
    ctx = user_context(request, "tasks", False)
    return _delta(ctx, f"task:{_list(ctx).imm_id}")


def routes() -> list[Route]:
    r: list[Route] = []
    for p in _both(f"{U}/contacts/delta"):
        r.append(Route(p, contacts_delta, methods=["GET"]))
    for p in _both(f"{U}/todo/lists/delta"):
        r.append(Route(p, lists_delta, methods=["GET"]))
    for p in _both(f"{U}/todo/lists/{{list}}/tasks/delta"):
        r.append(Route(p, tasks_delta, methods=["GET"]))
    spec: list[tuple[str, Any, str]] = [
        (f"{U}/contacts", list_contacts, "GET"), (f"{U}/contacts", create_contact, "POST"),
        (f"{U}/contacts/{{id}}", get_contact, "GET"),
        (f"{U}/contacts/{{id}}", patch_contact, "PATCH"),
        (f"{U}/contacts/{{id}}", delete_contact, "DELETE"),
        (f"{U}/todo/lists", list_lists, "GET"), (f"{U}/todo/lists", create_list, "POST"),
        (f"{U}/todo/lists/{{list}}", get_list, "GET"),
        (f"{U}/todo/lists/{{list}}", patch_list, "PATCH"),
        (f"{U}/todo/lists/{{list}}", delete_list, "DELETE"),
        (f"{U}/todo/lists/{{list}}/tasks", list_tasks, "GET"),
        (f"{U}/todo/lists/{{list}}/tasks", create_task, "POST"),
        (f"{U}/todo/lists/{{list}}/tasks/{{id}}", get_task, "GET"),
        (f"{U}/todo/lists/{{list}}/tasks/{{id}}", patch_task, "PATCH"),
        (f"{U}/todo/lists/{{list}}/tasks/{{id}}", delete_task, "DELETE"),
    ]
    r += [Route(p, fn, methods=[m]) for p, fn, m in spec]
    return r
