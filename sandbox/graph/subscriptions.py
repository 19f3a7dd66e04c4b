"""Change-notification subscriptions: validation handshake, renewal, reauthorize, delivery of
changeNotificationCollection payloads, and lifecycle notifications (triggered by control).

notificationUrl must be https as in Graph; the sandbox also accepts http://127.0.0.1 and
http://localhost so a test can listen without a certificate.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import secrets
import ssl
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.graph.api import allowed, authenticate, handler, json_body, no_content, ok
from sandbox.graph.errors import GraphError, access_denied, bad_request
from sandbox.graph.store import GraphStore, Item, Mailbox

MAX_MINUTES = {"message": 10080, "event": 10080, "contact": 10080, "task": 4230}
AREA = {"message": "mail", "event": "calendar", "contact": "contacts", "task": "tasks"}
ODATA_TYPE = {"message": "#Microsoft.Graph.Message", "event": "#Microsoft.Graph.Event",
              "contact": "#Microsoft.Graph.Contact", "task": "#Microsoft.Graph.todoTask"}
SEGMENT = {"message": "Messages", "event": "Events", "contact": "Contacts", "task": "Tasks"}
_TASKS: set[asyncio.Task[Any]] = set()


def _ssl_context() -> ssl.SSLContext:
    cafile = os.environ.get("SSL_CERT_FILE")
    return ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _parse_time(text: Any) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError as exc:
        raise bad_request("expirationDateTime is not a valid date-time.",
                          "InvalidRequest") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _fmt(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def parse_resource(store: GraphStore, principal: Any, resource: str
                   ) -> tuple[Mailbox, str, str]:
    """-> (mailbox, kind, index key) for the Outlook resources we support."""
    path = resource.strip().lstrip("/")
    m = re.match(r"^(?:users/(?P<user>[^/]+)|(?P<me>me))/(?P<rest>.+)$", path, re.I)
    if not m:
        raise bad_request(f"Resource '{resource}' is not supported.", "InvalidRequest")
    if m.group("me"):
        if principal.user is None:
            raise bad_request("/me is only valid with delegated authentication flow.",
                              "BadRequest")
        user = principal.user
    else:
        user = store.world.user(m.group("user").strip("'"))
        if user is None:
            raise GraphError(404, "ErrorInvalidUser",
                             f"The requested user '{m.group('user')}' is invalid.")
    mbx = store.mailbox(user)
    rest = m.group("rest")
    fm = re.match(r"^mailFolders(?:\('(?P<a>[^']+)'\)|/(?P<b>[^/]+))/messages$", rest, re.I)
    if fm:
        folder = mbx.folder(fm.group("a") or fm.group("b"))
        if folder is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified folder was not found.")
        return mbx, "message", f"message:{folder.imm_id}"
    tm = re.match(r"^todo/lists/(?P<l>[^/]+)/tasks$", rest, re.I)
    if tm:
        lst = mbx.find(tm.group("l"), "list")
        if lst is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified list was not found.")
        return mbx, "task", f"task:{lst.imm_id}"
    simple = {"messages": "message", "events": "event", "contacts": "contact"}
    kind = simple.get(rest.lower())
    if kind is None:
        raise bad_request(f"Resource '{resource}' is not supported.", "InvalidRequest")
    return mbx, kind, f"{kind}:*"


def _check_url(url: str, field: str) -> None:
    parts = urlsplit(url or "")
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")
    if parts.scheme != "https" and not loopback:
        raise bad_request(f"The {field} must be a valid https URL.", "InvalidRequest")


async def _validate_endpoint(url: str) -> None:
    """Graph POSTs ?validationToken=...; the endpoint must echo it as text/plain within 10 s."""
    token = "Validation: Testing client application reachability for subscription Request-Id: " \
        + str(uuid.uuid4())
    try:
        async with httpx.AsyncClient(verify=_ssl_context(), timeout=10.0) as client:
            resp = await client.post(url, params={"validationToken": token},
                                     headers={"Content-Type": "text/plain; charset=utf-8"})
    except httpx.TimeoutException as exc:
        raise bad_request("Subscription validation request timed out.",
                          "ValidationError") from exc
    except httpx.HTTPError as exc:
        raise bad_request(f"Subscription validation request failed. {exc.__class__.__name__}",
                          "ValidationError") from exc
    if resp.status_code != 200 or resp.text != token:
        raise bad_request("Subscription validation request failed. Notification endpoint must "
                          "respond with 200 OK to validation request.", "ValidationError")


def public(sub: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sub.items() if not k.startswith("_")}


def _get_sub(store: GraphStore, principal: Any, sid: str) -> dict[str, Any]:
    sub = store.subscriptions.get(sid)
    if sub is None or sub["applicationId"] != principal.app_id:
        raise GraphError(404, "ResourceNotFound",
                         f"The object was not found. Subscription '{sid}' doesn't exist.")
    return sub


def _expiry(kind: str, value: Any) -> str:
    when = _parse_time(value)
    now = _utcnow()
    if when <= now:
        raise bad_request("Subscription expiration can only be in the future.", "InvalidRequest")
    limit = MAX_MINUTES[kind]
    if when > now + dt.timedelta(minutes=limit):
        raise bad_request(f"Subscription expiration can only be {limit} minutes in the future.",
                          "InvalidRequest")
    return _fmt(when)


@handler
async def create(request: Request) -> Response:
    store: GraphStore = request.app.state.world.graph
    principal = authenticate(request)
    body = await json_body(request)
    for field in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
        if not body.get(field):
            raise bad_request(f"The '{field}' property is required.", "InvalidRequest")
    changes = [c.strip() for c in str(body["changeType"]).split(",")]
    if any(c not in ("created", "updated", "deleted") for c in changes):
        raise bad_request(f"Invalid changeType '{body['changeType']}'.", "InvalidRequest")
    client_state = body.get("clientState")
    if client_state is not None and len(str(client_state)) > 128:
        raise bad_request("clientState must be at most 128 characters.", "InvalidRequest")
    if body.get("includeResourceData"):
        raise bad_request("Rich notifications (includeResourceData) are not supported by the "
                          "sandbox.", "InvalidRequest")
    mbx, kind, key = parse_resource(store, principal, body["resource"])
    if principal.kind != "app" and (principal.user is None or
                                    principal.user.object_id != mbx.key):
        raise access_denied()
    if not allowed(principal, AREA[kind], False):
        raise access_denied()
    expires = _expiry(kind, body["expirationDateTime"])
    _check_url(body["notificationUrl"], "notificationUrl")
    if body.get("lifecycleNotificationUrl"):
        _check_url(body["lifecycleNotificationUrl"], "lifecycleNotificationUrl")
    await _validate_endpoint(body["notificationUrl"])
    if body.get("lifecycleNotificationUrl") and (
            body["lifecycleNotificationUrl"] != body["notificationUrl"]):
        await _validate_endpoint(body["lifecycleNotificationUrl"])
    sid = str(uuid.uuid4())
    sub = {
        "id": sid, "resource": body["resource"], "applicationId": principal.app_id,
        "changeType": ",".join(changes), "clientState": client_state,
        "notificationUrl": body["notificationUrl"],
        "lifecycleNotificationUrl": body.get("lifecycleNotificationUrl"),
        "expirationDateTime": expires, "creatorId": principal.object_id,
        "includeResourceData": False, "latestSupportedTlsVersion":
            body.get("latestSupportedTlsVersion", "v1_2"),
        "encryptionCertificate": None, "encryptionCertificateId": None,
        "notificationQueryOptions": None, "notificationUrlAppId": None,
        "_mailbox": mbx.key, "_key": key, "_kind": kind,
        "_immutable": "immutableid" in request.headers.get("prefer", "").lower(),
    }
    store.subscriptions[sid] = sub
    return ok(public(sub), 201)


@handler
async def list_subs(request: Request) -> Response:
    store: GraphStore = request.app.state.world.graph
    principal = authenticate(request)
    return ok({"value": [public(s) for s in store.subscriptions.values()
                         if s["applicationId"] == principal.app_id]})


@handler
async def get_sub(request: Request) -> Response:
    store: GraphStore = request.app.state.world.graph
    principal = authenticate(request)
    return ok(public(_get_sub(store, principal, request.path_params["sid"])))


@handler
async def patch_sub(request: Request) -> Response:
    store: GraphStore = request.app.state.world.graph
    principal = authenticate(request)
    sub = _get_sub(store, principal, request.path_params["sid"])
    body = await json_body(request)
    if "expirationDateTime" in body:
        sub["expirationDateTime"] = _expiry(sub["_kind"], body["expirationDateTime"])
    if "notificationUrl" in body:
        _check_url(body["notificationUrl"], "notificationUrl")
        await _validate_endpoint(body["notificationUrl"])
        sub["notificationUrl"] = body["notificationUrl"]
    sub.pop("_needs_reauth", None)
    return ok(public(sub))


@handler
async def delete_sub(request: Request) -> Response:
    store: GraphStore = request.app.state.world.graph
    principal = authenticate(request)
    sub = _get_sub(store, principal, request.path_params["sid"])
    store.subscriptions.pop(sub["id"], None)
    return no_content()


@handler
async def reauthorize(request: Request) -> Response:
    store: GraphStore = request.app.state.world.graph
    principal = authenticate(request)
    sub = _get_sub(store, principal, request.path_params["sid"])
    sub.pop("_needs_reauth", None)
    return no_content(204)


# ---- delivery ----------------------------------------------------------------------------

def make_notifier(store: GraphStore) -> Any:
    """store.notifier: called on every change; schedules POSTs for matching subscriptions."""

    def notify(mbx: Mailbox, item: Item, change: str) -> None:
        if not store.subscriptions:
            return
        now_keys = set(mbx.keys_of(item))
        left = {k for k, s in item.latest.items() if s == store.seq and k not in now_keys}
        now = _utcnow()
        for sub in list(store.subscriptions.values()):
            if sub["_mailbox"] != mbx.key:
                continue
            if sub["_key"] in now_keys:
                this_change = change
            elif sub["_key"] in left:
                this_change = "deleted"  # moved out of the subscribed folder, or deleted
            else:
                continue
            if this_change not in sub["changeType"].split(","):
                continue
            if _parse_time(sub["expirationDateTime"]) < now:
                continue
            iid = item.imm_id if sub["_immutable"] else item.reg_in.get(sub["_key"], item.reg_id)
            resource = f"Users/{mbx.key}/{SEGMENT[sub['_kind']]}/{iid}"
            note = {
                "subscriptionId": sub["id"], "subscriptionExpirationDateTime":
                    sub["expirationDateTime"], "changeType": this_change, "resource": resource,
                "resourceData": {"@odata.type": ODATA_TYPE[sub["_kind"]],
                                 "@odata.id": resource, "@odata.etag": item.etag(), "id": iid},
                "clientState": sub["clientState"], "tenantId": store.world.tenant_id,
            }
            schedule(store, sub, sub["notificationUrl"], {"value": [note]}, "change")
    return notify


def schedule(store: GraphStore, sub: dict[str, Any], url: str, payload: dict[str, Any],
             kind: str) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        store.notifications.append({"subscriptionId": sub["id"], "url": url, "kind": kind,
                                    "payload": payload, "status": None,
                                    "error": "no event loop"})
        return
    task = loop.create_task(_post(store, sub, url, payload, kind))
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def _post(store: GraphStore, sub: dict[str, Any], url: str, payload: dict[str, Any],
                kind: str) -> None:
    record: dict[str, Any] = {"id": secrets.token_hex(8), "subscriptionId": sub["id"],
                              "url": url, "kind": kind, "payload": payload, "status": None,
                              "error": None, "sentDateTime": _fmt(_utcnow())}
    store.notifications.append(record)
    try:
        async with httpx.AsyncClient(verify=_ssl_context(), timeout=3.0) as client:
            resp = await client.post(url, json=payload)
        record["status"] = resp.status_code
    except httpx.HTTPError as exc:
        record["error"] = f"{exc.__class__.__name__}: {exc}"


def lifecycle(store: GraphStore, sid: str, event: str) -> dict[str, Any]:
    sub = store.subscriptions.get(sid)
    if sub is None:
        raise GraphError(404, "ResourceNotFound", f"Subscription '{sid}' doesn't exist.")
    if event not in ("reauthorizationRequired", "subscriptionRemoved", "missed"):
        raise bad_request("event must be reauthorizationRequired, subscriptionRemoved or missed")
    url = sub.get("lifecycleNotificationUrl")
    if not url:
        raise bad_request("the subscription has no lifecycleNotificationUrl")
    note = {"subscriptionId": sid, "subscriptionExpirationDateTime": sub["expirationDateTime"],
            "tenantId": store.world.tenant_id, "clientState": sub["clientState"],
            "lifecycleEvent": event}
    if event == "subscriptionRemoved":
        store.subscriptions.pop(sid, None)
    elif event == "reauthorizationRequired":
        sub["_needs_reauth"] = True
    schedule(store, sub, url, {"value": [note]}, "lifecycle")
    return note


def routes() -> list[Route]:
    base = "/v1.0/subscriptions"
    return [
        Route(base, create, methods=["POST"]),
        Route(base, list_subs, methods=["GET"]),
        Route(base + "/{sid}", get_sub, methods=["GET"]),
        Route(base + "/{sid}", patch_sub, methods=["PATCH"]),
        Route(base + "/{sid}", delete_sub, methods=["DELETE"]),
        Route(base + "/{sid}/reauthorize", reauthorize, methods=["POST"]),
        Route(base + "/{sid}/microsoft.graph.reauthorize", reauthorize, methods=["POST"]),
    ]
