"""Whether an unknown sender of a tracked email becomes a new contact (or lead).

Peers' users complain about noisy auto-created contacts, so the default is off and even when
on we refuse the organisation's own people, the owner, automated and bulk senders, and
(configurably) free-mail addresses. Each refusal has a reason code for the status page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .addresses import domain_of, header_value, is_internal, normalize_address, parse_mailbox

DEFAULT_FREE_MAIL_DOMAINS: frozenset[str] = frozenset(
    {
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
        "yahoo.com", "ymail.com", "icloud.com", "me.com", "mac.com", "aol.com", "gmx.com",
        "gmx.net", "gmx.de", "web.de", "mail.com", "proton.me", "protonmail.com", "yandex.com",
        "yandex.ru", "mail.ru", "zoho.com", "seznam.cz", "centrum.cz", "email.cz", "yahoo.ro",
    }
)

# local parts that are machines, not people
_AUTOMATED_LOCAL = re.compile(
    r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|mailer[-_.]?daemon|postmaster|bounces?|"
    r"notifications?|auto[-_.]?confirm|daemon)([+\-_.].*)?$"
)

# spec max lengths
_MAX = {"firstname": 50, "lastname": 50, "emailaddress1": 100, "subject": 300}


@dataclass(frozen=True)
class AutoCreatePolicy:
    """Off by default; `table` is "contact" or "lead"."""

    enabled: bool = False
    table: str = "contact"
    organization_domains: tuple[str, ...] = ()
    exclude_free_mail: bool = True
    free_mail_domains: frozenset[str] = field(default=DEFAULT_FREE_MAIL_DOMAINS)

    def __post_init__(self) -> None:
        if self.table not in ("contact", "lead"):
            raise ValueError("auto-create table must be 'contact' or 'lead'")

    @classmethod
    def from_settings(
        cls, s: Any, *, enabled: bool, table: str = "contact", exclude_free_mail: bool = True
    ) -> AutoCreatePolicy:
        """App settings (organisation domains) plus the owner's personal option."""
        return cls(
            enabled=enabled,
            table=table,
            organization_domains=tuple(s.organization_domains),
            exclude_free_mail=exclude_free_mail,
        )


@dataclass(frozen=True)
class AutoCreateDecision:
    """`body` is the Dataverse create body, or None with the refusal's reason code."""

    body: dict[str, Any] | None
    reason: str
    table: str | None = None

    @property
    def create(self) -> bool:
        return self.body is not None


def is_bulk_or_automated(headers: Sequence[Mapping[str, Any]] | None) -> str | None:
    """"bulk_sender" / "automated_sender" from the headers, or None for a person."""
    if header_value(headers, "List-Unsubscribe") is not None or header_value(
        headers, "List-Id"
    ) is not None:
        return "bulk_sender"
    precedence = (header_value(headers, "Precedence") or "").strip().lower()
    if precedence in {"bulk", "list", "junk"}:
        return "bulk_sender"
    auto = header_value(headers, "Auto-Submitted")
    if auto is not None and auto.strip().lower() != "no":
        return "automated_sender"
    if header_value(headers, "X-Autoreply") is not None:
        return "automated_sender"
    return None


def _cap_word(word: str) -> str:
    return word[:1].upper() + word[1:] if word else word


def split_name(display_name: str | None, address: str | None = None) -> tuple[str, str]:
    """(first name, last name) from "First Last", "Last, First" or, failing that, the
    address's local part ("john.smith" -> John Smith). Last name is never empty: Dataverse
    requires it for contacts and leads."""
    name = (display_name or "").strip().strip('"').strip()
    if "<" in name:
        name = parse_mailbox(name)[0]
    name = re.sub(r"\s*\(.*?\)\s*", " ", name).strip()  # "Ann Lee (Contoso)" -> "Ann Lee"
    if name and "@" not in name:
        if "," in name:
            last, _, first = name.partition(",")
            if last.strip():
                return first.strip(), last.strip()
        parts = name.split()
        if len(parts) == 1:
            return "", parts[0]
        return " ".join(parts[:-1]), parts[-1]
    norm = normalize_address(address) or normalize_address(name)
    local = (norm or name or "unknown").split("@", 1)[0]
    words = [w for w in re.split(r"[._\-+]+", local) if w and not w.isdigit()]
    if not words:
        return "", local or "unknown"
    if len(words) == 1:
        return "", _cap_word(words[0])
    return " ".join(_cap_word(w) for w in words[:-1]), _cap_word(words[-1])


def plan_auto_create(
    address: str | None,
    display_name: str | None,
    *,
    tracked: bool,
    owner_address: str | None,
    policy: AutoCreatePolicy,
    headers: Sequence[Mapping[str, Any]] | None = None,
    owner_addresses: Iterable[str] = (),
    email_subject: str | None = None,
) -> AutoCreateDecision:
    """Decide and, when yes, build the create body for the unknown sender."""
    if not policy.enabled:
        return AutoCreateDecision(None, "disabled")
    if not tracked:
        return AutoCreateDecision(None, "not_tracked")
    addr = normalize_address(address)
    if addr is None:
        return AutoCreateDecision(None, "invalid_address")
    if len(addr) > _MAX["emailaddress1"]:
        return AutoCreateDecision(None, "address_too_long")
    owners = {a for a in (normalize_address(x) for x in (owner_address, *owner_addresses)) if a}
    if addr in owners:
        return AutoCreateDecision(None, "owner")
    if is_internal(addr, policy.organization_domains):
        return AutoCreateDecision(None, "own_domain")
    if _AUTOMATED_LOCAL.match(addr.split("@", 1)[0]):
        return AutoCreateDecision(None, "automated_sender")
    flagged = is_bulk_or_automated(headers)
    if flagged:
        return AutoCreateDecision(None, flagged)
    if policy.exclude_free_mail and domain_of(addr) in policy.free_mail_domains:
        return AutoCreateDecision(None, "free_mail")

    first, last = split_name(display_name, addr)
    body: dict[str, Any] = {
        "lastname": last[: _MAX["lastname"]],
        "emailaddress1": addr,
    }
    if first:
        body["firstname"] = first[: _MAX["firstname"]]
    if policy.table == "lead":
        topic = (email_subject or "").strip() or f"Email from {addr}"
        body["subject"] = topic[: _MAX["subject"]]
    return AutoCreateDecision(body, "created", policy.table)


__all__ = [
    "DEFAULT_FREE_MAIL_DOMAINS",
    "AutoCreateDecision",
    "AutoCreatePolicy",
    "is_bulk_or_automated",
    "plan_auto_create",
    "split_name",
]
