"""What every Graph handler does first: authenticate, resolve the mailbox, check the
permission for the operation, parse query options, and map GraphError to Graph's envelope."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.graph import odata
from sandbox.graph.errors import GraphError, access_denied, error_response
from sandbox.graph.serialize import View, prefers
from sandbox.graph.store import GraphStore, Item, Mailbox

GRAPH_AUDIENCE = "https://graph.microsoft.com"

# area -> (app roles for read, app roles for write, delegated scopes read, delegated write)
PERMISSIONS: dict[str, tuple[set[str], set[str], set[str], set[str]]] = {
    "mail": ({"Mail.Read", "Mail.ReadWrite", "Mail.ReadBasic.All", "Mail.ReadBasic"},
             {"Mail.ReadWrite"},
             {"Mail.Read", "Mail.ReadWrite", "Mail.ReadBasic", "Mail.Read.Shared",
              "Mail.ReadWrite.Shared"}, {"Mail.ReadWrite", "Mail.ReadWrite.Shared"}),
    "send": (set(), {"Mail.Send"}, set(), {"Mail.Send", "Mail.Send.Shared"}),
    "calendar": ({"Calendars.Read", "Calendars.ReadWrite", "Calendars.ReadBasic.All"},
                 {"Calendars.ReadWrite"},
                 {"Calendars.Read", "Calendars.ReadWrite", "Calendars.ReadBasic"},
                 {"Calendars.ReadWrite"}),
    "contacts": ({"Contacts.Read", "Contacts.ReadWrite"}, {"Contacts.ReadWrite"},
                 {"Contacts.Read", "Contacts.ReadWrite"}, {"Contacts.ReadWrite"}),
    "tasks": ({"Tasks.Read.All", "Tasks.ReadWrite.All"}, {"Tasks.ReadWrite.All"},
              {"Tasks.Read", "Tasks.ReadWrite"}, {"Tasks.ReadWrite"}),
    "settings": ({"MailboxSettings.Read", "MailboxSettings.ReadWrite"},
                 {"MailboxSettings.ReadWrite"},
                 {"MailboxSettings.Read", "MailboxSettings.ReadWrite"},
                 {"MailboxSettings.ReadWrite"}),
}


def authenticate(request: Request) -> Any:
    from sandbox import entra

    try:
        return entra.authenticate(request, GRAPH_AUDIENCE)
    except entra.InvalidToken as exc:
        raise GraphError(401, "InvalidAuthenticationToken",
                         f"Access token validation failure. {exc.reason}",
                         {"WWW-Authenticate": 'Bearer realm="", '
                          'authorization_uri="https://login.microsoftonline.com/common/oauth2/'
                          'authorize", client_id="00000003-0000-0000-c000-000000000000"'}
                         ) from exc


def allowed(principal: Any, area: str, write: bool) -> bool:
    app_r, app_w, del_r, del_w = PERMISSIONS[area]
    if principal.kind == "app":
        have, need = set(principal.roles), (app_w if write else app_r | app_w)
    else:
        have, need = set(principal.scopes), (del_w if write else del_r | del_w)
    return bool(have & need)


@dataclass
class Ctx:
    request: Request
    store: GraphStore
    mbx: Mailbox
    principal: Any
    view: View

    @property
    def params(self) -> dict[str, str]:
        return dict(self.request.query_params)

    def base(self) -> str:
        """Absolute URL base for links (nextLink, deltaLink), as the client called us."""
        return f"{self.request.url.scheme}://{self.request.url.netloc}"


def user_context(request: Request, area: str, write: bool) -> Ctx:
    world = request.app.state.world
    store: GraphStore = world.graph
    principal = authenticate(request)
    user_ref = request.path_params["user"]
    user = world.user(user_ref)
    if user is None:
        raise GraphError(404, "ErrorInvalidUser", f"The requested user '{user_ref}' is invalid.")
    if principal.kind != "app":
        if principal.user is None or principal.user.object_id != user.object_id:
            raise access_denied()
    if not allowed(principal, area, write):
        raise access_denied()
    params = request.query_params
    try:
        view = View(request.headers, odata.parse_select(params.get("$select")),
                    odata.parse_expand(params.get("$expand")))
    except GraphError:
        raise
    return Ctx(request, store, store.mailbox(user), principal, view)


Endpoint = Callable[[Request], Awaitable[Response]]


def handler(fn: Endpoint) -> Endpoint:
    """Turn GraphError into Graph's error envelope, echoing client-request-id."""

    @functools.wraps(fn)
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except GraphError as err:
            return error_response(err, request.headers.get("client-request-id"))
    return wrapped


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload. Please "
                         "ensure Content-Type header is set and payload is of valid JSON "
                         "format.") from exc
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return body


def ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


def no_content(status: int = 204) -> Response:
    return Response(status_code=status)


def page_size(request: Request) -> int | None:
    value = prefers(request.headers, "odata.maxpagesize")
    if value and value.isdigit():
        return int(value)
    return None


def check_if_match(request: Request, item: Item) -> None:
    expected = request.headers.get("if-match")
    if expected and expected != "*" and expected != item.etag():
        raise GraphError(412, "ErrorIrresolvableConflict",
                         "The send or update operation could not be performed because the "
                         "change key passed in the request does not match the current change "
                         "key for the item.")


def list_page(ctx: Ctx, items: list[Item], *, default_order: list[tuple[str, bool]],
              render: Callable[[Item], dict[str, Any]],
              record: Callable[[Item], dict[str, Any]]) -> Response:
    """$filter / $orderby / $top / $skip over a collection, with @odata.nextLink."""
    params = ctx.request.query_params
    rows = items
    if params.get("$filter"):
        pred = odata.parse_filter(params["$filter"])
        rows = [i for i in rows if pred(record(i))]
    order = odata.parse_orderby(params.get("$orderby")) or default_order
    if order:
        for name, desc in reversed(order):
            rows.sort(key=lambda i, n=name: _sort_key(record(i).get(n)), reverse=desc)
    top_raw = params.get("$top")
    if top_raw is not None and not top_raw.isdigit():
        raise GraphError(400, "BadRequest", "Invalid $top value.")
    top = int(top_raw) if top_raw else (page_size(ctx.request) or 10)
    top = max(1, min(top, 1000))
    skip = int(params.get("$skip", "0") or 0)
    chunk = rows[skip:skip + top]
    body: dict[str, Any] = {"value": [render(i) for i in chunk]}
    if skip + top < len(rows):
        q = dict(params)
        q["$skip"] = str(skip + top)
        q["$top"] = str(top)
        from urllib.parse import urlencode

        body["@odata.nextLink"] = f"{ctx.base()}{ctx.request.url.path}?{urlencode(q)}"
    return ok(body)


def _sort_key(v: Any) -> tuple[int, Any]:
    if v is None:
        return (0, "")
    if isinstance(v, dict):
        v = v.get("dateTime") or v.get("emailAddress", {}).get("address") or json.dumps(v)
    if isinstance(v, bool | int | float):
        return (1, v)
    return (2, str(v).lower())
