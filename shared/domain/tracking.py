"""Which incoming messages become CRM email activities, and why (or why not).

One function answers both the server-side cycle and the add-in's "should this be tracked?"
(which sends only sender, recipients and subject), so Outlook and the sync never disagree.
Every decision carries a machine reason code, because "emails not tracked and no reason
shown" is the complaint we most want to avoid.

Order of the rules:
1. the tracked category (manual tracking) tracks, whatever the option or date;
2. a tracked folder (folder rule) tracks, regarding that folder's record;
3. older than "process email from": skipped;
4. option "No email messages": not tracked, even replies;
5. correlated to a tracked email (reply/forward in a tracked thread): tracked, inheriting
   the parent's regarding;
6. otherwise the option decides: all / responses only / from leads, contacts, accounts /
   from any email-enabled record.
Explicit user actions (1, 2) beat the date because nothing a user asked for may be lost.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.settings import TrackingOption

from .addresses import (
    graph_recipients,
    graph_sender,
    normalize_address,
    normalize_message_id,
    threading_of,
)
from .correlation import (
    NO_CORRELATION,
    Correlation,
    CorrelationMethod,
    CorrelationPolicy,
    Lookup,
    RegardingRef,
    correlate,
)

DEFAULT_TRACKED_CATEGORY = "Tracked to Dynamics 365"
LEAD_CONTACT_ACCOUNT = frozenset({"lead", "contact", "account"})

# reason code -> sentence shown to users and admins
REASONS: dict[str, str] = {
    "category": "Tracked: the message carries the tracking category.",
    "folder_rule": "Tracked: the message is in a tracked folder.",
    "correlated_in_reply_to": "Tracked: it replies to a tracked email (In-Reply-To/References).",
    "correlated_tracking_token": "Tracked: its subject carries a tracking token.",
    "correlated_conversation": "Tracked: it belongs to a tracked conversation.",
    "option_all": "Tracked: the owner tracks all email messages.",
    "sender_is_lead_contact_account": "Tracked: the sender is a lead, contact or account.",
    "sender_is_email_enabled_record": "Tracked: the sender is a CRM record.",
    "before_process_from": "Not tracked: received before the mailbox's 'process email from' "
    "date.",
    "option_none": "Not tracked: the owner's option is 'No email messages'.",
    "test_message": "Not tracked: the message Test & Enable sent the mailbox to itself.",
    "not_a_response": "Not tracked: the owner tracks only responses to CRM email and this is "
    "not one.",
    "sender_not_crm_record": "Not tracked: the sender is not a matching CRM record.",
}


@dataclass(frozen=True)
class MessageFacts:
    """What the rules need to know of a message. Only sender/recipients/subject are required,
    which is all the Outlook add-in sends for "should-track"."""

    sender: str | None
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    subject: str = ""
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    conversation_id: str | None = None
    categories: tuple[str, ...] = ()
    folder_id: str | None = None
    received_at: datetime | None = None
    internet_message_id: str | None = None

    @classmethod
    def from_graph(cls, message: Mapping[str, Any]) -> MessageFacts:
        """Facts of a Graph message (headers or MAPI extended properties for threading)."""
        in_reply_to, references = threading_of(message)
        sender = graph_sender(message)
        return cls(
            sender=sender[0] if sender else None,
            to=tuple(a for a, _ in graph_recipients(message.get("toRecipients"))),
            cc=tuple(a for a, _ in graph_recipients(message.get("ccRecipients"))),
            subject=str(message.get("subject") or ""),
            in_reply_to=in_reply_to,
            references=tuple(references),
            conversation_id=message.get("conversationId") or None,
            categories=tuple(message.get("categories") or ()),
            folder_id=message.get("parentFolderId") or None,
            received_at=_parse_time(message.get("receivedDateTime")),
            internet_message_id=normalize_message_id(message.get("internetMessageId")),
        )


# Subject of the message Test & Enable sends a mailbox to itself (shared/sync/lifecycle.py).
TEST_MESSAGE_SUBJECT = "Server-side synchronization: outgoing email test"


def is_test_message(facts: MessageFacts, owner_address: str | None) -> bool:
    """The Test & Enable probe: from the owner, to the owner alone, with the probe's subject."""
    owner = normalize_address(owner_address) if owner_address else None
    return (owner is not None and facts.subject == TEST_MESSAGE_SUBJECT
            and normalize_address(facts.sender) == owner
            and {normalize_address(a) for a in facts.to} == {owner} and not facts.cc)


@dataclass(frozen=True)
class TrackingPolicy:
    """The mailbox owner's tracking configuration plus the app-wide correlation settings."""

    option: TrackingOption = TrackingOption.RESPONSES_TO_CRM
    tracked_category: str = DEFAULT_TRACKED_CATEGORY
    process_email_from: datetime | None = None
    folder_rules: Mapping[str, RegardingRef] = field(default_factory=dict)
    correlation: CorrelationPolicy = field(default_factory=CorrelationPolicy)
    owner_address: str | None = None

    @classmethod
    def from_settings(
        cls,
        s: Any,
        *,
        option: TrackingOption | str | None = None,
        process_email_from: datetime | None = None,
        folder_rules: Mapping[str, RegardingRef] | None = None,
        owner_address: str | None = None,
    ) -> TrackingPolicy:
        """App settings plus the mailbox's own option, date and folder rules."""
        return cls(
            option=TrackingOption(option) if option else s.default_tracking_option,
            tracked_category=s.tracked_category,
            process_email_from=process_email_from,
            folder_rules=dict(folder_rules or {}),
            correlation=CorrelationPolicy.from_settings(s),
            owner_address=owner_address,
        )


@dataclass(frozen=True)
class CorrelationLookups:
    """Lookups of already tracked emails (see `correlation.correlate`)."""

    by_message_id: Lookup[str] | None = None
    by_token: Lookup[int] | None = None
    by_conversation: Lookup[str] | None = None


@dataclass(frozen=True)
class TrackingDecision:
    """Whether to track, the reason code, and what the new activity links to."""

    track: bool
    reason: str
    regarding: RegardingRef | None = None
    correlation: CorrelationMethod | None = None
    parent_activity_id: str | None = None

    @property
    def explanation(self) -> str:
        return REASONS.get(self.reason, self.reason)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def has_category(categories: Iterable[str], tracked_category: str) -> bool:
    """Outlook category names compare case-insensitively."""
    wanted = tracked_category.strip().casefold()
    return any(str(c).strip().casefold() == wanted for c in categories)


def _decision(
    track: bool, reason: str, corr: Correlation, regarding: RegardingRef | None = None
) -> TrackingDecision:
    if not track:
        return TrackingDecision(track=False, reason=reason)
    return TrackingDecision(
        track=True,
        reason=reason,
        regarding=regarding if regarding is not None else corr.regarding,
        correlation=corr.method,
        parent_activity_id=corr.parent_activity_id,
    )


def decide(
    facts: MessageFacts,
    policy: TrackingPolicy,
    *,
    sender_tables: Collection[str] = (),
    correlation: Correlation | None = None,
    lookups: CorrelationLookups | None = None,
) -> TrackingDecision:
    """Apply the rules in the module docstring's order.

    `sender_tables`: logical tables of every *active* CRM record whose address matches the
    sender (empty when unknown). `correlation`: a precomputed result; otherwise `lookups` are
    used to correlate here (none given means "not correlated").
    """
    if correlation is None:
        if lookups is not None:
            correlation = correlate(
                in_reply_to=facts.in_reply_to,
                references=facts.references,
                subject=facts.subject,
                conversation_id=facts.conversation_id,
                by_message_id=lookups.by_message_id,
                by_token=lookups.by_token,
                by_conversation=lookups.by_conversation,
                policy=policy.correlation,
                self_message_id=facts.internet_message_id,
            )
        else:
            correlation = NO_CORRELATION

    if is_test_message(facts, policy.owner_address):
        return _decision(False, "test_message", correlation)
    if has_category(facts.categories, policy.tracked_category):
        return _decision(True, "category", correlation)
    if facts.folder_id and facts.folder_id in policy.folder_rules:
        return _decision(True, "folder_rule", correlation, policy.folder_rules[facts.folder_id])
    if (
        policy.process_email_from is not None
        and facts.received_at is not None
        and _aware(facts.received_at) < _aware(policy.process_email_from)
    ):
        return _decision(False, "before_process_from", correlation)
    option = TrackingOption(policy.option)
    if option is TrackingOption.NONE:
        return _decision(False, "option_none", correlation)
    if correlation.correlated:
        return _decision(True, f"correlated_{correlation.method.value}", correlation)
    if option is TrackingOption.ALL:
        return _decision(True, "option_all", correlation)
    if option is TrackingOption.RESPONSES_TO_CRM:
        return _decision(False, "not_a_response", correlation)
    tables = {t.lower() for t in sender_tables}
    if normalize_address(facts.sender) is None:
        tables = set()
    if option is TrackingOption.FROM_LEADS_CONTACTS_ACCOUNTS:
        if tables & LEAD_CONTACT_ACCOUNT:
            return _decision(True, "sender_is_lead_contact_account", correlation)
        return _decision(False, "sender_not_crm_record", correlation)
    # FROM_EMAIL_ENABLED_RECORDS: any email-enabled table (systemuser, queue, ... included)
    if tables:
        return _decision(True, "sender_is_email_enabled_record", correlation)
    return _decision(False, "sender_not_crm_record", correlation)


__all__ = [
    "DEFAULT_TRACKED_CATEGORY",
    "REASONS",
    "CorrelationLookups",
    "MessageFacts",
    "TrackingDecision",
    "TrackingPolicy",
    "decide",
    "has_category",
]
