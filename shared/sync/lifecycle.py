"""The mailbox lifecycle an admin drives: register, approve, configure, test and enable, disable,
import from the CRM's users.

Every change is a read-modify-write guarded by the mailbox's ETag and retried on a race, and the
due index is written before the mailbox and cleaned after it, so a crash between the two writes
leaves at worst a stale index row the scheduler discards, never an enabled mailbox nobody syncs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.dataverse import DataverseClient
from shared.domain.mailbox import (
    Channel,
    ChannelTest,
    DeliveryMethod,
    Mailbox,
    MailboxKind,
    TestResult,
    safe_message,
)
from shared.domain.tracking import TEST_MESSAGE_SUBJECT
from shared.errors import ErrorKind, UpstreamError
from shared.graph import GraphClient
from shared.settings import Settings, TrackingOption
from shared.store import Store
from shared.store.errors import AlreadyExists, ConcurrencyError

log = logging.getLogger("sss.lifecycle")

TEST_HEADER = "x-sss-test-enable"
MUTATE_ATTEMPTS = 5
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class LifecycleError(Exception):
    """A request the lifecycle refuses; `field` names what to fix, `status` the HTTP answer."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field
        self.message = message


@dataclass
class ImportResult:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


class MailboxService:
    """Admin operations on mailboxes, over the store and the app-only clients."""

    def __init__(self, settings: Settings, store: Store, graph: GraphClient,
                 dataverse: DataverseClient, *, clock: Clock = utcnow) -> None:
        self.settings = settings
        self.store = store
        self.graph = graph
        self.dataverse = dataverse
        self.clock = clock

    # --- reading ------------------------------------------------------------------------------

    async def get(self, mailbox_id: str) -> Mailbox:
        found = await self.store.mailboxes.get(mailbox_id)
        if found is None:
            raise LifecycleError(404, "mailbox_id", "no such mailbox")
        return found[0]

    async def list(self, page_size: int, continuation: str | None
                   ) -> tuple[list[Mailbox], str | None]:
        return await self.store.mailboxes.list(page_size=page_size, continuation=continuation)

    # --- writing ------------------------------------------------------------------------------

    async def save(self, mailbox: Mailbox, etag: str | None, previous_due: datetime | None
                   ) -> str:
        """Write the mailbox and keep the due index in step with it (see module doc)."""
        return await self.store.save_mailbox(mailbox, etag, previous_due)

    async def mutate(self, mailbox_id: str,
                     change: Callable[[Mailbox], Awaitable[None] | None]) -> Mailbox:
        """Read, change and write back under the ETag, retrying a lost race."""
        for _ in range(MUTATE_ATTEMPTS):
            found = await self.store.mailboxes.get(mailbox_id)
            if found is None:
                raise LifecycleError(404, "mailbox_id", "no such mailbox")
            mailbox, etag = found
            previous_due = mailbox.next_due_at
            outcome = change(mailbox)
            if outcome is not None:
                await outcome
            try:
                await self.save(mailbox, etag, previous_due)
                return mailbox
            except ConcurrencyError:
                continue
        raise LifecycleError(409, "mailbox_id", "the mailbox kept changing; try again")

    async def register(self, *, email: str | None, owner_object_id: str | None,
                       kind: MailboxKind = MailboxKind.USER,
                       channels: dict[Channel, DeliveryMethod] | None = None,
                       tracking_option: TrackingOption | None = None) -> Mailbox:
        """Register a mailbox for a CRM user found by Entra object id or primary address."""
        user = await self._find_systemuser(owner_object_id=owner_object_id, email=email)
        now = self.clock()
        mailbox = Mailbox.new(
            owner_object_id=user["azureactivedirectoryobjectid"],
            email=(email or user["internalemailaddress"]).lower(),
            now=now,
            kind=kind,
            systemuser_id=user["systemuserid"],
            display_name=user.get("fullname") or "",
            tracking_option=tracking_option or self.settings.default_tracking_option,
        )
        for channel, method in (channels or {}).items():
            mailbox.configure_channel(channel, method, now)
        try:
            await self.save(mailbox, None, None)
        except AlreadyExists:
            raise LifecycleError(409, "owner_object_id", "this user already has a mailbox"
                                 ) from None
        log.info("mailbox registered mailbox_id=%s", mailbox.mailbox_id)
        return mailbox

    async def _find_systemuser(self, *, owner_object_id: str | None, email: str | None
                               ) -> dict[str, Any]:
        if owner_object_id:
            query = f"azureactivedirectoryobjectid eq {owner_object_id}"
            field_name = "owner_object_id"
        elif email:
            literal = email.lower().replace("'", "''")
            query = f"internalemailaddress eq '{literal}'"
            field_name = "email"
        else:
            raise LifecycleError(400, "owner_object_id", "give owner_object_id or email")
        rows = [row async for row in self.dataverse.list(
            "systemusers",
            select=["systemuserid", "azureactivedirectoryobjectid", "internalemailaddress",
                    "fullname", "isdisabled"],
            filter=query, top=2)]
        if not rows:
            raise LifecycleError(404, field_name, "no CRM user has it")
        user = rows[0]
        if user.get("isdisabled"):
            raise LifecycleError(409, field_name, "the CRM user is disabled")
        if not user.get("azureactivedirectoryobjectid"):
            raise LifecycleError(409, field_name, "the CRM user has no Entra object id")
        return user

    async def approve(self, mailbox_id: str) -> Mailbox:
        return await self.mutate(mailbox_id, lambda m: m.approve(self.clock()))

    async def disable(self, mailbox_id: str, reason: str) -> Mailbox:
        return await self.mutate(mailbox_id, lambda m: m.disable(safe_message(reason),
                                                                 self.clock()))

    async def import_from_crm(self, business_unit_id: str | None) -> ImportResult:
        """Register a mailbox for every active CRM user (of one business unit, if given)."""
        query = "isdisabled eq false and azureactivedirectoryobjectid ne null"
        if business_unit_id:
            query += f" and _businessunitid_value eq {business_unit_id}"
        result = ImportResult()
        async for user in self.dataverse.list(
            "systemusers",
            select=["systemuserid", "azureactivedirectoryobjectid", "internalemailaddress",
                    "fullname"],
            filter=query, page_size=self.settings.page_size,
        ):
            object_id = user["azureactivedirectoryobjectid"]
            if not user.get("internalemailaddress"):
                result.skipped.append({"systemuserid": user["systemuserid"],
                                       "reason": "no primary email address"})
                continue
            if await self.store.mailboxes.get(object_id) is not None:
                result.existing.append(object_id)
                continue
            mailbox = Mailbox.new(
                owner_object_id=object_id, email=user["internalemailaddress"].lower(),
                now=self.clock(), systemuser_id=user["systemuserid"],
                display_name=user.get("fullname") or "",
                tracking_option=self.settings.default_tracking_option,
            )
            try:
                await self.save(mailbox, None, None)
                result.created.append(object_id)
            except AlreadyExists:
                result.existing.append(object_id)
        return result

    # --- test & enable ------------------------------------------------------------------------

    async def test_and_enable(self, mailbox_id: str) -> Mailbox:
        """Check every configured channel for real, record each result, enable if all passed."""
        mailbox = await self.get(mailbox_id)
        if not mailbox.approved:
            raise LifecycleError(409, "approved",
                                 "approve the mailbox's email address before testing it")
        results = await self.run_channel_tests(mailbox)
        now = self.clock()

        def apply(current: Mailbox) -> None:
            enabled = current.apply_test_results(results, now)
            if enabled and current.process_email_from is None:
                # Like Dynamics' "process email from": enabling sync does not import the
                # mailbox's history (nor the test message just sent); an admin may set it
                # earlier through PATCH.
                current.process_email_from = now.replace(microsecond=0)  # Graph: whole seconds
            if enabled:
                for channel in current.configured_channels:
                    status = current.channels[channel]
                    status.next_due_at = now
                    status.interval_minutes = status.interval_minutes or \
                        self.settings.sync_interval_minutes

        updated = await self.mutate(mailbox_id, apply)
        log.info("test and enable mailbox_id=%s enabled=%s results=%s", mailbox_id,
                 updated.enabled, {c.value: r.result.value for c, r in results.items()})
        return updated

    async def run_channel_tests(self, mailbox: Mailbox) -> dict[Channel, ChannelTest]:
        crm = await self._check(self._check_crm(mailbox))
        checks = {
            Channel.INCOMING: self._check_incoming,
            Channel.OUTGOING: self._check_outgoing,
            Channel.ACT: self._check_act,
        }
        results: dict[Channel, ChannelTest] = {}
        for channel in mailbox.configured_channels:
            if crm.result is TestResult.FAILURE:
                results[channel] = crm
                continue
            results[channel] = await self._check(checks[channel](mailbox))
        return results

    async def _check(self, check: Awaitable[None]) -> ChannelTest:
        try:
            await check
        except UpstreamError as error:
            return ChannelTest(result=TestResult.FAILURE, error=_describe(error))
        return ChannelTest(result=TestResult.SUCCESS)

    async def _check_crm(self, mailbox: Mailbox) -> None:
        """WhoAmI as the owner: proves the application user may act for them."""
        who = await self.dataverse.impersonate(mailbox.owner_object_id).whoami()
        if mailbox.systemuser_id and who.get("UserId", "").lower() != \
                mailbox.systemuser_id.lower():
            raise UpstreamError("impersonation answered for another user",
                                kind=ErrorKind.AUTH, service="dataverse")

    async def _check_incoming(self, mailbox: Mailbox) -> None:
        await self.graph.get_mail_folder(mailbox.mailbox_id, "inbox")

    async def _check_outgoing(self, mailbox: Mailbox) -> None:
        await self.graph.send_mail(mailbox.mailbox_id, {
            "subject": TEST_MESSAGE_SUBJECT,
            "body": {"contentType": "text",
                     "content": "This message tests outgoing email for this mailbox."},
            "toRecipients": [{"emailAddress": {"address": mailbox.email}}],
            "internetMessageHeaders": [{"name": TEST_HEADER, "value": "1"}],
        }, save_to_sent_items=False)

    async def _check_act(self, mailbox: Mailbox) -> None:
        user = mailbox.mailbox_id
        await self.graph.get_json(f"/users/{user}/events", params={"$top": "1",
                                                                    "$select": "id"})
        await self.graph.get_json(f"/users/{user}/contacts", params={"$top": "1",
                                                                      "$select": "id"})
        await self.graph.get_json(f"/users/{user}/todo/lists", params={"$top": "1"})


def _describe(error: UpstreamError) -> str:
    hints = {
        ErrorKind.AUTH: "the service is not allowed to use this mailbox or user "
                        "(check application permissions and the application user)",
        ErrorKind.FORBIDDEN: "access denied (check Graph application roles, Exchange RBAC "
                             "scope, and the Dataverse application user's privileges)",
        ErrorKind.NOT_FOUND: "the mailbox or user was not found",
        ErrorKind.TRANSIENT: "the service was unavailable or throttled after retries",
    }
    hint = hints.get(error.kind, "unexpected failure")
    return f"{error.summary()}: {hint}"
