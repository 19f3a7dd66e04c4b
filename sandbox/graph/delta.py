"""One delta engine for messages, folders, events, calendarView, contacts, lists and tasks.

State tokens are opaque base64url JSON naming a position in the mailbox change log:
`p` the position the round started from (0 = initial sync), `c` the cursor within the
round, `s` the snapshot position the round reports up to. An item is reported at the log
entry that is its latest in that container, so an item changed mid-round is reported in the
next round instead of twice, and a removed item as `{"id", "@removed": {"reason"}}`.
Expired state answers 410 Gone, code syncStateNotFound, with a Location to restart
(learn.microsoft.com/graph/delta-query-overview).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from sandbox.graph.errors import GraphError
from sandbox.graph.store import Item, Mailbox

DEFAULT_PAGE = 10
MAX_PAGE = 1000


def encode(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()
                                    ).decode().rstrip("=")


def decode(token: str) -> dict[str, Any]:
    try:
        pad = "=" * (-len(token) % 4)
        state = json.loads(base64.urlsafe_b64decode(token + pad))
        if not isinstance(state, dict):
            raise ValueError
        return state
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "The delta token is not valid.") from exc


def gone(restart_url: str) -> GraphError:
    return GraphError(410, "syncStateNotFound",
                      "The sync state generation is not found. The delta token is expired "
                      "and data must be synchronized again.", {"Location": restart_url})


Render = Callable[[Item], list[dict[str, Any]]]
Removed = Callable[[Item], list[str]]


def run(mbx: Mailbox, *, key: str, url_base: str, params: dict[str, str], page_size: int | None,
        visible: Callable[[Item], bool], render: Render, removed_ids: Removed,
        extra_state: dict[str, Any] | None = None) -> tuple[dict[str, Any], int]:
    """One delta call. `params` are the query options of this call (state tokens included)."""
    store = mbx.store
    token = params.get("$deltatoken") or params.get("$skiptoken")
    options = {k: v for k, v in params.items() if k not in ("$deltatoken", "$skiptoken")}
    if token:
        state = decode(token)
        options = state.get("o", {})
        restart = url_base + ("?" + urlencode(options) if options else "")
        if state.get("e") != store.epoch or state.get("m") != mbx.key or state.get("x") != key:
            raise gone(restart)
        if store.world.faults.take("graph", mbx.user.upn, "expire_delta") or \
                store.world.faults.take("graph", mbx.key, "expire_delta"):
            raise gone(restart)
        if store.clock() - float(state.get("t", 0)) > store.DELTA_RETENTION_SECONDS:
            raise gone(restart)
        start, cursor = int(state["p"]), int(state["c"])
        snapshot = int(state["s"]) if "$skiptoken" in params else store.seq
        if "$deltatoken" in params:
            cursor = start
    else:
        start, cursor, snapshot = 0, 0, store.seq
    top = options.get("$top")
    size = page_size or (int(top) if top and top.isdigit() else None) or DEFAULT_PAGE
    size = max(1, min(size, MAX_PAGE))
    change_filter = {c.strip().lower() for c in options.get("changeType", "").split(",")
                     if c.strip()}
    index = mbx.index.get(key)
    value: list[dict[str, Any]] = []
    last = cursor
    more = False
    if index is not None:
        for seq, imm in index.after(cursor, snapshot):
            item = mbx.items[imm]
            if item.latest.get(key) != seq:
                last = seq
                continue  # a later entry reports this item
            if len(value) >= size:
                more = True
                break
            last = seq
            if visible(item):
                kind = "created" if _created_since(item, start) else "updated"
                if change_filter and kind not in change_filter:
                    continue
                value.extend(render(item))
            elif start > 0 and not _created_since(item, start) and (
                    not change_filter or "deleted" in change_filter):
                # never reported to this client (created after its last round): skip
                reason = "deleted" if item.deleted else "changed"
                for rid in removed_ids(item):
                    value.append({"id": rid, "@removed": {"reason": reason}})
    state = {"e": store.epoch, "m": mbx.key, "x": key, "o": options, "t": store.clock(),
             **(extra_state or {})}
    body: dict[str, Any] = {"value": value}
    if more:
        nxt = encode({**state, "p": start, "c": last, "s": snapshot})
        body["@odata.nextLink"] = f"{url_base}?$skiptoken={nxt}"
    else:
        dl = encode({**state, "p": snapshot, "c": snapshot, "s": snapshot})
        body["@odata.deltaLink"] = f"{url_base}?$deltatoken={dl}"
    return body, size


def _created_since(item: Item, start: int) -> bool:
    first = item.extra.get("first_seq")
    return first is None or first > start


def window(params: dict[str, str]) -> tuple[dt.datetime, dt.datetime] | None:
    """calendarView window, from the call or from the token's options."""
    a, b = params.get("startDateTime"), params.get("endDateTime")
    if not a or not b:
        return None
    try:
        return (_iso(a), _iso(b))
    except ValueError as exc:
        raise GraphError(400, "ErrorInvalidParameter",
                         "startDateTime and endDateTime must be ISO 8601 date-times.") from exc


def _iso(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
