"""The Dataverse `emails` create body for an incoming message, checked against the spec.

Names, option values and lengths below come from the Dataverse metadata subset
(../shared/specs/dataverse-subset.json, entity "email"). A wrong navigation name or an
over-long string is a 400 for the whole create, so they are fixed here, once.
"""

from __future__ import annotations

import base64
import binascii
import html
from collections.abc import Mapping, Sequence
from typing import Any

from .addresses import graph_recipients, graph_sender, normalize_message_id, threading_of
from .correlation import CorrelationMethod, RegardingRef
from .tracking import TrackingDecision

# logical table name -> entity set name (Web API URL segment)
ENTITY_SETS: dict[str, str] = {
    "contact": "contacts",
    "account": "accounts",
    "lead": "leads",
    "opportunity": "opportunities",
    "incident": "incidents",
    "systemuser": "systemusers",
    "queue": "queues",
    "email": "emails",
    "appointment": "appointments",
    "task": "tasks",
}

# email attribute max lengths from the spec
MAX_LENGTH: dict[str, int] = {
    "subject": 800,
    "messageid": 320,
    "inreplyto": 320,
    "sender": 250,
    "torecipients": 500,
    "trackingtoken": 50,
    "conversationindex": 2048,
    "category": 250,
}

# state/status of an email (spec: statuscode options name their state)
STATE_OPEN, STATE_COMPLETED, STATE_CANCELED = 0, 1, 2
STATUS_RECEIVED = 4
STATE_OF_STATUS: dict[int, int] = {1: 0, 2: 1, 3: 1, 4: 1, 5: 2, 6: 1, 7: 1, 8: 0}


def entity_set(table: str) -> str:
    """The entity set of a logical table name; ValueError for tables we do not know."""
    try:
        return ENTITY_SETS[table.lower()]
    except KeyError:
        raise ValueError(f"no entity set known for table {table!r}") from None


def bind_path(table: str, record_id: str, entity_set_name: str | None = None) -> str:
    """"/contacts(<id>)" for an @odata.bind value."""
    return f"/{entity_set_name or entity_set(table)}({record_id.strip('{}')})"


def regarding_bind(
    table: str, record_id: str, entity_set_name: str | None = None
) -> dict[str, str]:
    """{"regardingobjectid_<table>_email@odata.bind": "/<set>(<id>)"} (spec nav pattern)."""
    key = f"regardingobjectid_{table.lower()}_email@odata.bind"
    return {key: bind_path(table, record_id, entity_set_name)}


def parent_activity_bind(activity_id: str) -> dict[str, str]:
    """The parent email lookup; its navigation property is plain "parentactivityid"."""
    return {"parentactivityid@odata.bind": bind_path("email", activity_id)}


def truncate(attribute: str, value: str | None) -> str | None:
    """Cut a string to the attribute's max length (None stays None)."""
    if value is None:
        return None
    limit = MAX_LENGTH.get(attribute)
    return value if limit is None or len(value) <= limit else value[:limit]


def body_html(body: Mapping[str, Any] | None) -> str:
    """Graph itemBody as HTML: HTML passes through, text is escaped with line breaks kept."""
    if not body:
        return ""
    content = str(body.get("content") or "")
    if str(body.get("contentType") or "").lower() == "html":
        return content
    return html.escape(content).replace("\r\n", "\n").replace("\n", "<br>\n")


def conversation_index_hex(value: str | None) -> str | None:
    """Graph's base64 conversationIndex as the hex string Dynamics stores, or None."""
    if not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    hexed = raw.hex().upper()
    return hexed if len(hexed) <= MAX_LENGTH["conversationindex"] else None


def build_incoming_email(
    message: Mapping[str, Any],
    decision: TrackingDecision,
    parties: Sequence[Mapping[str, Any]],
    *,
    tracking_token: str | None = None,
    regarding_entity_set: str | None = None,
) -> dict[str, Any]:
    """Create body for a received Graph message the tracking rules said to track.

    Received mail is created completed (statecode 1, statuscode 4 Received), direction
    incoming (directioncode false), with correlation method, parent and regarding as decided.
    """
    if not decision.track:
        raise ValueError("refusing to build an email activity for an untracked message")
    message_id = normalize_message_id(message.get("internetMessageId"))
    in_reply_to, _ = threading_of(message)
    method = decision.correlation or CorrelationMethod.NONE
    sender = graph_sender(message)
    to = [addr for addr, _ in graph_recipients(message.get("toRecipients"))]

    body: dict[str, Any] = {
        "subject": truncate("subject", message.get("subject") or ""),
        "description": body_html(message.get("body")),
        "directioncode": False,
        "statecode": STATE_COMPLETED,
        "statuscode": STATUS_RECEIVED,
        "correlationmethod": method.dataverse_value,
        "email_activity_parties": [dict(p) for p in parties],
    }
    optional = {
        "messageid": truncate("messageid", message_id),
        "inreplyto": truncate("inreplyto", in_reply_to),
        "actualend": message.get("receivedDateTime"),
        "senton": message.get("sentDateTime"),
        "sender": truncate("sender", sender[0]) if sender else None,
        "torecipients": truncate("torecipients", ";".join(to)) if to else None,
        "trackingtoken": truncate("trackingtoken", tracking_token),
        "conversationindex": conversation_index_hex(message.get("conversationIndex")),
    }
    body.update({k: v for k, v in optional.items() if v})
    if decision.parent_activity_id:
        body.update(parent_activity_bind(decision.parent_activity_id))
    if decision.regarding is not None:
        body.update(_regarding(decision.regarding, regarding_entity_set))
    return body


def _regarding(ref: RegardingRef, entity_set_name: str | None) -> dict[str, str]:
    return regarding_bind(ref.table, ref.id, entity_set_name)


__all__ = [
    "ENTITY_SETS",
    "MAX_LENGTH",
    "STATE_COMPLETED",
    "STATE_OF_STATUS",
    "STATUS_RECEIVED",
    "bind_path",
    "body_html",
    "build_incoming_email",
    "conversation_index_hex",
    "entity_set",
    "parent_activity_bind",
    "regarding_bind",
    "truncate",
]
