"""Email addresses and threading headers, normalised once so every comparison agrees.

Party resolution, dedupe and correlation all compare addresses and message ids coming from
Graph, Dataverse and the add-in, each spelled a little differently ("Ann <ANN@x.com>",
"mailto:ann@x.com", "<id@host>" or "id@host"). These helpers turn them into one form.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from email.utils import getaddresses, parseaddr
from typing import Any

# MAPI properties Exchange maps to the In-Reply-To and References headers. Graph exposes them as
# singleValueExtendedProperties; they are also the only way to *set* those headers, because
# Graph accepts only "x-" names in internetMessageHeaders.
IN_REPLY_TO_PROPERTY = "String 0x1042"  # PidTagInReplyToId
REFERENCES_PROPERTY = "String 0x1039"  # PidTagInternetReferences

_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")


def parse_mailbox(value: str | None) -> tuple[str, str | None]:
    """Split "Display Name <addr>" into (display name, normalised address or None)."""
    if not value:
        return "", None
    text = value.strip()
    if text.lower().startswith("mailto:"):
        text = text[len("mailto:"):]
    name, addr = parseaddr(text)
    address = normalize_address(addr) if addr else None
    if address is None:
        # parseaddr gives up on some inputs (e.g. unbalanced quotes); try the bare <...> part
        match = re.search(r"<([^<>]+)>", text)
        address = normalize_address(match.group(1) if match else text)
        name = text[: match.start()].strip().strip('"') if match else ""
    return name.strip().strip('"').strip(), address


_SPACE = re.compile(r"\s")


@functools.lru_cache(maxsize=4096)  # pure, and called for every party of every message
def normalize_address(value: str | None) -> str | None:
    """Lower-case bare address, or None when it is not an address at all.

    Exchange and Dataverse compare addresses case-insensitively, so we do too.
    """
    if not value:
        return None
    text = value.strip()
    if text.lower().startswith("mailto:"):
        text = text[len("mailto:"):]
    if "<" in text or '"' in text:
        _, text = parseaddr(text)
    text = text.strip().strip("<>").strip().rstrip(".").lower()
    if text.count("@") != 1 or _SPACE.search(text):
        return None
    local, domain = text.split("@")
    if not local or not domain or "." not in domain or domain.startswith("."):
        return None
    return text


def parse_address_list(value: str | None) -> list[str]:
    """Addresses of a To/Cc header value, normalised, without duplicates, in order."""
    if not value:
        return []
    out: list[str] = []
    for _, addr in getaddresses([value]):
        norm = normalize_address(addr)
        if norm and norm not in out:
            out.append(norm)
    return out


def domain_of(address: str | None) -> str | None:
    """The domain part of an address (lower case), or None for a non-address."""
    norm = normalize_address(address)
    return norm.split("@", 1)[1] if norm else None


def is_internal(address: str | None, org_domains: Iterable[str]) -> bool:
    """True when the address belongs to one of the organisation's domains or a subdomain.

    Subdomains count ("eu.contoso.com" under "contoso.com") because mail routing often uses them.
    """
    domain = domain_of(address)
    if domain is None:
        return False
    for org in org_domains:
        org = org.strip().lower().lstrip("@").rstrip(".")
        if org and (domain == org or domain.endswith("." + org)):
            return True
    return False


def normalize_message_id(value: str | None) -> str | None:
    """One spelling of an internet message id: "<core>" with the original case kept.

    Message ids are case-sensitive on the left of "@", so only brackets and blanks go.
    Lookups of tracked messages must use this form as the key.
    """
    if not value:
        return None
    match = _MESSAGE_ID.search(value)
    core = match.group(1) if match else value.strip().strip("<>").strip()
    if not core or any(ch.isspace() for ch in core):
        return None
    return f"<{core}>"


def parse_message_ids(value: str | None) -> list[str]:
    """Message ids in a References/In-Reply-To value, in order, without duplicates.

    Tolerates ids without brackets separated by blanks or commas (some mailers do that).
    """
    if not value:
        return []
    found = _MESSAGE_ID.findall(value)
    if not found:
        found = [part for part in re.split(r"[\s,]+", value) if part]
    out: list[str] = []
    for core in found:
        norm = normalize_message_id(core)
        if norm and norm not in out:
            out.append(norm)
    return out


def header_values(headers: Sequence[Mapping[str, Any]] | None, name: str) -> list[str]:
    """Every value of a header in Graph's internetMessageHeaders, names case-insensitive."""
    if not headers:
        return []
    wanted = name.lower()
    return [
        str(h.get("value") or "")
        for h in headers
        if str(h.get("name") or "").strip().lower() == wanted
    ]


def header_value(headers: Sequence[Mapping[str, Any]] | None, name: str) -> str | None:
    """The first value of a header, or None when absent."""
    values = header_values(headers, name)
    return values[0] if values else None


def in_reply_to_of(headers: Sequence[Mapping[str, Any]] | None) -> str | None:
    """The In-Reply-To message id (first one when a mailer put several)."""
    ids = parse_message_ids(header_value(headers, "In-Reply-To"))
    return ids[0] if ids else None


def references_of(headers: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """The References message ids, oldest first as the header lists them."""
    out: list[str] = []
    for value in header_values(headers, "References"):
        for mid in parse_message_ids(value):
            if mid not in out:
                out.append(mid)
    return out


def _extended(message: Mapping[str, Any], prop_id: str) -> str | None:
    for prop in message.get("singleValueExtendedProperties") or ():
        if str(prop.get("id") or "").strip().lower() == prop_id.lower():
            return prop.get("value")
    return None


def threading_of(message: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """(In-Reply-To, References) of a Graph message.

    Graph returns internetMessageHeaders only when selected and only for received mail, so the
    MAPI extended properties (expanded by the caller) are read as a fallback.
    """
    headers = message.get("internetMessageHeaders")
    in_reply_to = in_reply_to_of(headers)
    references = references_of(headers)
    if in_reply_to is None:
        ids = parse_message_ids(_extended(message, IN_REPLY_TO_PROPERTY))
        in_reply_to = ids[0] if ids else None
    if not references:
        references = parse_message_ids(_extended(message, REFERENCES_PROPERTY))
    return in_reply_to, references


def graph_recipients(recipients: Sequence[Mapping[str, Any]] | None) -> list[tuple[str, str]]:
    """[(address, display name)] of a Graph recipient list, normalised, without duplicates."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for rec in recipients or ():
        email = rec.get("emailAddress") or {}
        addr = normalize_address(email.get("address"))
        if addr and addr not in seen:
            seen.add(addr)
            out.append((addr, str(email.get("name") or "").strip()))
    return out


def graph_sender(message: Mapping[str, Any]) -> tuple[str, str] | None:
    """(address, display name) of the author: `from`, else `sender` (delegates send as)."""
    for key in ("from", "sender"):
        found = graph_recipients([message[key]] if message.get(key) else [])
        if found:
            return found[0]
    return None


def graph_participants(message: Mapping[str, Any]) -> list[str]:
    """Sender, then To, then Cc addresses of a Graph message (the parties of its activity)."""
    sender = graph_sender(message)
    out = [sender[0]] if sender else []
    out += [a for a, _ in graph_recipients(message.get("toRecipients"))]
    out += [a for a, _ in graph_recipients(message.get("ccRecipients"))]
    return out


__all__ = [
    "IN_REPLY_TO_PROPERTY",
    "REFERENCES_PROPERTY",
    "domain_of",
    "graph_participants",
    "graph_recipients",
    "graph_sender",
    "header_value",
    "header_values",
    "in_reply_to_of",
    "is_internal",
    "normalize_address",
    "normalize_message_id",
    "parse_address_list",
    "parse_mailbox",
    "parse_message_ids",
    "references_of",
    "threading_of",
]
