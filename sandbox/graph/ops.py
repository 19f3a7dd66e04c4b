"""What happens in Exchange when mail is delivered, sent, moved, or a meeting changes.

Handlers, the control API and the seed loader all call these functions, so a message
delivered by a test and one sent through Graph follow exactly the same path.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import os
import re
import secrets
import uuid
from typing import Any

from sandbox.graph.errors import GraphError, bad_request
from sandbox.graph.serialize import fmt_local, parse_local
from sandbox.graph.store import Item, Mailbox, new_change_key, new_id, now_iso

MESSAGE_WRITABLE = {
    "subject", "body", "toRecipients", "ccRecipients", "bccRecipients", "replyTo", "from",
    "sender", "importance", "categories", "isRead", "isDeliveryReceiptRequested",
    "isReadReceiptRequested", "flag", "internetMessageHeaders", "inferenceClassification",
    "singleValueExtendedProperties", "multiValueExtendedProperties", "attachments",
    "internetMessageId", "conversationId", "receivedDateTime", "sentDateTime", "isDraft",
    "parentFolderId", "id", "@odata.type", "@odata.etag", "bodyPreview", "hasAttachments",
    "changeKey", "createdDateTime", "lastModifiedDateTime", "webLink", "conversationIndex",
    "uniqueBody",
}
SENT_LOCKED = {"body", "toRecipients", "ccRecipients", "bccRecipients", "from", "sender"}
EVENT_WRITABLE = {
    "subject", "body", "start", "end", "location", "locations", "attendees", "importance",
    "showAs", "sensitivity", "categories", "isAllDay", "isReminderOn",
    "reminderMinutesBeforeStart", "responseRequested", "recurrence", "transactionId",
    "allowNewTimeProposals", "isOnlineMeeting", "onlineMeetingProvider", "hideAttendees",
    "singleValueExtendedProperties", "multiValueExtendedProperties", "isCancelled",
}
CONTACT_WRITABLE = {
    "assistantName", "birthday", "businessAddress", "businessHomePage", "businessPhones",
    "children", "companyName", "department", "displayName", "emailAddresses", "fileAs",
    "generation", "givenName", "homeAddress", "homePhones", "imAddresses", "initials",
    "jobTitle", "manager", "middleName", "mobilePhone", "nickName", "officeLocation",
    "otherAddress", "personalNotes", "profession", "spouseName", "surname", "title",
    "yomiCompanyName", "yomiGivenName", "yomiSurname", "categories",
    "singleValueExtendedProperties", "multiValueExtendedProperties",
}
TASK_WRITABLE = {
    "title", "body", "importance", "status", "categories", "dueDateTime", "startDateTime",
    "reminderDateTime", "isReminderOn", "completedDateTime", "recurrence", "linkedResources",
    "checklistItems",
}
IGNORED_ON_WRITE = {"id", "@odata.type", "@odata.etag", "changeKey", "createdDateTime",
                    "lastModifiedDateTime"}
IN_REPLY_TO_PROP = "string 0x1042"     # PidTagInReplyToId
REFERENCES_PROP = "string 0x1039"      # PidTagInternetReferences
SVEP_ID = re.compile(
    r"^(String|Integer|Boolean|SystemTime|Binary|Double|Float|Currency|CLSID|Short|Long|"
    r"Object|StringArray|IntegerArray)\s+(\{[0-9a-fA-F-]{36}\}\s+(Name|Id)\s+.+|0x[0-9a-fA-F]+)$")


def _check_props(body: dict[str, Any], allowed: set[str], type_name: str) -> None:
    for key in body:
        if key not in allowed and key not in IGNORED_ON_WRITE and not key.startswith("@"):
            raise GraphError(400, "RequestBodyRead",
                             f"The property '{key}' does not exist on type "
                             f"'microsoft.graph.{type_name}'. Make sure to only use property "
                             "names that are defined by the type or mark the type as open type.")


def _preview(body: dict[str, Any] | None) -> str:
    text = (body or {}).get("content") or ""
    if (body or {}).get("contentType", "text").lower() == "html":
        text = re.sub(r"<[^>]+>", " ", text)
        text = html.unescape(text)
    return " ".join(text.split())[:255]


def _body(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        ct = str(value.get("contentType", "text")).lower()
        if ct not in ("text", "html"):
            raise bad_request(f"Invalid body contentType '{ct}'.")
        return {"contentType": ct, "content": value.get("content") or ""}
    text = str(value or "")
    return {"contentType": "html" if "<" in text else "text", "content": text}


def recipient(addr: Any, world: Any = None) -> dict[str, Any]:
    if isinstance(addr, dict):
        ea = addr.get("emailAddress", addr)
        out = {"address": ea.get("address", ""), "name": ea.get("name") or ea.get("address", "")}
        return {"emailAddress": out}
    address = str(addr)
    name = address
    if world is not None:
        user = world.user(address)
        if user is not None:
            name = user.display_name
    return {"emailAddress": {"name": name, "address": address}}


def _addresses(recips: list[dict[str, Any]] | None) -> list[str]:
    return [r.get("emailAddress", {}).get("address", "").lower() for r in recips or []]


def _svep_merge(item: Item, props: list[dict[str, Any]] | None, key: str = "svep") -> None:
    current = {p["id"].lower(): p for p in item.extra.get(key, [])}
    for p in props or []:
        pid = str(p.get("id", "")).strip()
        if not SVEP_ID.match(pid):
            raise GraphError(400, "ErrorInvalidExtendedPropertyValue" if pid else "BadRequest",
                             f"The extended property id '{pid}' is not valid.")
        current[pid.lower()] = {"id": pid, "value": p.get("value")}
    item.extra[key] = list(current.values())


def _svep_value(item: Item, prop: str) -> str | None:
    for p in item.extra.get("svep", []):
        if p["id"].lower() == prop:
            return p.get("value")
    return None


def _check_headers(store: Any, headers: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    out = []
    for h in headers or []:
        name, value = str(h.get("name", "")), str(h.get("value", ""))
        if store.strict_headers and not name.lower().startswith("x-"):
            raise GraphError(400, "InvalidInternetMessageHeader",
                             f"The internet message header name '{name}' should start with "
                             "'x-' or 'X-'.")
        out.append({"name": name, "value": value})
    return out


def new_conversation_index(parent: str | None = None) -> str:
    """Header block of 22 bytes; a reply appends a 5-byte child block (MS-OXOMSG)."""
    if parent:
        raw = base64.b64decode(parent) + os.urandom(5)
    else:
        raw = b"\x01" + os.urandom(5) + uuid.uuid4().bytes
    return base64.b64encode(raw).decode()


def conversation_id_for(index: str) -> str:
    head = base64.b64decode(index)[6:22]
    return "AAQkA" + base64.urlsafe_b64encode(head).decode().rstrip("=")


def new_internet_message_id(sender_address: str) -> str:
    domain = sender_address.split("@", 1)[-1] or "contoso.com"
    return f"<{secrets.token_hex(12).upper()}@{domain}>"


# ---- messages ----------------------------------------------------------------------------

def create_message(mbx: Mailbox, folder_id: str, body: dict[str, Any], *,
                   draft: bool = True, notify: str = "created") -> Item:
    """POST /messages (a draft) and the core of every other way a message appears."""
    _check_props(body, MESSAGE_WRITABLE, "message")
    world = mbx.store.world
    me = recipient(mbx.user.upn, world)
    data: dict[str, Any] = {
        "subject": body.get("subject") or "",
        "body": _body(body.get("body")),
        "toRecipients": [recipient(r) for r in body.get("toRecipients") or []],
        "ccRecipients": [recipient(r) for r in body.get("ccRecipients") or []],
        "bccRecipients": [recipient(r) for r in body.get("bccRecipients") or []],
        "replyTo": [recipient(r) for r in body.get("replyTo") or []],
        "importance": body.get("importance", "normal"),
        "categories": list(body.get("categories") or []),
        "isRead": bool(body.get("isRead", draft)),
        "isDraft": draft,
        "isDeliveryReceiptRequested": bool(body.get("isDeliveryReceiptRequested", False)),
        "isReadReceiptRequested": bool(body.get("isReadReceiptRequested", False)),
        "from": recipient(body["from"]) if body.get("from") else (me if draft else None),
        "sender": recipient(body.get("sender") or body["from"]) if body.get("from") else (
            me if draft else None),
        "receivedDateTime": body.get("receivedDateTime") or now_iso(),
        "sentDateTime": body.get("sentDateTime") or (None if draft else now_iso()),
        "internetMessageId": body.get("internetMessageId"),
        "flag": body.get("flag") or {"flagStatus": "notFlagged"},
        "inferenceClassification": body.get("inferenceClassification", "focused"),
    }
    if data["importance"] not in ("low", "normal", "high"):
        raise bad_request(f"Invalid importance '{data['importance']}'.")
    data["bodyPreview"] = _preview(data["body"])
    index = body.get("conversationIndex") or new_conversation_index()
    data["conversationIndex"] = index
    data["conversationId"] = body.get("conversationId") or conversation_id_for(index)
    imm = new_id("AAkALg")
    item = Item("message", imm, new_id("AAMkA"), folder_id, data)
    item.extra["headers"] = _check_headers(mbx.store, body.get("internetMessageHeaders"))
    _svep_merge(item, body.get("singleValueExtendedProperties"))
    _svep_merge(item, body.get("multiValueExtendedProperties"), "mvep")
    item.extra["attachments"] = []
    for att in body.get("attachments") or []:
        add_attachment(item, att, touch=None)
    return mbx.add(item, notify=notify)


def update_message(mbx: Mailbox, item: Item, body: dict[str, Any]) -> Item:
    _check_props(body, MESSAGE_WRITABLE, "message")
    for key, value in body.items():
        if key in IGNORED_ON_WRITE or key.startswith("@"):
            continue
        if key in SENT_LOCKED and not item.data.get("isDraft"):
            raise GraphError(400, "ErrorInvalidPropertyUpdateSentMessage",
                             f"Update operation is not supported for property '{key}' of a "
                             "sent message.")
        if key == "singleValueExtendedProperties":
            _svep_merge(item, value)
        elif key == "multiValueExtendedProperties":
            _svep_merge(item, value, "mvep")
        elif key == "internetMessageHeaders":
            if not item.data.get("isDraft"):
                raise GraphError(400, "ErrorInvalidPropertyUpdateSentMessage",
                                 "internetMessageHeaders can only be set on a draft.")
            item.extra["headers"] = _check_headers(mbx.store, value)
        elif key == "body":
            item.data["body"] = _body(value)
            item.data["bodyPreview"] = _preview(item.data["body"])
        elif key in ("toRecipients", "ccRecipients", "bccRecipients", "replyTo"):
            item.data[key] = [recipient(r) for r in value or []]
        elif key in ("from", "sender"):
            item.data[key] = recipient(value) if value else None
        elif key in ("categories",):
            item.data[key] = list(value or [])
        elif key in ("isRead", "subject", "importance", "flag", "inferenceClassification",
                     "isDeliveryReceiptRequested", "isReadReceiptRequested"):
            item.data[key] = value
        elif key == "attachments":
            raise bad_request("Use the attachments collection to add attachments.")
        # other read-only properties are ignored, as Graph does
    mbx.touch(item, mbx.keys_of(item))
    return item


def add_attachment(item: Item, att: dict[str, Any], touch: Mailbox | None) -> dict[str, Any]:
    otype = att.get("@odata.type", "#microsoft.graph.fileAttachment")
    if otype.lstrip("#").lower() != "microsoft.graph.fileattachment":
        raise bad_request("Only file attachments are supported by the sandbox.")
    raw = att.get("contentBytes") or ""
    try:
        content = base64.b64decode(raw, validate=True)
    except ValueError as exc:
        raise bad_request("contentBytes is not valid base64.") from exc
    if len(content) > 3 * 1024 * 1024:
        raise GraphError(413, "ErrorAttachmentSizeLimitExceeded",
                         "Attachments over 3 MB need an upload session.")
    record = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "id": new_id("AAMkAATT"), "name": att.get("name") or "attachment",
        "contentType": att.get("contentType") or "application/octet-stream",
        "size": len(content), "isInline": bool(att.get("isInline", False)),
        "lastModifiedDateTime": now_iso(), "contentId": att.get("contentId"),
        "contentLocation": None, "contentBytes": base64.b64encode(content).decode(),
    }
    item.extra.setdefault("attachments", []).append(record)
    if touch is not None:
        touch.touch(item, touch.keys_of(item))
    return record


def deliver(mbx: Mailbox, raw: dict[str, Any], folder: str = "inbox") -> Item:
    """A message arriving from outside (seed, control API) or from another mailbox."""
    target = mbx.folder(raw.get("folder") or folder)
    if target is None:
        raise bad_request(f"unknown folder {raw.get('folder') or folder!r}")
    world = mbx.store.world
    sender = raw.get("from") or "someone@fabrikam.com"
    sender_r = recipient(sender, world)
    if raw.get("fromName"):
        sender_r["emailAddress"]["name"] = raw["fromName"]
    to = raw.get("to") or [mbx.user.upn]
    to = [to] if isinstance(to, str) else to
    cc = raw.get("cc") or []
    cc = [cc] if isinstance(cc, str) else cc
    imid = raw.get("internetMessageId") or new_internet_message_id(
        sender_r["emailAddress"]["address"])
    in_reply_to = raw.get("inReplyTo")
    # every recipient's copy of one message shares its thread (Exchange derives the
    # conversation from the Thread-Index header the copies share)
    conv_index, conv_id = raw.get("_conversation") or _thread(mbx.store, in_reply_to)
    body = {
        "subject": raw.get("subject", ""), "body": _body(raw.get("body", "")),
        "from": sender_r, "sender": sender_r,
        "toRecipients": [recipient(r, world) for r in to],
        "ccRecipients": [recipient(r, world) for r in cc],
        "receivedDateTime": raw.get("receivedDateTime") or now_iso(),
        "sentDateTime": raw.get("sentDateTime") or raw.get("receivedDateTime") or now_iso(),
        "internetMessageId": imid, "categories": raw.get("categories") or [],
        "isRead": bool(raw.get("isRead", False)), "importance": raw.get("importance", "normal"),
        "conversationIndex": conv_index, "conversationId": conv_id,
        "attachments": raw.get("attachments") or [],
    }
    headers = wire_headers(body, in_reply_to, raw.get("references"), raw.get("headers"))
    strict = mbx.store.strict_headers
    mbx.store.strict_headers = False
    try:
        item = create_message(mbx, target.imm_id, {**body, "internetMessageHeaders": headers},
                              draft=False)
    finally:
        mbx.store.strict_headers = strict
    if raw.get("singleValueExtendedProperties"):
        _svep_merge(item, raw["singleValueExtendedProperties"])
    mbx.store.threads.setdefault(imid.lower(), (conv_index, conv_id))
    return item


def _thread(store: Any, in_reply_to: str | None) -> tuple[str, str]:
    if in_reply_to:
        parent = store.threads.get(in_reply_to.strip().lower())
        if parent:
            index = new_conversation_index(parent[0])
            return index, parent[1]
    index = new_conversation_index()
    return index, conversation_id_for(index)


def wire_headers(msg: dict[str, Any], in_reply_to: str | None, references: str | None,
                 custom: Any) -> list[dict[str, str]]:
    def fmt(rs: list[dict[str, Any]]) -> str:
        return ", ".join(f"{r['emailAddress'].get('name') or ''} <{r['emailAddress']['address']}>"
                         for r in rs)

    date = dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    headers = [
        {"name": "Received", "value": f"from sandbox.local by sandbox.local; {date}"},
        {"name": "From", "value": fmt([msg["from"]])},
        {"name": "To", "value": fmt(msg.get("toRecipients", []))},
    ]
    if msg.get("ccRecipients"):
        headers.append({"name": "CC", "value": fmt(msg["ccRecipients"])})
    headers += [
        {"name": "Subject", "value": msg.get("subject", "")},
        {"name": "Date", "value": date},
        {"name": "Message-ID", "value": msg["internetMessageId"]},
    ]
    if in_reply_to:
        headers.append({"name": "In-Reply-To", "value": in_reply_to})
    if references or in_reply_to:
        headers.append({"name": "References", "value": references or in_reply_to or ""})
    headers += [{"name": "Thread-Index", "value": msg["conversationIndex"]},
                {"name": "MIME-Version", "value": "1.0"},
                {"name": "Content-Type", "value": "text/html; charset=\"utf-8\""
                 if msg["body"]["contentType"] == "html" else "text/plain; charset=\"utf-8\""}]
    if isinstance(custom, dict):
        custom = [{"name": k, "value": v} for k, v in custom.items()]
    for h in custom or []:
        headers.append({"name": str(h["name"]), "value": str(h["value"])})
    return headers


def send(mbx: Mailbox, message: dict[str, Any] | None, *, save: bool = True,
         draft: Item | None = None, check_rate: bool = True) -> dict[str, Any]:
    """sendMail / draft send: Sent Items copy, internal delivery, outbox for the rest."""
    store, world = mbx.store, mbx.store.world
    if check_rate:
        wait = mbx.check_send_rate()
        if wait is not None:
            raise GraphError(429, "ErrorExceededMessageLimit",
                             "Cannot send: the mailbox is over its sending limit of 30 "
                             "messages per minute.", {"Retry-After": str(int(wait + 0.999))})
    if draft is not None:
        body_src = draft
    else:
        if not isinstance(message, dict):
            raise bad_request("Empty Payload. JSON content expected.", "ErrorInvalidRequest")
        body_src = create_message(mbx, mbx.wellknown["drafts"], message, draft=True,
                                  notify="created")
        if not save:
            body_src.extra["transient"] = True
    d = body_src.data
    recipients = d["toRecipients"] + d["ccRecipients"] + d["bccRecipients"]
    if not recipients:
        if draft is None:
            mbx.remove(body_src)
        raise GraphError(400, "ErrorInvalidRecipients",
                         "At least one recipient isn't valid., A message can't be sent because "
                         "it contains no recipients.")
    in_reply_to = _svep_value(body_src, IN_REPLY_TO_PROP)
    references = _svep_value(body_src, REFERENCES_PROP)
    for h in body_src.extra.get("headers", []):
        if h["name"].lower() == "in-reply-to":
            in_reply_to = h["value"]
        elif h["name"].lower() == "references":
            references = h["value"]
    conv_index, conv_id = _thread(store, in_reply_to)
    me = recipient(mbx.user.upn, world)
    imid = new_internet_message_id(mbx.user.upn)
    now = now_iso()
    d.update({"isDraft": False, "isRead": True, "from": d.get("from") or me, "sender": me,
              "sentDateTime": now, "receivedDateTime": now, "internetMessageId": imid,
              "conversationIndex": conv_index, "conversationId": conv_id})
    custom = [h for h in body_src.extra.get("headers", [])
              if h["name"].lower() not in ("in-reply-to", "references")]
    headers = wire_headers(d, in_reply_to, references, custom)
    body_src.extra["headers"] = headers
    store.threads.setdefault(imid.lower(), (conv_index, conv_id))
    sent_id = None
    if save:
        mbx.move(body_src, mbx.wellknown["sentitems"])
        mbx.touch(body_src, mbx.keys_of(body_src))
        sent_id = body_src.imm_id
    else:
        mbx.remove(body_src)
    delivered: list[dict[str, str]] = []
    external: list[str] = []
    seen: set[str] = set()
    for r in recipients:
        address = r["emailAddress"]["address"].lower()
        if address in seen:
            continue
        seen.add(address)
        user = world.user(address)
        if user is None:
            external.append(address)
            continue
        target = store.mailbox(user)
        copy = {
            "subject": d["subject"], "body": d["body"], "from": d["from"], "sender": me,
            "toRecipients": d["toRecipients"], "ccRecipients": d["ccRecipients"],
            "replyTo": d.get("replyTo") or [], "importance": d.get("importance", "normal"),
            "receivedDateTime": now, "sentDateTime": now, "internetMessageId": imid,
            "conversationIndex": conv_index, "conversationId": conv_id,
            "attachments": [{k: v for k, v in a.items() if k != "id"}
                            for a in body_src.extra.get("attachments", [])],
        }
        strict = store.strict_headers
        store.strict_headers = False
        try:
            got = create_message(target, target.wellknown["inbox"],
                                 {**copy, "internetMessageHeaders": headers}, draft=False)
        finally:
            store.strict_headers = strict
        delivered.append({"upn": user.upn, "id": got.reg_id, "immutableId": got.imm_id})
    record = {"internetMessageId": imid, "conversationId": conv_id, "from": mbx.user.upn,
              "subject": d["subject"], "sentItemId": sent_id, "delivered": delivered,
              "external": external, "sentDateTime": now}
    if external:
        store.outbox.append({**record, "to": _addresses(d["toRecipients"]),
                             "cc": _addresses(d["ccRecipients"]),
                             "bcc": _addresses(d["bccRecipients"]), "body": d["body"],
                             "headers": headers,
                             "singleValueExtendedProperties": body_src.extra.get("svep", [])})
    return record


# ---- events ------------------------------------------------------------------------------

def _ical_uid() -> str:
    return ("040000008200E00074C5B7101A82E00800000000" + secrets.token_hex(8).upper()
            + "00000000000000001000000" + secrets.token_hex(16).upper())


def _norm_attendee(a: Any, world: Any) -> dict[str, Any]:
    if isinstance(a, str):
        a = {"emailAddress": {"address": a}}
    r = recipient(a, world)
    r["type"] = a.get("type", "required")
    if r["type"] not in ("required", "optional", "resource"):
        raise bad_request(f"Invalid attendee type '{r['type']}'.")
    r["status"] = a.get("status") or {"response": "none", "time": "0001-01-01T00:00:00Z"}
    return r


def _event_fields(mbx: Mailbox, body: dict[str, Any], data: dict[str, Any]) -> None:
    world = mbx.store.world
    for key, value in body.items():
        if key in IGNORED_ON_WRITE or key.startswith("@") or key.endswith("ExtendedProperties"):
            continue
        if key == "body":
            data["body"] = _body(value)
            data["bodyPreview"] = _preview(data["body"])
        elif key == "attendees":
            data["attendees"] = [_norm_attendee(a, world) for a in value or []]
        elif key in ("start", "end"):
            if parse_local(value) is None:
                raise bad_request(f"'{key}' must have a dateTime.", "ErrorInvalidRequest")
            data[key] = {"dateTime": value["dateTime"], "timeZone": value.get("timeZone", "UTC")}
            data["originalStartTimeZone" if key == "start" else "originalEndTimeZone"] = (
                value.get("timeZone", "UTC"))
        elif key == "location":
            data["location"] = value if isinstance(value, dict) else {"displayName": str(value)}
        elif key == "transactionId":
            if "transactionId" not in data:
                data["transactionId"] = value
        else:
            data[key] = value
    for key, allowed in (("showAs", {"unknown", "free", "tentative", "busy", "oof",
                                     "workingElsewhere"}),
                         ("importance", {"low", "normal", "high"}),
                         ("sensitivity", {"normal", "personal", "private", "confidential"})):
        if data.get(key) not in allowed:
            raise bad_request(f"Invalid value '{data.get(key)}' for {key}.")
    data["type"] = "seriesMaster" if data.get("recurrence") else "singleInstance"


def create_event(mbx: Mailbox, body: dict[str, Any], *, organizer: Mailbox | None = None,
                 ical_uid: str | None = None) -> tuple[Item, bool]:
    """POST /events. Returns (event, created); a repeated transactionId returns the first."""
    _check_props(body, EVENT_WRITABLE, "event")
    tx = body.get("transactionId")
    if tx and organizer is None:
        existing = mbx.store.transactions.get((mbx.key, tx))
        found = mbx.find(existing) if existing else None
        if found is not None:
            return found, False
    if "start" not in body or "end" not in body:
        raise bad_request("Start and End must be specified for an event.",
                          "ErrorPropertyValidationFailure")
    org = organizer or mbx
    data: dict[str, Any] = {
        "subject": "", "body": {"contentType": "text", "content": ""}, "bodyPreview": "",
        "importance": "normal", "sensitivity": "normal", "showAs": "busy", "isAllDay": False,
        "isCancelled": False, "isDraft": False, "isReminderOn": True,
        "reminderMinutesBeforeStart": 15, "responseRequested": True,
        "allowNewTimeProposals": True, "hideAttendees": False, "isOnlineMeeting": False,
        "onlineMeetingProvider": "unknown", "categories": [], "attendees": [],
        "location": {"displayName": "", "locationType": "default",
                     "uniqueIdType": "unknown"}, "locations": [], "recurrence": None,
        "seriesMasterId": None, "iCalUId": ical_uid or _ical_uid(),
        "organizer": recipient(org.user.upn, mbx.store.world),
        "isOrganizer": organizer is None,
        "responseStatus": {"response": "organizer" if organizer is None else "notResponded",
                           "time": "0001-01-01T00:00:00Z"},
        "cancelledOccurrences": [],
    }
    _event_fields(mbx, body, data)
    start, end = parse_local(data["start"]), parse_local(data["end"])
    if start and end and end < start:
        raise bad_request("The end time must be after the start time.",
                          "ErrorPropertyValidationFailure")
    imm = new_id("AAkALgEV")
    item = Item("event", imm, new_id("AAMkAEV"), "", data)
    _svep_merge(item, body.get("singleValueExtendedProperties"))
    data["webLink"] = f"https://outlook.office365.com/owa/?itemid={item.reg_id}&exvsurl=1"
    mbx.add(item)
    if tx and organizer is None:
        mbx.store.transactions[(mbx.key, tx)] = imm
    if organizer is None:
        _propagate(mbx, item)
    return item, True


def update_event(mbx: Mailbox, item: Item, body: dict[str, Any]) -> Item:
    _check_props(body, EVENT_WRITABLE, "event")
    if "transactionId" in body and body["transactionId"] != item.data.get("transactionId"):
        raise bad_request("transactionId can't be changed after the event is created.")
    data = dict(item.data)
    _event_fields(mbx, body, data)
    start, end = parse_local(data["start"]), parse_local(data["end"])
    if start and end and end < start:
        raise bad_request("The end time must be after the start time.",
                          "ErrorPropertyValidationFailure")
    item.data = data
    if "singleValueExtendedProperties" in body:
        _svep_merge(item, body["singleValueExtendedProperties"])
    mbx.touch(item, mbx.keys_of(item))
    if item.data.get("isOrganizer"):
        _propagate(mbx, item)
    return item


def _attendee_boxes(mbx: Mailbox, item: Item) -> list[Mailbox]:
    out = []
    for a in item.data.get("attendees", []):
        user = mbx.store.world.user(a["emailAddress"]["address"])
        if user is not None and user.object_id != mbx.user.object_id:
            out.append(mbx.store.mailbox(user))
    return out


def _copy_of(box: Mailbox, ical_uid: str) -> Item | None:
    for it in box.of_kind("event"):
        if it.data.get("iCalUId") == ical_uid:
            return it
    return None


SHARED_EVENT_FIELDS = ("subject", "body", "bodyPreview", "start", "end", "location",
                       "locations", "attendees", "recurrence", "importance", "sensitivity",
                       "isAllDay", "type", "originalStartTimeZone", "originalEndTimeZone",
                       "isCancelled", "cancelledOccurrences")


def _propagate(mbx: Mailbox, item: Item) -> None:
    """Exchange puts the meeting in each internal attendee's calendar and keeps it updated."""
    uid = item.data["iCalUId"]
    for box in _attendee_boxes(mbx, item):
        copy = _copy_of(box, uid)
        shared = {k: item.data.get(k) for k in SHARED_EVENT_FIELDS}
        if copy is None:
            new, _ = create_event(box, {"start": item.data["start"], "end": item.data["end"]},
                                  organizer=mbx, ical_uid=uid)
            new.data.update(shared)
            new.data["showAs"] = "tentative"
            box.touch(new, box.keys_of(new))
        else:
            copy.data.update(shared)
            box.touch(copy, box.keys_of(copy))


def cancel_event(mbx: Mailbox, item: Item, comment: str | None) -> None:
    if not item.data.get("isOrganizer"):
        raise GraphError(400, "ErrorAccessDenied",
                         "Your request can't be completed. You need to be an organizer to "
                         "cancel a meeting.")
    _cancel_copies(mbx, item, comment)
    mbx.remove(item)


def _cancel_copies(mbx: Mailbox, item: Item, comment: str | None) -> None:
    uid = item.data["iCalUId"]
    for box in _attendee_boxes(mbx, item):
        copy = _copy_of(box, uid)
        if copy is not None:
            copy.data["isCancelled"] = True
            copy.data["subject"] = "Canceled: " + item.data.get("subject", "")
            box.touch(copy, box.keys_of(copy))
        deliver(box, {"from": mbx.user.upn, "to": [box.user.upn],
                      "subject": "Canceled: " + item.data.get("subject", ""),
                      "body": comment or "This meeting has been canceled."})


def delete_event(mbx: Mailbox, item: Item) -> None:
    """Deleting a meeting on the organizer's calendar cancels it for the attendees."""
    if item.data.get("isOrganizer") and item.data.get("attendees"):
        _cancel_copies(mbx, item, None)
    mbx.remove(item)


def occurrences(item: Item, window_start: dt.datetime, window_end: dt.datetime,
                cap: int = 1000) -> list[dt.datetime]:
    """Occurrence starts (UTC) of a daily/weekly/absoluteMonthly series within a window."""
    rec = item.data.get("recurrence") or {}
    pattern, rng = rec.get("pattern") or {}, rec.get("range") or {}
    start = parse_local(item.data["start"])
    if start is None:
        return []
    kind = pattern.get("type", "daily")
    interval = max(1, int(pattern.get("interval") or 1))
    tz = item.data["start"].get("timeZone")
    from sandbox.graph.serialize import zone

    local_start = start.astimezone(zone(tz))
    end_date = dt.date.fromisoformat(rng["endDate"]) if rng.get("type") == "endDate" and (
        rng.get("endDate")) else None
    count_limit = int(rng.get("numberOfOccurrences") or 0) if rng.get("type") == "numbered" \
        else 0
    days = [d.lower() for d in pattern.get("daysOfWeek") or []]
    names = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    cancelled = set(item.data.get("cancelledOccurrences") or [])
    out: list[dt.datetime] = []
    n = 0
    day = local_start.date()
    if rng.get("startDate"):
        day = max(day, dt.date.fromisoformat(rng["startDate"]))
    week0 = day - dt.timedelta(days=day.weekday())
    for _ in range(cap * 8):
        if end_date and day > end_date:
            break
        hit = False
        if kind == "daily":
            hit = (day - local_start.date()).days % interval == 0
        elif kind == "weekly":
            weeks = ((day - dt.timedelta(days=day.weekday())) - week0).days // 7
            hit = weeks % interval == 0 and names[day.weekday()] in (
                days or [names[local_start.weekday()]])
        elif kind == "absoluteMonthly":
            hit = day.day == int(pattern.get("dayOfMonth") or local_start.day)
        else:
            hit = day == local_start.date()
        if hit:
            n += 1
            occ = dt.datetime.combine(day, local_start.timetz().replace(tzinfo=None)).replace(
                tzinfo=local_start.tzinfo).astimezone(dt.UTC)
            if occ >= window_end or (count_limit and n > count_limit) or len(out) >= cap:
                break
            if occ >= window_start - (parse_local(item.data["end"]) - start) and (
                    occ.date().isoformat() not in cancelled):
                out.append(occ)
        day += dt.timedelta(days=1)
    return out


def occurrence_view(item: Item, occ: dt.datetime, occ_id: str) -> dict[str, Any]:
    start, end = parse_local(item.data["start"]), parse_local(item.data["end"])
    length = (end - start) if start and end else dt.timedelta(0)
    data = dict(item.data)
    tz = item.data["start"].get("timeZone", "UTC")
    data.update({"type": "occurrence", "seriesMasterId": item.reg_id, "recurrence": None,
                 "start": fmt_local(occ, tz), "end": fmt_local(occ + length, tz),
                 "originalStart": occ.strftime("%Y-%m-%dT%H:%M:%SZ")})
    return data


def occurrence_id(master_id: str, occ: dt.datetime) -> str:
    return f"{master_id}_OCC{occ.strftime('%Y%m%dT%H%M')}"


# ---- contacts and tasks ------------------------------------------------------------------

def create_contact(mbx: Mailbox, body: dict[str, Any]) -> Item:
    _check_props(body, CONTACT_WRITABLE, "contact")
    data = {k: v for k, v in body.items() if k in CONTACT_WRITABLE and
            not k.endswith("ExtendedProperties")}
    data.setdefault("emailAddresses", [])
    data.setdefault("businessPhones", [])
    data.setdefault("homePhones", [])
    if not data.get("displayName"):
        data["displayName"] = " ".join(x for x in (data.get("givenName"), data.get("surname"))
                                       if x) or (data["emailAddresses"][0]["address"]
                                                 if data["emailAddresses"] else "")
    item = Item("contact", new_id("AAkALgCT"), new_id("AAMkACT"), "", data)
    _svep_merge(item, body.get("singleValueExtendedProperties"))
    return mbx.add(item)


def update_simple(mbx: Mailbox, item: Item, body: dict[str, Any], allowed: set[str],
                  type_name: str) -> Item:
    _check_props(body, allowed, type_name)
    for key, value in body.items():
        if key in IGNORED_ON_WRITE or key.startswith("@"):
            continue
        if key == "singleValueExtendedProperties":
            _svep_merge(item, value)
        elif key == "body":
            item.data["body"] = _body(value)
        else:
            item.data[key] = value
    if item.kind == "task" and body.get("status") == "completed" and not body.get(
            "completedDateTime"):
        item.data["completedDateTime"] = fmt_local(dt.datetime.now(dt.UTC), "UTC")
    mbx.touch(item, mbx.keys_of(item))
    return item


def create_task(mbx: Mailbox, lst: Item, body: dict[str, Any]) -> Item:
    _check_props(body, TASK_WRITABLE, "todoTask")
    data = {k: v for k, v in body.items() if k in TASK_WRITABLE}
    if "body" in data:
        data["body"] = _body(data["body"])
    if data.get("status", "notStarted") not in ("notStarted", "inProgress", "completed",
                                                "waitingOnOthers", "deferred"):
        raise bad_request(f"Invalid status '{data['status']}'.")
    if "linkedResources" in data:
        data["linkedResources"] = [{"id": str(uuid.uuid4()), **lr}
                                   for lr in data["linkedResources"] or []]
    item = Item("task", new_id("AAkALgTK"), new_id("AAMkATK"), lst.imm_id, data)
    item.change_key = new_change_key()
    return mbx.add(item)


# ---- seed ---------------------------------------------------------------------------------

def seed_mailbox(mbx: Mailbox, raw: dict[str, Any]) -> None:
    for f in raw.get("folders") or []:
        parent = mbx.folder(f.get("parent") or "inbox") if f.get("parent") != "root" else None
        mbx.add_folder(f["name"], parent.imm_id if parent else None)
    for m in raw.get("messages") or []:
        deliver(mbx, m, m.get("folder") or "inbox")
    for e in raw.get("events") or []:
        body = dict(e)
        tz = body.pop("timeZone", "UTC")
        for key in ("start", "end"):
            if isinstance(body.get(key), str):
                body[key] = {"dateTime": body[key], "timeZone": tz}
        if isinstance(body.get("body"), str):
            body["body"] = _body(body["body"])
        create_event(mbx, body)
    for c in raw.get("contacts") or []:
        body = dict(c)
        if "email" in body:
            body["emailAddresses"] = [{"address": body.pop("email"),
                                       "name": body.get("displayName") or ""}]
        create_contact(mbx, body)
    for lst in raw.get("todo") or []:
        target = mbx.todo_list(lst.get("list") or "Tasks") or mbx.add_list(lst["list"])
        for t in lst.get("tasks") or []:
            create_task(mbx, target, t)


def new_id_guid() -> str:
    return str(uuid.uuid4())
