"""Table Storage keys from arbitrary text, and the due-time buckets.

Keys may not hold / \\ # ? or control characters and must stay under 1 KiB, while Exchange ids
hold '/' and '+', and internetMessageIds hold anything. So external ids are encoded: readable
urlsafe base64 when short, a sha256 digest when long. The 'b:'/'h:' prefixes keep the two
spaces apart (':' is not in the base64 alphabet).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

MAX_ENCODED_CHARS = 400  # two encoded ids plus a separator stay under the 1 KiB key limit
BUCKET_FORMAT = "%Y%m%d%H%M"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def safe_key(text: str) -> str:
    """A key for any text: reversible base64 when it fits, otherwise a digest."""
    encoded = base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")
    if len(encoded) <= MAX_ENCODED_CHARS:
        return f"b:{encoded}"
    return f"h:{sha256_hex(text)}"


def email_key(address: str) -> str:
    """Lookup key of an address, so no table column holds the address itself."""
    return sha256_hex(address.strip().lower())


def utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return value.astimezone(UTC)


def due_bucket(value: datetime) -> str:
    """The UTC minute of a due time: 'YYYYMMDDHHMM' sorts lexically like time."""
    return utc(value).strftime(BUCKET_FORMAT)


__all__ = ["due_bucket", "email_key", "safe_key", "sha256_hex", "utc"]
