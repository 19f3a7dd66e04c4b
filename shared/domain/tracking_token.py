"""The subject tracking token ("CRM:0001234") Dynamics appends to outgoing mail.

A reply keeps the subject, so the token survives mail clients that drop In-Reply-To; it is
the second correlation step. Parsing must tolerate case changes and punctuation that mail
clients and people put around it ("[crm:0001234]", "(CRM: 0001234).").
"""

from __future__ import annotations

import re
from functools import lru_cache

DEFAULT_PREFIX = "CRM"
DEFAULT_DIGITS = 7


def _check(prefix: str, digits: int) -> None:
    if not re.fullmatch(r"[A-Za-z]{1,20}", prefix or ""):
        raise ValueError("tracking token prefix must be 1-20 letters")
    if not 1 <= digits <= 18:
        raise ValueError("tracking token digits must be between 1 and 18")


def format_token(n: int, prefix: str = DEFAULT_PREFIX, digits: int = DEFAULT_DIGITS) -> str:
    """"CRM:0001234" for n=1234. Raises ValueError when n does not fit the digits."""
    _check(prefix, digits)
    if n < 0 or n >= 10**digits:
        raise ValueError(f"tracking token number must be in [0, {10**digits - 1}]")
    return f"{prefix}:{n:0{digits}d}"


@lru_cache(maxsize=32)
def _pattern(prefix: str, digits: int) -> re.Pattern[str]:
    # Not glued to a preceding letter/digit ("XCRM:..." is not ours); exactly `digits` digits,
    # so "CRM:2024" in ordinary text never matches a 7-digit token.
    return re.compile(
        rf"(?<![A-Za-z0-9]){re.escape(prefix)}\s*:\s*(\d{{{digits}}})(?!\d)", re.IGNORECASE
    )


def find_token(
    subject: str | None, prefix: str = DEFAULT_PREFIX, digits: int = DEFAULT_DIGITS
) -> int | None:
    """The token number in a subject, or None. The last token wins (it was appended last)."""
    if not subject:
        return None
    _check(prefix, digits)
    matches = _pattern(prefix, digits).findall(subject)
    return int(matches[-1]) if matches else None


def strip_token(
    subject: str | None, prefix: str = DEFAULT_PREFIX, digits: int = DEFAULT_DIGITS
) -> str:
    """The subject without any token, blanks collapsed (for display and smart matching)."""
    if not subject:
        return ""
    _check(prefix, digits)
    return re.sub(r"\s{2,}", " ", _pattern(prefix, digits).sub("", subject)).strip()


def append_token(subject: str | None, token: str) -> str:
    """The subject with the token at the end, unless that token is already in it."""
    text = (subject or "").rstrip()
    match = re.fullmatch(r"([A-Za-z]{1,20}):(\d{1,18})", token)
    if not match:
        raise ValueError("token must look like PREFIX:digits")
    prefix, number = match.group(1), match.group(2)
    if find_token(text, prefix, len(number)) == int(number):
        return text
    return f"{text} {token}" if text else token


__all__ = [
    "DEFAULT_DIGITS",
    "DEFAULT_PREFIX",
    "append_token",
    "find_token",
    "format_token",
    "strip_token",
]
