"""Email correlation: find the tracked email a new message answers, in Dynamics' order.

Order (each step switchable by a setting): In-Reply-To, then References (newest first), then
the subject tracking token, then the Exchange conversation id. The first hit wins; the new
activity records how it was found (`correlationmethod`), its parent activity, and inherits
the parent's regarding record. The caller supplies the lookups, so this stays free of I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from .addresses import normalize_message_id
from .tracking_token import DEFAULT_DIGITS, DEFAULT_PREFIX, find_token


class CorrelationMethod(StrEnum):
    """How a message was tied to an earlier tracked email."""

    IN_REPLY_TO = "in_reply_to"
    TRACKING_TOKEN = "tracking_token"
    CONVERSATION = "conversation"
    NONE = "none"

    @property
    def dataverse_value(self) -> int:
        """The email `correlationmethod` option value (spec: 0 None, 3 InReplyTo,
        4 TrackingToken, 5 ConversationIndex)."""
        return _DATAVERSE_VALUES[self]


_DATAVERSE_VALUES = {
    CorrelationMethod.NONE: 0,
    CorrelationMethod.IN_REPLY_TO: 3,
    CorrelationMethod.TRACKING_TOKEN: 4,
    CorrelationMethod.CONVERSATION: 5,
}


@dataclass(frozen=True)
class RegardingRef:
    """A CRM record an activity is "regarding": logical table name and id."""

    table: str
    id: str


@dataclass(frozen=True)
class TrackedRef:
    """What we know of an already tracked email: its activity and its regarding record."""

    activity_id: str
    regarding: RegardingRef | None = None
    internet_message_id: str | None = None


@dataclass(frozen=True)
class CorrelationPolicy:
    """Which correlation steps run, and the tracking token's shape."""

    in_reply_to: bool = True
    tracking_token: bool = True
    conversation: bool = True
    token_prefix: str = DEFAULT_PREFIX
    token_digits: int = DEFAULT_DIGITS

    @classmethod
    def from_settings(cls, s: Any) -> CorrelationPolicy:
        return cls(
            in_reply_to=s.correlate_in_reply_to,
            tracking_token=s.correlate_tracking_token,
            conversation=s.correlate_conversation,
            token_prefix=s.tracking_token_prefix,
            token_digits=s.tracking_token_digits,
        )


@dataclass(frozen=True)
class Correlation:
    """The outcome: method NONE and no parent when nothing matched."""

    method: CorrelationMethod = CorrelationMethod.NONE
    parent: TrackedRef | None = None
    matched_key: str | None = None

    @property
    def correlated(self) -> bool:
        return self.method is not CorrelationMethod.NONE

    @property
    def parent_activity_id(self) -> str | None:
        return self.parent.activity_id if self.parent else None

    @property
    def regarding(self) -> RegardingRef | None:
        return self.parent.regarding if self.parent else None


NO_CORRELATION = Correlation()

K = TypeVar("K")
Lookup = Callable[[K], TrackedRef | None] | Mapping[K, TrackedRef]


def _find(source: Lookup[K] | None, key: K, own: str | None) -> TrackedRef | None:
    if source is None:
        return None
    hit = source.get(key) if isinstance(source, Mapping) else source(key)
    if hit is not None and own and normalize_message_id(hit.internet_message_id) == own:
        return None  # the message's own tracked copy is not its parent
    return hit


def correlate(
    *,
    in_reply_to: str | None = None,
    references: Iterable[str] = (),
    subject: str | None = None,
    conversation_id: str | None = None,
    by_message_id: Lookup[str] | None = None,
    by_token: Lookup[int] | None = None,
    by_conversation: Lookup[str] | None = None,
    policy: CorrelationPolicy = CorrelationPolicy(),
    self_message_id: str | None = None,
) -> Correlation:
    """Run the enabled steps in order and return the first match.

    `by_message_id` is keyed by `normalize_message_id` form ("<id@host>"); `by_token` by the
    token number; `by_conversation` by Graph conversationId. `self_message_id` stops a message
    from correlating to its own tracked copy (another mailbox may already have tracked it).
    """
    own = normalize_message_id(self_message_id)
    if policy.in_reply_to:
        candidates: list[str] = []
        first = normalize_message_id(in_reply_to)
        if first:
            candidates.append(first)
        # References lists oldest first; the nearest ancestor is the best parent.
        for ref in reversed(list(references)):
            norm = normalize_message_id(ref)
            if norm and norm not in candidates:
                candidates.append(norm)
        for mid in candidates:
            if mid == own:
                continue
            hit = _find(by_message_id, mid, own)
            if hit is not None:
                return Correlation(CorrelationMethod.IN_REPLY_TO, hit, mid)
    if policy.tracking_token:
        number = find_token(subject, policy.token_prefix, policy.token_digits)
        if number is not None:
            hit = _find(by_token, number, own)
            if hit is not None:
                return Correlation(CorrelationMethod.TRACKING_TOKEN, hit, str(number))
    if policy.conversation and conversation_id:
        hit = _find(by_conversation, conversation_id, own)
        if hit is not None:
            return Correlation(CorrelationMethod.CONVERSATION, hit, conversation_id)
    return NO_CORRELATION


__all__ = [
    "NO_CORRELATION",
    "Correlation",
    "CorrelationMethod",
    "CorrelationPolicy",
    "Lookup",
    "RegardingRef",
    "TrackedRef",
    "correlate",
]
