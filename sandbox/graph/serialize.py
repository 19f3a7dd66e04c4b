"""Items -> Graph JSON: `$select`, `$expand` of extended properties, ids per `Prefer`,
times in the `Prefer: outlook.timezone` zone (UTC by default, as Graph)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sandbox.graph.errors import GraphError
from sandbox.graph.store import Item, Mailbox

WINDOWS_ZONES = {
    "utc": "UTC", "coordinated universal time": "UTC",
    "pacific standard time": "America/Los_Angeles",
    "mountain standard time": "America/Denver", "central standard time": "America/Chicago",
    "eastern standard time": "America/New_York", "gmt standard time": "Europe/London",
    "w. europe standard time": "Europe/Berlin", "romance standard time": "Europe/Paris",
    "central europe standard time": "Europe/Budapest",
    "central european standard time": "Europe/Warsaw", "e. europe standard time": "Europe/Chisinau",
    "tokyo standard time": "Asia/Tokyo", "india standard time": "Asia/Kolkata",
    "aus eastern standard time": "Australia/Sydney", "singapore standard time": "Asia/Singapore",
    "china standard time": "Asia/Shanghai", "fle standard time": "Europe/Kiev",
}


def zone(name: str | None) -> dt.tzinfo:
    if not name:
        return dt.UTC
    iana = WINDOWS_ZONES.get(name.strip().lower(), name.strip())
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise GraphError(400, "TimeZoneNotSupportedException",
                         f"A valid TimeZone value must be specified. The following TimeZone "
                         f"value is not supported: '{name}'.") from exc


def parse_local(value: dict[str, Any] | None) -> dt.datetime | None:
    """dateTimeTimeZone -> aware UTC datetime."""
    if not value or not value.get("dateTime"):
        return None
    text = str(value["dateTime"]).replace("Z", "")
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    naive = dt.datetime.fromisoformat(text)
    if naive.tzinfo is None:
        naive = naive.replace(tzinfo=zone(value.get("timeZone")))
    return naive.astimezone(dt.UTC)


def fmt_local(when: dt.datetime, tz_name: str | None) -> dict[str, Any]:
    tz = zone(tz_name)
    local = when.astimezone(tz).replace(tzinfo=None)
    return {"dateTime": local.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": tz_name or "UTC"}


def prefers(request_headers: Any, name: str) -> str | None:
    """Value of one preference in the Prefer header(s), e.g. IdType, outlook.timezone."""
    raw = ",".join(v for k, v in request_headers.items() if k.lower() == "prefer")
    for part in raw.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == name.lower():
            return value.strip().strip('"') or ""
    return None


class View:
    """How this request wants items rendered."""

    def __init__(self, headers: Any, select: list[str] | None = None,
                 expand: dict[str, Any] | None = None) -> None:
        self.immutable = (prefers(headers, "IdType") or "").lower() == "immutableid"
        self.tz = prefers(headers, "outlook.timezone")
        if self.tz:
            zone(self.tz)
        self.body_type = (prefers(headers, "outlook.body-content-type") or "").lower() or None
        self.select = select
        self.expand = expand or {}
        self.everything = False

    def item_id(self, item: Item) -> str:
        return item.imm_id if self.immutable else item.reg_id


def _message(mbx: Mailbox, item: Item, view: View) -> dict[str, Any]:
    d = item.data
    out = {
        "createdDateTime": item.created, "lastModifiedDateTime": item.modified,
        "changeKey": item.change_key, "categories": list(d.get("categories", [])),
        "receivedDateTime": d.get("receivedDateTime"), "sentDateTime": d.get("sentDateTime"),
        "hasAttachments": bool(item.extra.get("attachments")),
        "internetMessageId": d.get("internetMessageId"), "subject": d.get("subject", ""),
        "bodyPreview": d.get("bodyPreview", ""), "importance": d.get("importance", "normal"),
        "parentFolderId": item.container, "conversationId": d.get("conversationId"),
        "conversationIndex": d.get("conversationIndex"),
        "isDeliveryReceiptRequested": d.get("isDeliveryReceiptRequested", False),
        "isReadReceiptRequested": d.get("isReadReceiptRequested", False),
        "isRead": d.get("isRead", False), "isDraft": d.get("isDraft", False),
        "webLink": f"https://outlook.office365.com/owa/?ItemID={item.reg_id}&exvsurl=1",
        "inferenceClassification": d.get("inferenceClassification", "focused"),
        "body": d.get("body", {"contentType": "text", "content": ""}),
        "sender": d.get("sender"), "from": d.get("from"),
        "toRecipients": d.get("toRecipients", []), "ccRecipients": d.get("ccRecipients", []),
        "bccRecipients": d.get("bccRecipients", []), "replyTo": d.get("replyTo", []),
        "flag": d.get("flag", {"flagStatus": "notFlagged"}),
    }
    if view.everything or (view.select and any(s.lower() == "internetmessageheaders"
                                                  for s in view.select)):
        out["internetMessageHeaders"] = list(item.extra.get("headers", []))
    return out


def _event(mbx: Mailbox, item: Item, view: View) -> dict[str, Any]:
    d = dict(item.data)
    out = {"createdDateTime": item.created, "lastModifiedDateTime": item.modified,
           "changeKey": item.change_key, **d}
    for key in ("start", "end"):
        when = parse_local(d.get(key))
        if when is not None:
            out[key] = fmt_local(when, view.tz or "UTC")
    out.setdefault("categories", [])
    out.pop("transactionId", None)
    if d.get("transactionId"):
        out["transactionId"] = d["transactionId"]
    return out


def _contact(mbx: Mailbox, item: Item, view: View) -> dict[str, Any]:
    return {"createdDateTime": item.created, "lastModifiedDateTime": item.modified,
            "changeKey": item.change_key, "categories": [], "parentFolderId":
            "AAMkACONTACTS" + mbx.key.replace("-", ""), **item.data}


def _task(mbx: Mailbox, item: Item, view: View) -> dict[str, Any]:
    return {"createdDateTime": item.created, "lastModifiedDateTime": item.modified,
            "importance": "normal", "status": "notStarted", "isReminderOn": False,
            "hasAttachments": False, "categories": [], "body": {"content": "",
                                                               "contentType": "text"},
            "bodyLastModifiedDateTime": item.modified, **item.data}


def _folder(mbx: Mailbox, item: Item, view: View) -> dict[str, Any]:
    msgs = [m for m in mbx.of_kind("message", item.imm_id)]
    children = [f for f in mbx.folders.values() if not f.deleted and f.container == item.imm_id]
    return {**item.data, "childFolderCount": len(children), "totalItemCount": len(msgs),
            "unreadItemCount": sum(1 for m in msgs if not m.data.get("isRead"))}


def _list(mbx: Mailbox, item: Item, view: View) -> dict[str, Any]:
    return dict(item.data)


RENDER = {"message": _message, "event": _event, "contact": _contact, "task": _task,
          "folder": _folder, "list": _list}
ODATA_TYPE = {"message": "#microsoft.graph.message", "event": "#microsoft.graph.event",
              "contact": "#microsoft.graph.contact", "task": "#microsoft.graph.todoTask",
              "folder": "#microsoft.graph.mailFolder", "list": "#microsoft.graph.todoTaskList"}
HAS_ETAG = {"message", "event", "contact", "task", "list"}


def render(mbx: Mailbox, item: Item, view: View) -> dict[str, Any]:
    full = RENDER[item.kind](mbx, item, view)
    if view.body_type == "text" and isinstance(full.get("body"), dict) and (
            full["body"].get("contentType") == "html"):
        full["body"] = {"contentType": "text",
                        "content": re.sub(r"<[^>]+>", "", full["body"].get("content") or "")}
    out: dict[str, Any] = {}
    if item.kind in HAS_ETAG:
        out["@odata.etag"] = item.etag()
    out["id"] = view.item_id(item)
    if view.select and not view.everything:
        lower = {k.lower(): k for k in full}
        for name in view.select:
            key = lower.get(name.lower())
            if key is not None and key != "id":
                out[key] = full[key]
    else:
        out.update({k: v for k, v in full.items() if v is not None or k in ("sentDateTime",)})
    for nav in ("singleValueExtendedProperties", "multiValueExtendedProperties"):
        if nav in view.expand or (view.everything and nav == "singleValueExtendedProperties"):
            pred = view.expand.get(nav)
            props = item.extra.get("svep" if nav.startswith("single") else "mvep", [])
            chosen = [dict(p) for p in props if pred is None or pred(p)]
            if chosen or view.everything:
                out[nav] = chosen
    if view.everything:
        out["immutableId"] = item.imm_id
        out["regularId"] = item.reg_id
        out["parentFolderId" if item.kind == "message" else "_container"] = item.container
    return out


def filter_record(mbx: Mailbox, item: Item) -> dict[str, Any]:
    """What $filter sees: every property, headers and extended properties included."""
    view = View({})
    view.everything = True
    rec = RENDER[item.kind](mbx, item, view)
    rec["id"] = item.reg_id
    rec["singleValueExtendedProperties"] = item.extra.get("svep", [])
    return rec
