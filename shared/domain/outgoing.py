"""Outgoing email: the Graph sendMail payload for a Pending Send activity, and its statuses.

sendMail returns 202 with no message id, so a crash between "sent" and "marked Sent" would
send twice on the next cycle. Every message we send therefore carries the activity id twice:
an `x-sss-activity-id` internet header (visible to recipients' systems, survives forwarding)
and a named MAPI extended property we can $filter Sent Items on before re-sending.

Graph accepts only "x-" names in internetMessageHeaders; In-Reply-To and References are set
through their MAPI properties (PidTagInReplyToId 0x1042, PidTagInternetReferences 0x1039),
which Exchange writes as the real headers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from .addresses import (
    IN_REPLY_TO_PROPERTY,
    REFERENCES_PROPERTY,
    normalize_address,
    normalize_message_id,
)
from .email_activity import STATE_OF_STATUS
from .tracking_token import append_token

ACTIVITY_HEADER = "x-sss-activity-id"
ACTIVITY_PROPERTY_SET = "{66f5a359-4659-4830-9070-00047ec6ac6e}"
ACTIVITY_PROPERTY_ID = f"String {ACTIVITY_PROPERTY_SET} Name SssActivityId"


class EmailStatus(IntEnum):
    """email.statuscode values (spec)."""

    DRAFT = 1
    COMPLETED = 2
    SENT = 3
    RECEIVED = 4
    CANCELED = 5
    PENDING_SEND = 6
    SENDING = 7
    FAILED = 8

    @property
    def state(self) -> int:
        """The statecode this status belongs to (spec: Failed is Open, Pending Send is
        Completed)."""
        return STATE_OF_STATUS[int(self)]


# Pending Send -> Sending -> Sent | Failed. Sending may fall back to Pending Send when
# recovery proves nothing was sent; a Failed email may be resent by its user.
TRANSITIONS: dict[EmailStatus, frozenset[EmailStatus]] = {
    EmailStatus.PENDING_SEND: frozenset({EmailStatus.SENDING, EmailStatus.FAILED}),
    EmailStatus.SENDING: frozenset(
        {EmailStatus.SENT, EmailStatus.FAILED, EmailStatus.PENDING_SEND}
    ),
    EmailStatus.FAILED: frozenset({EmailStatus.PENDING_SEND}),
}


class InvalidTransition(ValueError):
    """A status change the outgoing engine must never make."""


def can_transition(current: int, target: int) -> bool:
    try:
        return EmailStatus(target) in TRANSITIONS.get(EmailStatus(current), frozenset())
    except ValueError:
        return False


def transition(current: int, target: int) -> dict[str, int]:
    """The PATCH body {statecode, statuscode} for a legal change; InvalidTransition else."""
    if not can_transition(current, target):
        raise InvalidTransition(f"email status {current} -> {target} is not allowed")
    status = EmailStatus(target)
    return {"statecode": status.state, "statuscode": int(status)}


def recovery_status(found_in_sent_items: bool) -> EmailStatus:
    """What a stuck Sending email becomes: Sent if its copy is in Sent Items, else retried."""
    return EmailStatus.SENT if found_in_sent_items else EmailStatus.PENDING_SEND


def sent_items_filter(activity_id: str) -> str:
    """OData $filter finding our sent copy of an activity by its extended property."""
    value = activity_id.replace("'", "''")
    return (
        "singleValueExtendedProperties/any(ep: ep/id eq "
        f"'{ACTIVITY_PROPERTY_ID}' and ep/value eq '{value}')"
    )


class OutgoingError(ValueError):
    """The email cannot be sent as it stands (reason is a machine code)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class OutgoingMessage:
    """The sendMail body and the parties that had no address (reported, not sent to)."""

    payload: dict[str, Any]
    skipped_parties: tuple[str, ...] = field(default_factory=tuple)


_ROLE_KEYS = {2: "toRecipients", 3: "ccRecipients", 4: "bccRecipients"}


def _party_address(party: Mapping[str, Any], resolved: Mapping[str, str]) -> str | None:
    addr = normalize_address(party.get("addressused"))
    if addr:
        return addr
    party_id = party.get("_partyid_value")
    if party_id:
        return normalize_address(resolved.get(str(party_id)))
    return None


def check_header_name(name: str) -> str:
    """Graph refuses custom internet headers not starting with "x-"; fail early instead."""
    if not name.lower().startswith("x-") or len(name) < 3:
        raise ValueError(f"internet message header {name!r} must start with 'x-'")
    return name


def build_send_mail(
    email: Mapping[str, Any],
    parties: Sequence[Mapping[str, Any]],
    *,
    activity_id: str,
    resolved_addresses: Mapping[str, str] | None = None,
    tracking_token: str | None = None,
    in_reply_to: str | None = None,
    references: Iterable[str] = (),
    save_to_sent_items: bool = True,
) -> OutgoingMessage:
    """sendMail body for a Dataverse email row and its activity parties.

    Recipients come from parties 2/3/4 (To/Cc/Bcc): `addressused`, else the address of the
    resolved record from `resolved_addresses` (keyed by `_partyid_value`). Raises
    OutgoingError("no_recipients") when nobody can receive it.
    """
    resolved = resolved_addresses or {}
    recipients: dict[str, list[dict[str, Any]]] = {k: [] for k in _ROLE_KEYS.values()}
    seen: dict[str, set[str]] = {k: set() for k in _ROLE_KEYS.values()}
    skipped: list[str] = []
    for party in parties:
        key = _ROLE_KEYS.get(int(party.get("participationtypemask") or 0))
        if key is None:
            continue
        addr = _party_address(party, resolved)
        if addr is None:
            skipped.append(str(party.get("_partyid_value") or party.get("activitypartyid") or "?"))
            continue
        if addr not in seen[key]:
            seen[key].add(addr)
            recipients[key].append({"emailAddress": {"address": addr}})
    if not any(recipients.values()):
        raise OutgoingError("no_recipients", "the email has no recipient with an address")

    subject = str(email.get("subject") or "")
    if tracking_token:
        subject = append_token(subject, tracking_token)
    message: dict[str, Any] = {
        "subject": subject,
        "body": {"contentType": "html", "content": str(email.get("description") or "")},
        **{k: v for k, v in recipients.items() if v},
        "internetMessageHeaders": [
            {"name": check_header_name(ACTIVITY_HEADER), "value": activity_id}
        ],
    }
    props = [{"id": ACTIVITY_PROPERTY_ID, "value": activity_id}]
    parent = normalize_message_id(in_reply_to)
    if parent:
        props.append({"id": IN_REPLY_TO_PROPERTY, "value": parent})
        refs = [m for m in (normalize_message_id(r) for r in references) if m]
        if parent not in refs:
            refs.append(parent)
        props.append({"id": REFERENCES_PROPERTY, "value": " ".join(refs)})
    message["singleValueExtendedProperties"] = props
    payload = {"message": message, "saveToSentItems": save_to_sent_items}
    return OutgoingMessage(payload, tuple(skipped))


def activity_id_of(message: Mapping[str, Any]) -> str | None:
    """The activity id we stamped on a sent Graph message (property first, then header)."""
    for prop in message.get("singleValueExtendedProperties") or ():
        if str(prop.get("id") or "").lower() == ACTIVITY_PROPERTY_ID.lower():
            return prop.get("value") or None
    for header in message.get("internetMessageHeaders") or ():
        if str(header.get("name") or "").lower() == ACTIVITY_HEADER:
            return header.get("value") or None
    return None


__all__ = [
    "ACTIVITY_HEADER",
    "ACTIVITY_PROPERTY_ID",
    "TRANSITIONS",
    "EmailStatus",
    "InvalidTransition",
    "OutgoingError",
    "OutgoingMessage",
    "activity_id_of",
    "build_send_mail",
    "can_transition",
    "check_header_name",
    "recovery_status",
    "sent_items_filter",
    "transition",
]
