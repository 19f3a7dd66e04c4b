"""Control API for tests and benchmarks (mounted under /_sandbox, loopback, no token):
deliver mail from outside, make a seeded user send, read and change any mailbox, see the
outbox and the notification deliveries, fire lifecycle events, create a backlog fast."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.graph import ops, subscriptions
from sandbox.graph.api import handler, json_body
from sandbox.graph.errors import GraphError, bad_request, not_found
from sandbox.graph.serialize import View, render
from sandbox.graph.store import GraphStore, Item, Mailbox

KIND = {"messages": "message", "events": "event", "contacts": "contact", "tasks": "task"}


def _store(request: Request) -> GraphStore:
    return request.app.state.world.graph


def _mbx(request: Request) -> Mailbox:
    mbx = _store(request).mailbox_for(request.path_params["upn"])
    if mbx is None:
        raise GraphError(404, "ErrorInvalidUser", f"unknown user {request.path_params['upn']}")
    return mbx


def _everything(mbx: Mailbox, item: Item) -> dict[str, Any]:
    view = View({})
    view.everything = True
    out = render(mbx, item, view)
    if item.kind == "message":
        out["attachments"] = item.extra.get("attachments", [])
        folder = mbx.folders.get(item.container)
        out["folder"] = folder.extra.get("wellknown") or folder.data["displayName"] \
            if folder else None
    return out


def _recipients_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


@handler
async def deliver(request: Request) -> Response:
    store = _store(request)
    body = await json_body(request)
    targets = _recipients_list(body.get("to"))
    if not targets:
        raise bad_request("'to' is required")
    out = []
    # one message, many copies: every copy carries the same internetMessageId and thread
    shared: dict[str, Any] = {"receivedDateTime": body.get("receivedDateTime") or ops.now_iso()}
    for upn in targets:
        mbx = store.mailbox_for(upn)
        if mbx is None:
            continue  # external recipient: nothing lands anywhere
        item = ops.deliver(mbx, {**body, **shared, "to": body.get("to_header") or targets},
                           body.get("folder") or "inbox")
        shared["internetMessageId"] = item.data["internetMessageId"]
        shared["_conversation"] = (item.data["conversationIndex"], item.data["conversationId"])
        out.append({"upn": mbx.user.upn, "id": item.reg_id, "immutableId": item.imm_id,
                    "internetMessageId": item.data["internetMessageId"],
                    "conversationId": item.data["conversationId"]})
    return JSONResponse({"value": out}, status_code=201)


@handler
async def send_as(request: Request) -> Response:
    store = _store(request)
    body = await json_body(request)
    mbx = store.mailbox_for(str(body.get("from", "")))
    if mbx is None:
        raise bad_request("'from' must be a seeded user")
    message: dict[str, Any] = {
        "subject": body.get("subject", ""), "body": body.get("body", ""),
        "toRecipients": _recipients_list(body.get("to")),
        "ccRecipients": _recipients_list(body.get("cc")),
        "bccRecipients": _recipients_list(body.get("bcc")),
        "categories": body.get("categories") or [],
        "singleValueExtendedProperties": body.get("singleValueExtendedProperties") or [],
        "attachments": body.get("attachments") or [],
    }
    headers = body.get("headers") or []
    if isinstance(headers, dict):
        headers = [{"name": k, "value": v} for k, v in headers.items()]
    if body.get("inReplyTo"):
        headers.append({"name": "In-Reply-To", "value": body["inReplyTo"]})
    if body.get("references"):
        headers.append({"name": "References", "value": body["references"]})
    message["internetMessageHeaders"] = headers
    strict = store.strict_headers
    store.strict_headers = False
    try:
        record = ops.send(mbx, message, save=body.get("saveToSentItems", True), check_rate=False)
    finally:
        store.strict_headers = strict
    return JSONResponse(record, status_code=201)


@handler
async def bulk_deliver(request: Request) -> Response:
    """Thousands of messages in one call, for benchmarks."""
    store = _store(request)
    body = await json_body(request)
    count = int(body.get("count", 0))
    if count <= 0 or count > 200_000:
        raise bad_request("count must be between 1 and 200000")
    pattern = body.get("from_pattern", "sender{n}@fabrikam.com")
    subject = body.get("subject_pattern", "Backlog message {n}")
    text = body.get("body_pattern", "Message number {n}.")
    made = 0
    for upn in _recipients_list(body.get("to")):
        mbx = store.mailbox_for(upn)
        if mbx is None:
            raise bad_request(f"unknown user {upn}")
        for n in range(count):
            ops.deliver(mbx, {"from": pattern.format(n=n), "to": [mbx.user.upn],
                              "subject": subject.format(n=n), "body": text.format(n=n),
                              "categories": body.get("categories") or []},
                        body.get("folder") or "inbox")
            made += 1
    return JSONResponse({"created": made}, status_code=201)


@handler
async def list_items(request: Request) -> Response:
    mbx = _mbx(request)
    kind = KIND[request.path_params["kind"]]
    container = None
    if kind == "message" and request.query_params.get("folder"):
        folder = mbx.folder(request.query_params["folder"])
        if folder is None:
            raise not_found()
        container = folder.imm_id
    if kind == "task":
        lst = mbx.todo_list(request.query_params.get("list") or "Tasks")
        if lst is None:
            raise not_found()
        container = lst.imm_id
    return JSONResponse({"value": [_everything(mbx, i)
                                   for i in mbx.of_kind(kind, container)]})


@handler
async def create_item(request: Request) -> Response:
    mbx = _mbx(request)
    kind = KIND[request.path_params["kind"]]
    body = await json_body(request)
    if kind == "message":
        item = ops.deliver(mbx, body, body.get("folder") or "inbox")
    elif kind == "event":
        item, _ = ops.create_event(mbx, body)
    elif kind == "contact":
        item = ops.create_contact(mbx, body)
    else:
        lst = mbx.todo_list(request.query_params.get("list") or body.pop("list", "Tasks"))
        if lst is None:
            raise not_found()
        item = ops.create_task(mbx, lst, body)
    return JSONResponse(_everything(mbx, item), status_code=201)


def _item(request: Request, mbx: Mailbox) -> Item:
    item = mbx.find(request.path_params["id"], KIND[request.path_params["kind"]])
    if item is None:
        raise not_found()
    return item


@handler
async def patch_item(request: Request) -> Response:
    """A change made by the user in Outlook: anything goes, drafts rules do not apply."""
    mbx = _mbx(request)
    item = _item(request, mbx)
    body = await json_body(request)
    if item.kind == "message":
        for key in ("singleValueExtendedProperties",):
            if key in body:
                ops._svep_merge(item, body.pop(key))
        if "body" in body:
            body["body"] = ops._body(body["body"])
            item.data["bodyPreview"] = ops._preview(body["body"])
        item.data.update(body)
        mbx.touch(item, mbx.keys_of(item))
    elif item.kind == "event":
        ops.update_event(mbx, item, body)
    elif item.kind == "contact":
        ops.update_simple(mbx, item, body, ops.CONTACT_WRITABLE, "contact")
    else:
        ops.update_simple(mbx, item, body, ops.TASK_WRITABLE, "todoTask")
    return JSONResponse(_everything(mbx, item))


@handler
async def delete_item(request: Request) -> Response:
    mbx = _mbx(request)
    item = _item(request, mbx)
    if item.kind == "event":
        ops.delete_event(mbx, item)
    else:
        mbx.remove(item)
    return Response(status_code=204)


@handler
async def move_item(request: Request) -> Response:
    mbx = _mbx(request)
    item = _item(request, mbx)
    body = await json_body(request)
    folder = mbx.folder(body.get("destinationId") or body.get("folder") or "")
    if folder is None:
        raise not_found()
    mbx.move(item, folder.imm_id)
    return JSONResponse(_everything(mbx, item))


@handler
async def list_folders(request: Request) -> Response:
    mbx = _mbx(request)
    return JSONResponse({"value": [{"id": f.imm_id, "displayName": f.data["displayName"],
                                    "wellKnownName": f.extra.get("wellknown"),
                                    "parentFolderId": f.container}
                                   for f in mbx.folders.values() if not f.deleted]})


@handler
async def outbox(request: Request) -> Response:
    return JSONResponse({"value": _store(request).outbox})


@handler
async def notifications(request: Request) -> Response:
    return JSONResponse({"value": _store(request).notifications})


@handler
async def list_subscriptions(request: Request) -> Response:
    return JSONResponse({"value": list(_store(request).subscriptions.values())})


@handler
async def fire_lifecycle(request: Request) -> Response:
    body = await json_body(request)
    note = subscriptions.lifecycle(_store(request), request.path_params["sid"],
                                   str(body.get("event", "")))
    return JSONResponse(note, status_code=202)


@handler
async def settings(request: Request) -> Response:
    store = _store(request)
    body = await json_body(request)
    if "strict_internet_message_headers" in body:
        store.strict_headers = bool(body["strict_internet_message_headers"])
    if "delta_retention_seconds" in body:
        store.DELTA_RETENTION_SECONDS = float(body["delta_retention_seconds"])
    return JSONResponse({"strict_internet_message_headers": store.strict_headers,
                         "delta_retention_seconds": store.DELTA_RETENTION_SECONDS})


@handler
async def clock(request: Request) -> Response:
    """Advance the Graph clock (send-rate window, delta retention) without sleeping."""
    store = _store(request)
    body = await json_body(request)
    store.clock_offset += float(body.get("advance_seconds", 0))
    return JSONResponse({"offset": store.clock_offset})


def control_routes() -> list[Route]:
    g = "/graph"
    kinds = "{kind:str}"
    return [
        Route(f"{g}/deliver", deliver, methods=["POST"]),
        Route(f"{g}/send-as", send_as, methods=["POST"]),
        Route(f"{g}/bulk-deliver", bulk_deliver, methods=["POST"]),
        Route(f"{g}/outbox", outbox, methods=["GET"]),
        Route(f"{g}/notifications", notifications, methods=["GET"]),
        Route(f"{g}/subscriptions", list_subscriptions, methods=["GET"]),
        Route(f"{g}/subscriptions/{{sid}}/lifecycle", fire_lifecycle, methods=["POST"]),
        Route(f"{g}/settings", settings, methods=["POST"]),
        Route(f"{g}/clock", clock, methods=["POST"]),
        Route(f"{g}/mailboxes/{{upn}}/folders", list_folders, methods=["GET"]),
        Route(f"{g}/mailboxes/{{upn}}/{kinds}", list_items, methods=["GET"]),
        Route(f"{g}/mailboxes/{{upn}}/{kinds}", create_item, methods=["POST"]),
        Route(f"{g}/mailboxes/{{upn}}/{kinds}/{{id}}", patch_item, methods=["PATCH"]),
        Route(f"{g}/mailboxes/{{upn}}/{kinds}/{{id}}", delete_item, methods=["DELETE"]),
        Route(f"{g}/mailboxes/{{upn}}/{kinds}/{{id}}/move", move_item, methods=["POST"]),
    ]
