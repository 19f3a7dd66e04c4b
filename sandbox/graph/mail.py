"""Messages, mail folders, master categories, mailbox settings, sendMail and message delta."""

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
from sandbox.graph.errors import GraphError, bad_request, not_found
from sandbox.graph.serialize import filter_record, render
from sandbox.graph.store import Item

U = "/v1.0/users/{user}"


def _folder(ctx: Ctx, ref: str) -> Item:
    folder = ctx.mbx.folder(ref)
    if folder is None:
        raise not_found()
    return folder


def _message(ctx: Ctx, mid: str) -> Item:
    item = ctx.mbx.find(mid, "message")
    if item is None:
        raise not_found()
    return item


def _render(ctx: Ctx):  # noqa: ANN202
    return lambda item: render(ctx.mbx, item, ctx.view)


def _record(ctx: Ctx):  # noqa: ANN202
    return lambda item: filter_record(ctx.mbx, item)


# ---- messages ----------------------------------------------------------------------------

@handler
async def list_messages(request: Request) -> Response:
    ctx = user_context(request, "mail", False)
    folder_ref = request.path_params.get("folder")
    items = ctx.mbx.of_kind("message", _folder(ctx, folder_ref).imm_id if folder_ref else None)
    return list_page(ctx, items, default_order=[("receivedDateTime", True)],
                     render=_render(ctx), record=_record(ctx))


@handler
async def create_message(request: Request) -> Response:
    ctx = user_context(request, "mail", True)
    folder_ref = request.path_params.get("folder") or "drafts"
    folder = _folder(ctx, folder_ref)
    item = ops.create_message(ctx.mbx, folder.imm_id, await json_body(request), draft=True)
    return ok(render(ctx.mbx, item, ctx.view), 201)


@handler
async def get_message(request: Request) -> Response:
    ctx = user_context(request, "mail", False)
    item = _message(ctx, request.path_params["id"])
    folder_ref = request.path_params.get("folder")
    if folder_ref and _folder(ctx, folder_ref).imm_id != item.container:
        raise not_found()
    return ok(render(ctx.mbx, item, ctx.view))


@handler
async def patch_message(request: Request) -> Response:
    ctx = user_context(request, "mail", True)
    item = _message(ctx, request.path_params["id"])
    check_if_match(request, item)
    ops.update_message(ctx.mbx, item, await json_body(request))
    return ok(render(ctx.mbx, item, ctx.view))


@handler
async def delete_message(request: Request) -> Response:
    ctx = user_context(request, "mail", True)
    item = _message(ctx, request.path_params["id"])
    check_if_match(request, item)
    ctx.mbx.remove(item)
    return no_content()


@handler
async def move_message(request: Request) -> Response:
    ctx = user_context(request, "mail", True)
    item = _message(ctx, request.path_params["id"])
    body = await json_body(request)
    dest = body.get("destinationId") or body.get("DestinationId")
    if not dest:
        raise bad_request("destinationId is required.", "ErrorInvalidIdMalformed")
    folder = ctx.mbx.folder(dest)
    if folder is None:
        raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.") if len(dest) < 8 \
            else not_found()
    ctx.mbx.move(item, folder.imm_id)
    return ok(render(ctx.mbx, item, ctx.view), 201)


@handler
async def send_draft(request: Request) -> Response:
    ctx = user_context(request, "send", True)
    item = _message(ctx, request.path_params["id"])
    if not item.data.get("isDraft"):
        raise GraphError(400, "ErrorInvalidOperation", "Only drafts can be sent.")
    ops.send(ctx.mbx, None, draft=item, save=True)
    return no_content(202)


@handler
async def send_mail(request: Request) -> Response:
    ctx = user_context(request, "send", True)
    body = await json_body(request)
    message = body.get("message", body.get("Message"))
    save = body.get("saveToSentItems", body.get("SaveToSentItems", True))
    if isinstance(save, str):
        save = save.lower() != "false"
    if not isinstance(message, dict):
        raise bad_request("Empty Payload. JSON content expected.")
    ops.send(ctx.mbx, message, save=bool(save))
    return no_content(202)


# ---- attachments -------------------------------------------------------------------------

def _att_view(att: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    if not select:
        return dict(att)
    keep = {s.lower() for s in select} | {"id", "@odata.type"}
    return {k: v for k, v in att.items() if k.lower() in keep}


@handler
async def list_attachments(request: Request) -> Response:
    ctx = user_context(request, "mail", False)
    item = _message(ctx, request.path_params["id"])
    return ok({"value": [_att_view(a, ctx.view.select)
                         for a in item.extra.get("attachments", [])]})


@handler
async def add_attachment(request: Request) -> Response:
    ctx = user_context(request, "mail", True)
    item = _message(ctx, request.path_params["id"])
    record = ops.add_attachment(item, await json_body(request), touch=ctx.mbx)
    return ok(record, 201)


def _attachment(ctx: Ctx, item: Item, aid: str) -> dict[str, Any]:
    for att in item.extra.get("attachments", []):
        if att["id"] == aid:
            return att
    raise not_found()


@handler
async def get_attachment(request: Request) -> Response:
    ctx = user_context(request, "mail", False)
    item = _message(ctx, request.path_params["id"])
    return ok(_att_view(_attachment(ctx, item, request.path_params["aid"]), ctx.view.select))


@handler
async def delete_attachment(request: Request) -> Response:
    ctx = user_context(request, "mail", True)
    item = _message(ctx, request.path_params["id"])
    att = _attachment(ctx, item, request.path_params["aid"])
    item.extra["attachments"].remove(att)
    ctx.mbx.touch(item, ctx.mbx.keys_of(item))
    return no_content()


# ---- delta -------------------------------------------------------------------------------

@handler
async def message_delta(request: Request) -> Response:
    ctx = user_context(request, "mail", False)
    folder_ref = request.path_params.get("folder")
    key = f"message:{_folder(ctx, folder_ref).imm_id}" if folder_ref else "message:*"
    return _delta(ctx, key)


def _delta(ctx: Ctx, key: str) -> Response:
    mbx = ctx.mbx
    url = ctx.base() + ctx.request.url.path

    def removed(item: Item) -> list[str]:
        return [item.imm_id if ctx.view.immutable else item.reg_in.get(key, item.reg_id)]

    params = dict(ctx.request.query_params)
    if params.get("$deltatoken") or params.get("$skiptoken"):
        token = delta.decode(params.get("$deltatoken") or params.get("$skiptoken") or "")
        options = token.get("o", {})
        from sandbox.graph import odata
        from sandbox.graph.serialize import View

        ctx.view = View(ctx.request.headers, odata.parse_select(options.get("$select")),
                        odata.parse_expand(options.get("$expand")))
    body, size = delta.run(mbx, key=key, url_base=url, params=params,
                           page_size=page_size(ctx.request),
                           visible=lambda item: mbx.visible_in(item, key),
                           render=lambda item: [render(mbx, item, ctx.view)],
                           removed_ids=removed)
    headers = {}
    if page_size(ctx.request):
        headers["Preference-Applied"] = f"odata.maxpagesize={size}"
    return ok(body, headers=headers)


# ---- folders -----------------------------------------------------------------------------

@handler
async def list_folders(request: Request) -> Response:
    ctx = user_context(request, "mail", False)
    parent = request.path_params.get("folder")
    if parent:
        pid = _folder(ctx, parent).imm_id
        items = [f for f in ctx.mbx.folders.values() if not f.deleted and f.container == pid]
    else:
        root = "AAMkAROOT" + ctx.mbx.key.replace("-", "")
        items = [f for f in ctx.mbx.folders.values() if not f.deleted and f.container == root]
    return list_page(ctx, items, default_order=[], render=_render(ctx), record=_record(ctx))


@handler
async def create_folder(request: Request) -> Response:
    ctx = user_context(request, "mail", True)
    body = await json_body(request)
    name = (body.get("displayName") or "").strip()
    if not name:
        raise bad_request("displayName is required.", "ErrorInvalidRequest")
    parent = request.path_params.get("folder")
    pid = _folder(ctx, parent).imm_id if parent else None
    root = "AAMkAROOT" + ctx.mbx.key.replace("-", "")
    for f in ctx.mbx.folders.values():
        if not f.deleted and f.container == (pid or root) and (
                f.data["displayName"].lower() == name.lower()):
            raise GraphError(409, "ErrorFolderExists",
                             "A folder with the specified name already exists.")
    folder = ctx.mbx.add_folder(name, pid)
    return ok(render(ctx.mbx, folder, ctx.view), 201)


@handler
async def get_folder(request: Request) -> Response:
    ctx = user_context(request, "mail", False)
    return ok(render(ctx.mbx, _folder(ctx, request.path_params["folder"]), ctx.view))


@handler
async def patch_folder(request: Request) -> Response:
    ctx = user_context(request, "mail", True)
    folder = _folder(ctx, request.path_params["folder"])
    body = await json_body(request)
    if "displayName" in body:
        folder.data["displayName"] = body["displayName"]
    ctx.mbx.touch(folder, ctx.mbx.keys_of(folder))
    return ok(render(ctx.mbx, folder, ctx.view))


@handler
async def delete_folder(request: Request) -> Response:
    ctx = user_context(request, "mail", True)
    folder = _folder(ctx, request.path_params["folder"])
    if folder.extra.get("wellknown"):
        raise GraphError(403, "ErrorDeleteDistinguishedFolder",
                         "Distinguished folders cannot be deleted.")
    for msg in ctx.mbx.of_kind("message", folder.imm_id):
        ctx.mbx.remove(msg)
    folder.deleted = True
    ctx.mbx.touch(folder, ["folder:*"], change="deleted")
    return no_content()


@handler
async def folder_delta(request: Request) -> Response:
    ctx = user_context(request, "mail", False)
    return _delta(ctx, "folder:*")


# ---- categories and settings ---------------------------------------------------------------

@handler
async def list_categories(request: Request) -> Response:
    ctx = user_context(request, "settings", False)
    return ok({"value": list(ctx.mbx.categories)})


@handler
async def create_category(request: Request) -> Response:
    ctx = user_context(request, "settings", True)
    body = await json_body(request)
    name = (body.get("displayName") or "").strip()
    if not name:
        raise bad_request("displayName is required.")
    if any(c["displayName"].lower() == name.lower() for c in ctx.mbx.categories):
        raise GraphError(409, "Conflict",
                         "An object with this name already exists.")
    color = body.get("color", "none")
    cat = {"id": ops.new_id_guid(), "displayName": name, "color": color}
    ctx.mbx.categories.append(cat)
    return ok(cat, 201)


def _category(ctx: Ctx, cid: str) -> dict[str, Any]:
    for c in ctx.mbx.categories:
        if c["id"] == cid:
            return c
    raise not_found()


@handler
async def get_category(request: Request) -> Response:
    ctx = user_context(request, "settings", False)
    return ok(_category(ctx, request.path_params["cid"]))


@handler
async def patch_category(request: Request) -> Response:
    ctx = user_context(request, "settings", True)
    cat = _category(ctx, request.path_params["cid"])
    body = await json_body(request)
    if "color" in body:
        cat["color"] = body["color"]
    return ok(cat)


@handler
async def delete_category(request: Request) -> Response:
    ctx = user_context(request, "settings", True)
    ctx.mbx.categories.remove(_category(ctx, request.path_params["cid"]))
    return no_content()


@handler
async def get_settings(request: Request) -> Response:
    ctx = user_context(request, "settings", False)
    settings = dict(ctx.mbx.settings)
    settings["archiveFolder"] = ctx.mbx.wellknown["archive"]
    return ok(settings)


@handler
async def patch_settings(request: Request) -> Response:
    ctx = user_context(request, "settings", True)
    body = await json_body(request)
    for key in ("timeZone", "dateFormat", "timeFormat", "language", "workingHours",
                "automaticRepliesSetting"):
        if key in body:
            ctx.mbx.settings[key] = body[key]
    return ok(dict(ctx.mbx.settings))


def _both(path: str) -> list[str]:
    """A function path in its three accepted spellings (`delta`, `delta()`, qualified)."""
    head, _, fn = path.rpartition("/")
    return [path, f"{head}/{fn}()", f"{head}/microsoft.graph.{fn}()",
            f"{head}/microsoft.graph.{fn}"]


def routes() -> list[Route]:
    r: list[Route] = []

    def add(paths: list[str] | str, endpoint: Any, methods: list[str]) -> None:
        for p in [paths] if isinstance(paths, str) else paths:
            r.append(Route(p, endpoint, methods=methods))

    add(_both(f"{U}/mailFolders/{{folder}}/messages/delta"), message_delta, ["GET"])
    add(_both(f"{U}/messages/delta"), message_delta, ["GET"])
    add(_both(f"{U}/mailFolders/delta"), folder_delta, ["GET"])
    add(f"{U}/messages", list_messages, ["GET"])
    add(f"{U}/messages", create_message, ["POST"])
    add(f"{U}/mailFolders/{{folder}}/messages", list_messages, ["GET"])
    add(f"{U}/mailFolders/{{folder}}/messages", create_message, ["POST"])
    for base in (f"{U}/messages/{{id}}", f"{U}/mailFolders/{{folder}}/messages/{{id}}"):
        add(base, get_message, ["GET"])
        add(base, patch_message, ["PATCH"])
        add(base, delete_message, ["DELETE"])
        add([f"{base}/move", f"{base}/microsoft.graph.move"], move_message, ["POST"])
        add([f"{base}/send", f"{base}/microsoft.graph.send"], send_draft, ["POST"])
        add(f"{base}/attachments", list_attachments, ["GET"])
        add(f"{base}/attachments", add_attachment, ["POST"])
        add(f"{base}/attachments/{{aid}}", get_attachment, ["GET"])
        add(f"{base}/attachments/{{aid}}", delete_attachment, ["DELETE"])
    add([f"{U}/sendMail", f"{U}/microsoft.graph.sendMail"], send_mail, ["POST"])
    add(f"{U}/mailFolders", list_folders, ["GET"])
    add(f"{U}/mailFolders", create_folder, ["POST"])
    add(f"{U}/mailFolders/{{folder}}", get_folder, ["GET"])
    add(f"{U}/mailFolders/{{folder}}", patch_folder, ["PATCH"])
    add(f"{U}/mailFolders/{{folder}}", delete_folder, ["DELETE"])
    add(f"{U}/mailFolders/{{folder}}/childFolders", list_folders, ["GET"])
    add(f"{U}/mailFolders/{{folder}}/childFolders", create_folder, ["POST"])
    add(f"{U}/outlook/masterCategories", list_categories, ["GET"])
    add(f"{U}/outlook/masterCategories", create_category, ["POST"])
    add(f"{U}/outlook/masterCategories/{{cid}}", get_category, ["GET"])
    add(f"{U}/outlook/masterCategories/{{cid}}", patch_category, ["PATCH"])
    add(f"{U}/outlook/masterCategories/{{cid}}", delete_category, ["DELETE"])
    add(f"{U}/mailboxSettings", get_settings, ["GET"])
    add(f"{U}/mailboxSettings", patch_settings, ["PATCH"])
    return r
