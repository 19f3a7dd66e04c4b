"""Outgoing email: Pending Send activities sent through the owner's mailbox, exactly once.

Claim: Pending Send (6) -> Sending (7) with the row's ETag, so nobody else sends it. Send with
the activity id stamped on the message (extended property + x- header). Mark Sent (3) with the
sent copy's internetMessageId. A worker killed after sending leaves the email in Sending; the
next cycle finds our stamp in Sent Items and only marks it, so nothing goes out twice. A send
that failed transiently stays in Sending for the same check; after a few attempts it is Failed
(8), with the reason in the mailbox's recent errors.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.domain.addresses import normalize_address, normalize_message_id
from shared.domain.correlation import TrackedRef
from shared.domain.mailbox import Mailbox
from shared.domain.outgoing import (
    ACTIVITY_PROPERTY_ID,
    EmailStatus,
    OutgoingError,
    build_send_mail,
    transition,
)
from shared.domain.sendrate import allowance, prune
from shared.errors import ErrorKind, UpstreamError
from shared.store import PendingItem
from shared.store.keys import utc
from shared.store.tracked import TrackedMessage

from .context import SyncContext
from .incoming import _regarding_of
from .threads import ConversationRepository, to_regarding

log = logging.getLogger("sss.outgoing")

STREAM = "outgoing"
SENDS_STREAM = "outgoing:sends"
MAX_SEND_ATTEMPTS = 3
PARTY_EXPAND = ("email_activity_parties($select=participationtypemask,addressused,"
                "_partyid_value)")
SELECT = ["activityid", "subject", "description", "statuscode", "statecode", "trackingtoken",
          "inreplyto", "regardingobjecttypecode", "_regardingobjectid_value"]
ADDRESS_TABLES = (("contacts", "emailaddress1"), ("accounts", "emailaddress1"),
                  ("leads", "emailaddress1"), ("systemusers", "internalemailaddress"))


@dataclass
class OutgoingResult:
    sent: int = 0
    recovered: int = 0
    failed: int = 0
    deferred: int = 0
    next_slot_at: datetime | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)  # (activity id, reason)

    @property
    def moved(self) -> int:
        return self.sent + self.recovered + self.failed


class OutgoingEngine:
    def __init__(self, ctx: SyncContext, mailbox: Mailbox) -> None:
        self.ctx = ctx
        self.mailbox = mailbox
        self.user = mailbox.mailbox_id
        self.dv = ctx.dataverse.impersonate(mailbox.owner_object_id)
        self.result = OutgoingResult()

    async def run(self) -> OutgoingResult:
        if not self.mailbox.systemuser_id:
            return self.result
        sender = self.mailbox.systemuser_id
        flt = (f"(statuscode eq {int(EmailStatus.PENDING_SEND)} or statuscode eq "
               f"{int(EmailStatus.SENDING)}) and email_activity_parties/any(p: "
               f"p/participationtypemask eq 1 and p/_partyid_value eq {sender})")
        emails = [row async for row in self.dv.list(
            "emails", select=SELECT, filter=flt, expand=PARTY_EXPAND, orderby="createdon asc")]
        if not emails:
            return self.result
        sends, sends_etag = await self._recent_sends()
        try:
            for email in emails:
                now = self.ctx.clock()
                slots = allowance(sends, now, limit=self.ctx.settings.send_limit_per_minute)
                if slots.allowed <= 0:
                    self.result.deferred += 1
                    self.result.next_slot_at = slots.next_slot_at
                    continue
                if await self._one(email):
                    sends.append(now)
        finally:
            await self._save_sends(sends, sends_etag)
        return self.result

    async def _one(self, email: dict[str, Any]) -> bool:
        """Returns True when a message actually went out."""
        aid = str(email["activityid"])
        status = int(email.get("statuscode") or 0)
        recovering = status == EmailStatus.SENDING
        if not recovering:
            try:
                await self.dv.update("emails", aid, transition(status, EmailStatus.SENDING),
                                     etag=email.get("@odata.etag"))
            except UpstreamError as error:
                if error.kind in (ErrorKind.CONFLICT, ErrorKind.NOT_FOUND):
                    return False  # changed or deleted by someone meanwhile
                raise
        await self.ctx.checkpoint("outgoing:claimed")
        sent = None
        if recovering:
            sent = await self.ctx.graph.find_sent_message_by_marker(
                self.user, ACTIVITY_PROPERTY_ID, aid)
            if sent is not None:
                self.result.recovered += 1
        went_out = False
        if sent is None:
            try:
                message = build_send_mail(
                    email, email.get("email_activity_parties") or [], activity_id=aid,
                    resolved_addresses=await self._addresses_of(email),
                    in_reply_to=email.get("inreplyto"))
            except OutgoingError as error:
                await self._fail(aid, error.reason)
                return False
            try:
                await self.ctx.graph.send_mail(self.user, message.payload["message"],
                                               save_to_sent_items=True)
            except UpstreamError as error:
                await self._send_failed(aid, error)
                return False
            went_out = True
            await self.ctx.checkpoint("outgoing:sent")
            sent = await self.ctx.graph.find_sent_message_by_marker(
                self.user, ACTIVITY_PROPERTY_ID, aid)
        imid = (sent or {}).get("internetMessageId")
        patch: dict[str, Any] = transition(EmailStatus.SENDING, EmailStatus.SENT)
        if imid:
            patch["messageid"] = imid
        await self.dv.update("emails", aid, patch)
        await self.ctx.checkpoint("outgoing:marked")
        await self.ctx.store.pending.remove(self.user, STREAM, aid)
        if imid:
            await self._remember(aid, str(imid), (sent or {}).get("conversationId"), email)
        if went_out:
            self.result.sent += 1
        return went_out

    async def _remember(self, aid: str, imid: str, conversation_id: str | None,
                        email: dict[str, Any]) -> None:
        """Replies (and internal recipients' copies) correlate back to this activity."""
        key = normalize_message_id(imid) or imid
        regarding = _regarding_of(email)
        row = TrackedMessage(internet_message_id=key, state="tracked", activity_id=aid,
                             regarding=to_regarding(regarding),
                             tracked_by=self.mailbox.owner_object_id,
                             tracked_at=self.ctx.clock(), claimed_by=self.user,
                             copies={self.user: None})
        await self.ctx.store.tracked.put(row)
        if conversation_id:
            await ConversationRepository(self.ctx.store.clients).remember(
                conversation_id, TrackedRef(aid, regarding, key), self.ctx.clock())

    async def _send_failed(self, aid: str, error: UpstreamError) -> None:
        """Transient: stay in Sending (the next cycle checks Sent Items before resending);
        after MAX_SEND_ATTEMPTS, or at once for a permanent refusal, Failed."""
        if error.kind is not ErrorKind.TRANSIENT:
            await self._fail(aid, error.summary())
            return
        item = PendingItem(mailbox_id=self.user, stream=STREAM, item_id=aid)
        existing = {p.item_id: p for p in await self.ctx.store.pending.list(self.user, STREAM)}
        current = existing.get(aid)
        if current is None:
            await self.ctx.store.pending.add_many([item], self.ctx.clock())
            current = item
        updated = await self.ctx.store.pending.record_attempt(current, error.summary())
        if updated.attempts >= MAX_SEND_ATTEMPTS:
            await self._fail(aid, f"{updated.attempts} attempts: {error.summary()}")

    async def _fail(self, aid: str, reason: str) -> None:
        await self.dv.update("emails", aid, transition(EmailStatus.SENDING, EmailStatus.FAILED))
        await self.ctx.store.pending.remove(self.user, STREAM, aid)
        self.result.failed += 1
        self.result.errors.append((aid, reason))
        log.warning("mailbox %s: email %s failed to send: %s", self.user, aid, reason)

    async def _addresses_of(self, email: dict[str, Any]) -> dict[str, str]:
        """Addresses of recipient parties bound to a record without `addressused`."""
        out: dict[str, str] = {}
        for party in email.get("email_activity_parties") or ():
            pid = party.get("_partyid_value")
            if party.get("participationtypemask") == 1 or not pid or \
                    normalize_address(party.get("addressused")):
                continue
            for entity_set, column in ADDRESS_TABLES:
                row = await self.dv.get(entity_set, str(pid), select=[column])
                if row and row.get(column):
                    out[str(pid)] = str(row[column])
                    break
        return out

    async def _recent_sends(self) -> tuple[list[datetime], str | None]:
        cursor = await self.ctx.store.cursors.get(self.user, SENDS_STREAM)
        if cursor is None:
            return [], None
        try:
            times = [utc(datetime.fromisoformat(t)) for t in json.loads(cursor.value)]
        except (ValueError, TypeError):
            times = []
        return times, cursor.etag

    async def _save_sends(self, sends: list[datetime], etag: str | None) -> None:
        kept = prune(sends, self.ctx.clock())
        value = json.dumps([t.isoformat() for t in kept])
        await self.ctx.store.cursors.put(self.user, SENDS_STREAM, value, etag)


__all__ = ["OutgoingEngine", "OutgoingResult"]
