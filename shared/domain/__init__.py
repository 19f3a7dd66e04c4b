"""Pure domain rules: no I/O, no clients, no store; engines call these with plain data.

The mailbox lifecycle lives in `shared.domain.mailbox` and is imported from there directly.
"""

from __future__ import annotations

from .addresses import (
    domain_of,
    graph_recipients,
    graph_sender,
    is_internal,
    normalize_address,
    normalize_message_id,
    parse_mailbox,
    parse_message_ids,
    threading_of,
)
from .auto_create import AutoCreateDecision, AutoCreatePolicy, plan_auto_create, split_name
from .correlation import (
    Correlation,
    CorrelationMethod,
    CorrelationPolicy,
    RegardingRef,
    TrackedRef,
    correlate,
)
from .email_activity import (
    ENTITY_SETS,
    build_incoming_email,
    entity_set,
    parent_activity_bind,
    regarding_bind,
)
from .interval import IntervalPolicy, backoff_due, next_due, next_interval
from .outgoing import (
    ACTIVITY_HEADER,
    ACTIVITY_PROPERTY_ID,
    EmailStatus,
    InvalidTransition,
    OutgoingError,
    OutgoingMessage,
    activity_id_of,
    build_send_mail,
    recovery_status,
    sent_items_filter,
    transition,
)
from .parties import (
    CandidateRecord,
    ParticipationType,
    PartyResolution,
    build_activity_parties,
    resolve,
)
from .sendrate import SendAllowance, allowance
from .tracking import (
    REASONS,
    CorrelationLookups,
    MessageFacts,
    TrackingDecision,
    TrackingPolicy,
    decide,
)
from .tracking_token import append_token, find_token, format_token, strip_token

__all__ = [
    "ACTIVITY_HEADER",
    "ACTIVITY_PROPERTY_ID",
    "ENTITY_SETS",
    "REASONS",
    "AutoCreateDecision",
    "AutoCreatePolicy",
    "CandidateRecord",
    "Correlation",
    "CorrelationLookups",
    "CorrelationMethod",
    "CorrelationPolicy",
    "EmailStatus",
    "IntervalPolicy",
    "InvalidTransition",
    "MessageFacts",
    "OutgoingError",
    "OutgoingMessage",
    "ParticipationType",
    "PartyResolution",
    "RegardingRef",
    "SendAllowance",
    "TrackedRef",
    "TrackingDecision",
    "TrackingPolicy",
    "activity_id_of",
    "allowance",
    "append_token",
    "backoff_due",
    "build_activity_parties",
    "build_incoming_email",
    "build_send_mail",
    "correlate",
    "decide",
    "domain_of",
    "entity_set",
    "find_token",
    "format_token",
    "graph_recipients",
    "graph_sender",
    "is_internal",
    "next_due",
    "next_interval",
    "normalize_address",
    "normalize_message_id",
    "parent_activity_bind",
    "parse_mailbox",
    "parse_message_ids",
    "plan_auto_create",
    "recovery_status",
    "regarding_bind",
    "resolve",
    "sent_items_filter",
    "split_name",
    "strip_token",
    "threading_of",
    "transition",
]
