"""The mailbox record and its lifecycle rules (approve, test and enable, fail, disable).

Pure: no I/O and no clock. Every rule takes `now` so the engines, the tests and the property
tests drive time explicitly. Methods change the model in place; the caller persists it with
the ETag it read, so a concurrent change is detected by the store, not here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain.folder_rules import MAX_FOLDER_RULES, FolderRule, first_problem
from shared.errors import ErrorKind
from shared.settings import TrackingOption

MAX_RECENT_ERRORS = 20
MAX_MESSAGE_CHARS = 500

# Kinds a whole-mailbox cycle may simply retry: a throttled or unreachable service, a write
# that raced, an expired delta the next cycle restarts. Every other kind needs a person.
RETRYABLE_KINDS = frozenset({ErrorKind.TRANSIENT, ErrorKind.CONFLICT, ErrorKind.EXPIRED})

# Generous on purpose: RFC 5322 local parts may hold ' { } / = ? and more; over-redacting a
# token that merely contains '@' costs nothing.
_ADDRESS = re.compile(r"[^\s<>()\[\]\",;:@]+@[^\s<>()\[\]\",;:@]+")


class MailboxRuleError(ValueError):
    """An illegal change of a mailbox; `field` names what the admin must fix.

    A ValueError so pydantic validators surface it; raised directly by the rule methods.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Channel(StrEnum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"
    ACT = "act"  # appointments, contacts and tasks


class DeliveryMethod(StrEnum):
    SERVER_SIDE_SYNC = "server_side_sync"
    NONE = "none"


class TestResult(StrEnum):
    __test__ = False  # not a pytest test class

    NOT_RUN = "not_run"
    SUCCESS = "success"
    FAILURE = "failure"


class MailboxKind(StrEnum):
    USER = "user"
    QUEUE = "queue"


def safe_message(text: str) -> str:
    """Strip anything that looks like an email address and bound the length.

    Status and errors are shown to admins and may reach logs; addresses must never do.
    """
    cleaned = _ADDRESS.sub("<address>", text or "").replace("\n", " ").strip()
    return cleaned[:MAX_MESSAGE_CHARS]


Count = Annotated[int, Field(ge=0)]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise MailboxRuleError("now", "datetimes must be timezone-aware")
    return value.astimezone(UTC)


class ChannelStatus(BaseModel):
    """Configuration and last-known state of one channel of one mailbox."""

    model_config = ConfigDict(extra="ignore")

    delivery_method: DeliveryMethod = DeliveryMethod.SERVER_SIDE_SYNC
    test_result: TestResult = TestResult.NOT_RUN
    test_error: str | None = None
    tested_at: datetime | None = None
    enabled: bool = False
    last_cycle_at: datetime | None = None
    items_moved: Count = 0
    next_due_at: datetime | None = None
    interval_minutes: Annotated[int, Field(ge=1)] | None = None
    consecutive_failures: Count = 0
    consecutive_empty_cycles: Count = 0
    last_error: str | None = None
    last_error_at: datetime | None = None

    @property
    def configured(self) -> bool:
        return self.delivery_method is DeliveryMethod.SERVER_SIDE_SYNC


class ChannelTest(BaseModel):
    """The outcome of testing one channel (what test-and-enable reports)."""

    result: TestResult
    error: str | None = None


class MailboxError(BaseModel):
    """One recent failure, safe to show: never addresses, bodies or tokens."""

    at: datetime
    channel: Channel
    kind: ErrorKind
    message: str


AutoCreate = Literal["off", "contact", "lead"]


class Mailbox(BaseModel):
    """A mailbox as server-side sync sees it: configuration, approval and per-channel status."""

    model_config = ConfigDict(extra="ignore")

    # a Table Storage key in every table: no / \\ # ? or control characters
    mailbox_id: str = Field(..., min_length=1, max_length=200,
                            pattern=r"^[^/\\#?\x00-\x1f\x7f-\x9f]+$")
    owner_object_id: str = Field(..., min_length=1)
    systemuser_id: str | None = None
    email: str = Field(..., min_length=3)  # kept for Graph calls; never logged
    display_name: str = ""
    kind: MailboxKind = MailboxKind.USER
    approved: bool = False
    enabled: bool = False
    disabled_reason: str | None = None
    channels: dict[Channel, ChannelStatus] = Field(default_factory=dict)
    tracking_option: TrackingOption = TrackingOption.RESPONSES_TO_CRM
    auto_create_records: AutoCreate = "off"
    folder_rules: list[FolderRule] = Field(default_factory=list)
    process_email_from: datetime | None = None
    recent_errors: list[MailboxError] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def new(
        cls,
        *,
        owner_object_id: str,
        email: str,
        now: datetime,
        kind: MailboxKind = MailboxKind.USER,
        systemuser_id: str | None = None,
        display_name: str = "",
        tracking_option: TrackingOption = TrackingOption.RESPONSES_TO_CRM,
    ) -> Mailbox:
        """A fresh, unapproved mailbox with every channel its kind supports configured."""
        now = _utc(now)
        channels = [Channel.INCOMING, Channel.OUTGOING]
        if kind is MailboxKind.USER:
            channels.append(Channel.ACT)
        return cls(
            mailbox_id=owner_object_id,
            owner_object_id=owner_object_id,
            systemuser_id=systemuser_id,
            email=email,
            display_name=display_name,
            kind=kind,
            channels={channel: ChannelStatus() for channel in channels},
            tracking_option=tracking_option,
            created_at=now,
            updated_at=now,
        )

    @model_validator(mode="after")
    def _invariants(self) -> Mailbox:
        if self.kind is MailboxKind.QUEUE:
            act = self.channels.get(Channel.ACT)
            if act is not None and act.configured:
                raise MailboxRuleError(
                    "channels", "a queue mailbox syncs email only, not appointments/contacts/tasks"
                )
        if len(self.folder_rules) > MAX_FOLDER_RULES:
            raise MailboxRuleError(
                "folder_rules", f"at most {MAX_FOLDER_RULES} folder rules per mailbox"
            )
        if self.enabled and not self.approved:
            raise MailboxRuleError("approved", "a mailbox must be approved before it is enabled")
        return self

    # --- views ----------------------------------------------------------------------------------

    @property
    def configured_channels(self) -> list[Channel]:
        return [channel for channel, status in self.channels.items() if status.configured]

    @property
    def next_due_at(self) -> datetime | None:
        """When the scheduler should next look at this mailbox (earliest enabled channel)."""
        if not self.enabled:
            return None
        times = [
            status.next_due_at
            for status in self.channels.values()
            if status.enabled and status.next_due_at is not None
        ]
        return min(times, default=None)

    def status(self, channel: Channel) -> ChannelStatus:
        status = self.channels.get(channel)
        if status is None:
            raise MailboxRuleError("channels", f"channel {channel.value} is not configured")
        return status

    # --- configuration --------------------------------------------------------------------------

    def configure_channel(
        self, channel: Channel, delivery_method: DeliveryMethod, now: datetime
    ) -> None:
        """Change a channel's delivery method; it must be tested again before it syncs."""
        if (
            channel is Channel.ACT
            and self.kind is MailboxKind.QUEUE
            and delivery_method is DeliveryMethod.SERVER_SIDE_SYNC
        ):
            raise MailboxRuleError(
                "channels", "a queue mailbox syncs email only, not appointments/contacts/tasks"
            )
        status = self.channels.setdefault(channel, ChannelStatus())
        if status.delivery_method is not delivery_method:
            status.delivery_method = delivery_method
            status.test_result = TestResult.NOT_RUN
            status.test_error = None
            status.enabled = False
            status.next_due_at = None
            if delivery_method is DeliveryMethod.SERVER_SIDE_SYNC:
                self.enabled = False
                self.disabled_reason = "channel configuration changed: test and enable again"
        self.updated_at = _utc(now)

    def set_folder_rules(
        self, rules: list[FolderRule], now: datetime, max_rules: int = MAX_FOLDER_RULES,
        regarding_tables: Collection[str] | None = None,
    ) -> None:
        """Replace the folder rules; at most `max_rules` (never more than 25), each one that
        today's rules accept (`folder_rules.problem_of`)."""
        problem = first_problem(rules, regarding_tables, max_rules)
        if problem is not None:
            raise MailboxRuleError(*problem)
        self.folder_rules = list(rules)
        self.updated_at = _utc(now)

    # --- lifecycle --------------------------------------------------------------------------------

    def approve(self, now: datetime) -> None:
        """An admin approved the address; the mailbox still needs a successful test."""
        self.approved = True
        self.updated_at = _utc(now)

    def revoke_approval(self, now: datetime) -> None:
        self.approved = False
        self.disable("approval revoked", now)

    def enable(self, now: datetime) -> None:
        """Enable explicitly; legal only when approved and every configured channel passed."""
        now = _utc(now)
        if not self.approved:
            raise MailboxRuleError("approved", "a mailbox must be approved before it is enabled")
        configured = self.configured_channels
        if not configured:
            raise MailboxRuleError("channels", "no channel uses server-side synchronization")
        untested = [c.value for c in configured if self.channels[c].test_result is not
                    TestResult.SUCCESS]
        if untested:
            raise MailboxRuleError(
                "channels", f"test and enable has not passed for: {', '.join(untested)}"
            )
        self._switch_on(now)

    def apply_test_results(
        self, results: Mapping[Channel, ChannelTest | TestResult], now: datetime
    ) -> bool:
        """Record test-and-enable results; enable when approved and every configured channel
        passed. Returns whether the mailbox is enabled afterwards."""
        now = _utc(now)
        for channel, outcome in results.items():
            test = outcome if isinstance(outcome, ChannelTest) else ChannelTest(result=outcome)
            if channel is Channel.ACT and self.kind is MailboxKind.QUEUE:
                raise MailboxRuleError(
                    "channels", "a queue mailbox syncs email only, not appointments/contacts/tasks"
                )
            status = self.status(channel)
            status.test_result = test.result
            status.test_error = safe_message(test.error) if test.error else None
            status.tested_at = now
            if test.result is TestResult.FAILURE:
                status.enabled = False
                status.next_due_at = None
        self.updated_at = now
        configured = self.configured_channels
        failed = [c.value for c in configured if self.channels[c].test_result is
                  TestResult.FAILURE]
        passed = bool(configured) and all(
            self.channels[c].test_result is TestResult.SUCCESS for c in configured
        )
        if failed:
            self.enabled = False
            self.disabled_reason = f"test failed: {', '.join(failed)}"
        elif passed and self.approved:
            self._switch_on(now)
        elif passed:
            self.disabled_reason = "not approved"
        return self.enabled

    def record_success(
        self,
        channel: Channel,
        items_moved: int,
        now: datetime,
        next_due_at: datetime,
        interval_minutes: int,
    ) -> None:
        """A cycle finished: reset the failure streak and schedule the next cycle."""
        now = _utc(now)
        status = self.status(channel)
        status.last_cycle_at = now
        status.items_moved = max(0, items_moved)
        status.consecutive_failures = 0
        status.consecutive_empty_cycles = (
            0 if items_moved > 0 else status.consecutive_empty_cycles + 1
        )
        status.next_due_at = _utc(next_due_at)
        status.interval_minutes = interval_minutes
        self.updated_at = now

    def record_failure(
        self,
        channel: Channel,
        kind: ErrorKind,
        message: str,
        now: datetime,
        transient_retry_limit: int,
        retry_minutes: int,
    ) -> bool:
        """A cycle failed. Retryable kinds back off `retry_minutes`; once the streak exceeds
        `transient_retry_limit` (or at once for any other kind) the mailbox is disabled.

        Returns True when this failure disabled the mailbox.
        """
        now = _utc(now)
        status = self.status(channel)
        text = safe_message(message)
        status.last_error = text
        status.last_error_at = now
        status.last_cycle_at = now
        status.items_moved = 0
        status.consecutive_failures += 1
        self._remember(MailboxError(at=now, channel=channel, kind=kind, message=text))
        self.updated_at = now
        if kind in RETRYABLE_KINDS and status.consecutive_failures <= transient_retry_limit:
            status.next_due_at = now + timedelta(minutes=retry_minutes)
            return False
        if kind in RETRYABLE_KINDS:
            reason = (
                f"{channel.value}: {status.consecutive_failures} consecutive transient "
                f"failures: {text}"
            )
        else:
            reason = f"{channel.value}: {kind.value}: {text}"
        was_enabled = self.enabled
        self.disable(reason, now)
        return was_enabled

    def disable(self, reason: str, now: datetime) -> None:
        """Stop syncing every channel; an admin must test and enable again."""
        self.enabled = False
        self.disabled_reason = safe_message(reason) or "disabled"
        for status in self.channels.values():
            status.enabled = False
            status.next_due_at = None
        self.updated_at = _utc(now)

    # --- helpers -------------------------------------------------------------------------------

    def _switch_on(self, now: datetime) -> None:
        self.enabled = True
        self.disabled_reason = None
        for status in self.channels.values():
            if status.configured:
                status.enabled = True
                status.consecutive_failures = 0
                status.next_due_at = now  # sync right away
        self.updated_at = now

    def _remember(self, error: MailboxError) -> None:
        self.recent_errors = [*self.recent_errors, error][-MAX_RECENT_ERRORS:]


__all__ = [
    "MAX_FOLDER_RULES",
    "MAX_RECENT_ERRORS",
    "RETRYABLE_KINDS",
    "AutoCreate",
    "Channel",
    "ChannelStatus",
    "ChannelTest",
    "DeliveryMethod",
    "FolderRule",
    "Mailbox",
    "MailboxError",
    "MailboxKind",
    "MailboxRuleError",
    "TestResult",
    "safe_message",
]
