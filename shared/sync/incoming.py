"""Incoming email: Graph delta of the Inbox (and of each tracked folder) into email activities.

Per delta page, in this order: decide which messages to track (tracking option, category,
folder rule, correlation), create the missing activities in one Dataverse $batch, record them
in the tracked-messages table, tag every copy with the tracked category, and only then write
the page's next/delta link as the cursor. A crash anywhere before the cursor write replays the
page; replays cannot duplicate because an activity's id is derived from its internetMessageId
(a second create is a 412) and known messages are looked up first. A message that fails on
its own is parked in the pending table, so the cursor still moves past it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from shared.dataverse import DataverseOperation
from shared.domain.addresses import (
    IN_REPLY_TO_PROPERTY,
    REFERENCES_PROPERTY,
    graph_participants,
    graph_recipients,
    graph_sender,
    is_internal,
    normalize_address,
)
from shared.domain.auto_create import AutoCreatePolicy, plan_auto_create
from shared.domain.correlation import RegardingRef, TrackedRef
from shared.domain.email_activity import build_incoming_email, entity_set, regarding_bind
from shared.domain.folder_rules import usable
from shared.domain.mailbox import Mailbox
from shared.domain.parties import CandidateRecord, build_activity_parties
from shared.domain.tracking import (
    CorrelationLookups,
    MessageFacts,
    TrackingDecision,
    TrackingPolicy,
    decide,
    has_category,
)
from shared.domain.tracking_token import find_token, format_token
from shared.errors import ErrorKind, UpstreamError
from shared.graph import BatchRequest
from shared.settings import TrackingOption
from shared.store import PendingItem
from shared.store.tracked import TrackedPatch
from shared.store.untracked import marker_key

from .batching import batch_with_retry, in_filter, query_path
from .categories import CategoryTagger
from .context import SyncContext
from .parties import PartyResolver
from .threads import (
    ConversationRepository,
    activity_id_for,
    likely_reply,
    record_id_for,
    to_regarding,
)

log = logging.getLogger("sss.incoming")

SELECT = [
    "id", "internetMessageId", "conversationId", "conversationIndex", "subject", "body",
    "from", "sender", "toRecipients", "ccRecipients", "receivedDateTime", "sentDateTime",
    "categories", "parentFolderId", "isDraft",
]
THREAD_EXPAND = (f"singleValueExtendedProperties($filter=id eq '{IN_REPLY_TO_PROPERTY}' "
                 f"or id eq '{REFERENCES_PROPERTY}')")
EMAIL_SELECT = ["activityid", "messageid", "trackingtoken", "regardingobjecttypecode",
                "_regardingobjectid_value"]
MAX_ITEM_ATTEMPTS = 3
MAX_RESTARTS = 2
CONCURRENCY = 16
T = TypeVar("T")


@dataclass
class IncomingResult:
    created: int = 0
    linked: int = 0
    tagged: int = 0
    pages: int = 0
    restarts: int = 0
    failed_items: int = 0
    untracked: int = 0  # copies whose user removed the category
    folder_errors: list[str] = field(default_factory=list)

    @property
    def moved(self) -> int:
        return self.created + self.linked + self.tagged + self.untracked


async def _gather(calls: Iterable[Awaitable[T]], limit: int = CONCURRENCY) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def run(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return await asyncio.gather(*(run(c) for c in calls))


def _regarding_of(row: Mapping[str, Any]) -> RegardingRef | None:
    table, rid = row.get("regardingobjecttypecode"), row.get("_regardingobjectid_value")
    return RegardingRef(str(table), str(rid)) if table and rid else None


@dataclass
class _Work:
    message: dict[str, Any]
    facts: MessageFacts
    imid: str
    decision: TrackingDecision | None = None


class IncomingEngine:
    """One mailbox's incoming cycle. `renew` is called between pages to keep the lease."""

    def __init__(self, ctx: SyncContext, mailbox: Mailbox, *,
                 renew: Callable[[], Awaitable[None]] | None = None) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.mailbox = mailbox
        self.user = mailbox.mailbox_id
        self.renew = renew
        self.dv = ctx.dataverse.impersonate(mailbox.owner_object_id)
        self.resolver = PartyResolver(self.dv, owner_systemuser_id=mailbox.systemuser_id,
                                      org_domains=s.organization_domains,
                                      max_wait=s.retry_max_wait_seconds)
        self.tagger = CategoryTagger(ctx.graph, ctx.store, s.tracked_category)
        self.conversations = ConversationRepository(ctx.store.clients)
        self.folder_rules = usable(mailbox.folder_rules, s.regarding_tables)
        rules: dict[str, RegardingRef | None] = {
            r.folder_id: (RegardingRef(r.regarding_table, r.regarding_id)
                          if r.regarding_table and r.regarding_id else None)
            for r in self.folder_rules
        }
        self.policy = TrackingPolicy.from_settings(
            s, option=mailbox.tracking_option, process_email_from=mailbox.process_email_from,
            folder_rules=rules, owner_address=mailbox.email)  # type: ignore[arg-type]
        table = mailbox.auto_create_records if mailbox.auto_create_records != "off" \
            else "contact"
        self.auto = AutoCreatePolicy.from_settings(
            s, enabled=mailbox.auto_create_records != "off", table=table)
        self.result = IncomingResult()
        self._mailbox_by_address: dict[str, str | None] = {}
        self._conversations: dict[str, TrackedRef] = {}
        self._patches: list[TrackedPatch] = []
        self._untracked: set[str] | None = None

    # --- streams -----------------------------------------------------------------------------

    def streams(self) -> list[tuple[str, str]]:
        out = [("incoming:inbox", "inbox")]
        out += [(f"incoming:folder:{r.folder_id}", r.folder_id) for r in self.folder_rules]
        return out

    async def run(self) -> IncomingResult:
        for stream, folder in self.streams():
            try:
                await self._stream(stream, folder)
            except UpstreamError as error:
                if stream != "incoming:inbox" and error.kind is ErrorKind.NOT_FOUND:
                    # a tracked folder was deleted: the rest of the mailbox still syncs
                    self.result.folder_errors.append(stream)
                    log.warning("mailbox %s: tracked folder gone (%s)", self.user,
                                error.summary())
                    continue
                raise
        return self.result

    async def _stream(self, stream: str, folder: str) -> None:
        await self._retry_pending(stream)
        store = self.ctx.store
        restarts = 0
        while True:
            cursor = await store.cursors.get(self.user, stream)
            etag = cursor.etag if cursor else None
            try:
                async for page in self.ctx.graph.delta_messages(
                        self.user, folder, link=cursor.value if cursor else None,
                        select=SELECT, page_size=self.ctx.settings.page_size):
                    self.result.pages += 1
                    await self.process(stream, page.items)
                    await self.ctx.checkpoint("incoming:before-cursor")
                    if page.link:
                        etag = await store.cursors.put(self.user, stream, page.link, etag)
                    await self.ctx.checkpoint("incoming:after-cursor")
                    if self.renew is not None:
                        await self.renew()
                return
            except UpstreamError as error:
                if error.kind is not ErrorKind.EXPIRED or restarts >= MAX_RESTARTS:
                    raise
                # 410: the delta state is gone; a full round is safe because nothing is
                # created twice (deterministic activity ids, tracked-message lookups)
                restarts += 1
                self.result.restarts += 1
                log.info("mailbox %s stream %s: delta expired, full resync", self.user, stream)
                await store.cursors.reset(self.user, stream)

    async def _retry_pending(self, stream: str) -> None:
        """Messages parked by an earlier cycle: fetched by id and processed again."""
        pending = await self.ctx.store.pending.list(self.user, stream)
        if not pending:
            return
        params = urlencode({"$select": ",".join(SELECT)}, quote_via=quote)
        answers = await self.ctx.graph.batch([
            BatchRequest("GET", f"/users/{quote(self.user)}/messages/{quote(p.item_id)}?{params}")
            for p in pending])
        messages = []
        for item, answer in zip(pending, answers, strict=True):
            if answer.ok and isinstance(answer.body, dict):
                messages.append(answer.body)
            elif answer.error is not None and answer.error.kind is ErrorKind.NOT_FOUND:
                await self.ctx.store.pending.remove(self.user, stream, item.item_id)
            elif answer.error is not None:
                raise answer.error
        failed = await self.process(stream, messages, park=False)
        by_id = {p.item_id: p for p in pending}
        for message in messages:
            parked = by_id.get(str(message.get("id")))
            if parked is None:
                continue
            error = failed.get(parked.item_id)
            if error is None or parked.attempts + 1 >= MAX_ITEM_ATTEMPTS:
                if error is not None:
                    log.warning("mailbox %s: giving up on a message after %d attempts: %s",
                                self.user, parked.attempts + 1, error)
                await self.ctx.store.pending.remove(self.user, stream, parked.item_id)
            else:
                await self.ctx.store.pending.record_attempt(parked, error)

    # --- one page ----------------------------------------------------------------------------

    async def process(self, stream: str, items: Sequence[dict[str, Any]], *,
                      park: bool = True) -> dict[str, str]:
        """Handle one page of messages; returns {message id: error} of those that failed
        on their own (parked as pending when `park`).

        Storage is touched per page, not per message: which messages are tracked already
        comes from the same Dataverse query that finds the parents of replies, and the
        tracked-message rows are merged in a few batch transactions. A row is read only for
        a tracked message whose copy here lacks the category (tag it, or its user removed
        the category: untrack this copy, keep the activity)."""
        works = [_Work(m, MessageFacts.from_graph(m), "") for m in items
                 if m.get("internetMessageId") and not m.get("isDraft")]
        for w in works:
            w.imid = w.facts.internet_message_id or ""
        works = [w for w in works if w.imid]
        if not works:
            return {}
        if self.policy.correlation.in_reply_to:
            await self._fetch_threading([w for w in works if likely_reply(w.message)])
        untracked = await self._untracked_keys()
        lookups = await self._correlation_lookups(works)
        by_mid = dict(lookups.by_message_id) if isinstance(lookups.by_message_id, Mapping) \
            else {}
        if self.policy.option in (TrackingOption.FROM_LEADS_CONTACTS_ACCOUNTS,
                                  TrackingOption.FROM_EMAIL_ENABLED_RECORDS):
            await self.resolver.prime(w.facts.sender for w in works if w.imid not in by_mid)
        category = self.ctx.settings.tracked_category
        known: list[tuple[_Work, TrackedRef]] = []
        unsure: list[tuple[_Work, TrackedRef]] = []
        to_create: list[_Work] = []
        regarding_updates: list[tuple[_Work, TrackedRef, RegardingRef]] = []
        for w in works:
            has_tag = has_category(w.facts.categories, category)
            if marker_key(w.imid) in untracked:
                if not has_tag:
                    continue  # its user untracked it: the cycle leaves it alone
                await self.ctx.store.untracked.remove(self.user, w.imid)  # category put back
                untracked.discard(marker_key(w.imid))
            ref = by_mid.get(w.imid)
            if ref is not None:
                rule = self.policy.folder_rules.get(w.facts.folder_id or "")
                if rule is not None and (ref.regarding is None or ref.regarding.id != rule.id):
                    regarding_updates.append((w, ref, rule))
                (known if has_tag else unsure).append((w, ref))
                continue
            w.decision = decide(w.facts, self.policy,
                                sender_tables=self.resolver.tables_of(w.facts.sender),
                                lookups=lookups)
            if w.decision.track:
                to_create.append(w)

        failed: dict[str, str] = {}
        self._conversations = {}
        self._patches = []
        created = await self._create(to_create, failed)
        to_tag = await self._recheck(unsure)
        for w, ref in known:
            self._record(w, ref.activity_id, None, found=True)
        await self._update_regarding(regarding_updates)
        # tag before recording: a crash in between replays as "tracked and tagged", which
        # records the copy; the other order would replay as "category removed by the user"
        tagged = await self.tagger.tag(self.user, [w.message for w in to_tag + created])
        self.result.tagged += max(0, tagged - len(created))
        await self.ctx.checkpoint("incoming:after-tag")
        await self.ctx.store.tracked.merge_many(self._patches)
        known_threads = (lookups.by_conversation
                         if isinstance(lookups.by_conversation, Mapping) else {})
        fresh_threads = {c: r for c, r in self._conversations.items() if c not in known_threads}
        if fresh_threads:
            await self.conversations.remember_many(fresh_threads, self.ctx.clock())
        await self._tag_other_copies(created)
        if failed and park:
            await self._park(stream, failed)
        return failed

    async def _untracked_keys(self) -> set[str]:
        """The mailbox's untrack markers, read once per cycle (one query)."""
        if self._untracked is None:
            self._untracked = await self.ctx.store.untracked.keys(self.user)
        return self._untracked

    async def _recheck(self, unsure: list[tuple[_Work, TrackedRef]]) -> list[_Work]:
        """Tracked messages whose copy here has no category: a copy not tagged yet (tag and
        record it), or one whose user removed the category, which untracks that copy
        without deleting the activity (as Dynamics does). Returns the ones to tag."""
        if not unsure:
            return []
        store = self.ctx.store
        rows = await _gather(store.tracked.get(w.imid) for w, _ in unsure)
        to_tag = []
        for (w, ref), row in zip(unsure, rows, strict=True):
            if row is not None and self.user in row[0].copies:
                await store.tracked.drop_copy(w.imid, self.user, known=row)
                await store.untracked.add([self.user], w.imid, self.ctx.clock())
                if self._untracked is not None:
                    self._untracked.add(marker_key(w.imid))
                self.result.untracked += 1
                log.info("mailbox %s: category removed, copy untracked", self.user)
                continue
            self._record(w, ref.activity_id, None, found=True)
            to_tag.append(w)
        return to_tag

    async def _fetch_threading(self, works: list[_Work]) -> None:
        """In-Reply-To/References of likely replies only ($batch of 20): delta does not
        return them, and fetching them for every message would double the Graph cost."""
        if not works:
            return
        params = urlencode({"$select": "id,internetMessageHeaders", "$expand": THREAD_EXPAND},
                           quote_via=quote)
        answers = await self.ctx.graph.batch([
            BatchRequest("GET", f"/users/{quote(self.user)}/messages/"
                                f"{quote(str(w.message['id']))}?{params}") for w in works])
        for w, answer in zip(works, answers, strict=True):
            if answer.ok and isinstance(answer.body, dict):
                for key in ("internetMessageHeaders", "singleValueExtendedProperties"):
                    if answer.body.get(key):
                        w.message[key] = answer.body[key]
                w.facts = MessageFacts.from_graph(w.message)
            elif answer.error is not None and answer.error.kind is ErrorKind.TRANSIENT:
                raise answer.error

    async def _correlation_lookups(self, works: list[_Work]) -> CorrelationLookups:
        """One Dataverse query for the activities of this page's messages and of the
        messages the replies answer (In-Reply-To/References), one for subject tokens, and
        our conversations table for the replies that can correlate by thread."""
        cp = self.policy.correlation
        replies = [w for w in works if likely_reply(w.message)]
        wanted: set[str] = {w.imid for w in works}
        if cp.in_reply_to:
            for w in replies:
                wanted.update(m for m in (w.facts.in_reply_to, *w.facts.references) if m)
        tokens: dict[int, str] = {}
        if cp.tracking_token:
            for w in works:
                number = find_token(w.facts.subject, cp.token_prefix, cp.token_digits)
                if number is not None:
                    tokens[number] = format_token(number, cp.token_prefix, cp.token_digits)
        ops = [DataverseOperation.get(query_path(
            "emails", select=EMAIL_SELECT, filter=in_filter("messageid", sorted(wanted))))]
        if tokens:
            ops.append(DataverseOperation.get(query_path(
                "emails", select=EMAIL_SELECT,
                filter=in_filter("trackingtoken", sorted(tokens.values())))))
        by_mid: dict[str, TrackedRef] = {}
        by_token: dict[int, TrackedRef] = {}
        # as the app, not the owner: one activity per message across every mailbox is a
        # system-wide duplicate check (ids only, as Dynamics' own), and an activity the
        # owner may not read must still not be created twice
        for result in await batch_with_retry(self.ctx.dataverse, ops):
            result.raise_for_error()
            for row in (result.body or {}).get("value", []):
                ref = TrackedRef(str(row["activityid"]), _regarding_of(row),
                                 row.get("messageid"))
                if row.get("messageid") in wanted:
                    by_mid[str(row["messageid"])] = ref
                for number, token in tokens.items():
                    if row.get("trackingtoken") == token:
                        by_token[number] = ref
        by_conv: dict[str, TrackedRef] = {}
        if cp.conversation:
            conv_ids = sorted({w.facts.conversation_id for w in replies
                               if w.facts.conversation_id})
            refs = await _gather(self.conversations.get(c) for c in conv_ids)
            by_conv = {c: r for c, r in zip(conv_ids, refs, strict=True) if r is not None}
        return CorrelationLookups(by_message_id=by_mid, by_token=by_token,
                                  by_conversation=by_conv)

    # --- creating ----------------------------------------------------------------------------

    async def _create(self, works: list[_Work], failed: dict[str, str]) -> list[_Work]:
        """Create the activities not in Dataverse yet (the page's lookup found none);
        returns the works now tracked."""
        if not works:
            return []
        done: list[_Work] = []
        await self.resolver.prime(a for w in works for a in graph_participants(w.message))
        await self._auto_create(works)
        ops = [DataverseOperation.create("emails", self._email_body(w)) for w in works]
        await self.ctx.checkpoint("incoming:before-create")
        results = await batch_with_retry(self.dv, ops,
                                         max_wait=self.ctx.settings.retry_max_wait_seconds)
        await self.ctx.checkpoint("incoming:after-create")
        for w, result in zip(works, results, strict=True):
            error = result.error
            if error is None or error.status == 412:
                # 412: the deterministic id exists: another mailbox (or we, before a crash)
                # created it, possibly one this owner may not read
                regarding = w.decision.regarding if w.decision is not None else None
                if error is None:
                    self.result.created += 1
                    self._record(w, activity_id_for(w.imid), regarding)
                else:
                    self.result.linked += 1
                    self._record(w, activity_id_for(w.imid), None, found=True)
                done.append(w)
            elif error.kind in (ErrorKind.TRANSIENT, ErrorKind.AUTH):
                raise error
            else:
                failed[str(w.message["id"])] = error.summary()
                self.result.failed_items += 1
        return done

    def _email_body(self, w: _Work) -> dict[str, Any]:
        m = w.message
        sender = graph_sender(m)
        to = [a for a, _ in graph_recipients(m.get("toRecipients"))]
        cc = [a for a, _ in graph_recipients(m.get("ccRecipients"))]
        resolutions = self.resolver.resolutions([sender[0] if sender else None, *to, *cc])
        parties = build_activity_parties(sender[0] if sender else None, to, cc,
                                         resolutions=resolutions)
        assert w.decision is not None
        body = build_incoming_email(m, w.decision, parties)
        body["activityid"] = activity_id_for(w.imid)
        return body

    async def _auto_create(self, works: list[_Work]) -> None:
        """Automatic record creation for unknown senders (owner's option, off by default)."""
        if not self.auto.enabled:
            return
        plans: dict[str, tuple[str, dict[str, Any]]] = {}
        for w in works:
            sender = graph_sender(w.message)
            if sender is None or self.resolver.resolution(sender[0]).resolved:
                continue
            plan = plan_auto_create(
                sender[0], sender[1], tracked=True, owner_address=self.mailbox.email,
                policy=self.auto, headers=w.message.get("internetMessageHeaders"),
                email_subject=w.facts.subject)
            if plan.body is not None and plan.table and sender[0] not in plans:
                plans[sender[0]] = (plan.table, plan.body)
        if not plans:
            return
        ops = []
        for address, (table, body) in plans.items():
            key = "contactid" if table == "contact" else "leadid"
            ops.append(DataverseOperation.create(
                entity_set(table), {**body, key: record_id_for(table, address)}))
        results = await batch_with_retry(self.dv, ops)
        for (address, (table, _)), result in zip(plans.items(), results, strict=True):
            if result.ok or (result.error is not None and result.error.status == 412):
                self.resolver.add(address, CandidateRecord(table, record_id_for(table, address)))
            elif result.error is not None and result.error.kind is ErrorKind.TRANSIENT:
                raise result.error
            else:
                log.warning("mailbox %s: automatic record creation refused: %s", self.user,
                            result.error.summary() if result.error else "?")

    def _record(self, w: _Work, activity_id: str, regarding: RegardingRef | None, *,
                found: bool = False) -> None:
        """Queue the tracked-messages row every participant's cycle and the add-in read
        (written for the whole page by `merge_many`). `found`: the activity was there
        already, so who tracked it and its regarding are left as stored."""
        self._patches.append(TrackedPatch(
            internet_message_id=w.imid, activity_id=activity_id, mailbox_id=self.user,
            item_id=str(w.message.get("id")), regarding=to_regarding(regarding),
            tracked_by=None if found else self.mailbox.owner_object_id,
            tracked_at=None if found else self.ctx.clock()))
        if w.facts.conversation_id and not found:
            self._conversations[w.facts.conversation_id] = TrackedRef(activity_id, regarding,
                                                                      w.imid)

    async def _update_regarding(self, updates: list[tuple[_Work, TrackedRef, RegardingRef]]
                                ) -> None:
        """A tracked message moved into a tracked folder takes that folder's record."""
        if not updates:
            return
        ops = [DataverseOperation.update("emails", ref.activity_id,
                                         regarding_bind(rule.table, rule.id))
               for _, ref, rule in updates]
        for (w, ref, rule), result in zip(updates, await batch_with_retry(self.dv, ops),
                                          strict=True):
            if result.ok:
                self._patches.append(TrackedPatch(
                    internet_message_id=w.imid, activity_id=ref.activity_id,
                    mailbox_id=self.user, item_id=str(w.message.get("id")),
                    regarding=to_regarding(rule)))
                self.result.linked += 1
            elif result.error is not None and result.error.kind is ErrorKind.TRANSIENT:
                raise result.error

    async def _tag_other_copies(self, works: list[_Work]) -> None:
        """Copies in other enabled mailboxes show the category too (Dynamics does this)."""
        domains = self.ctx.settings.organization_domains
        for w in works:
            for address in set(graph_participants(w.message)):
                if address == normalize_address(self.mailbox.email):
                    continue
                if domains and not is_internal(address, domains):
                    continue
                other = await self._mailbox_of(address)
                if other is not None and other != self.user:
                    await self.tagger.tag_copy_elsewhere(other, w.imid)

    async def _mailbox_of(self, address: str) -> str | None:
        if address not in self._mailbox_by_address:
            found = await self.ctx.store.mailboxes.find_by_email(address)
            self._mailbox_by_address[address] = (
                found[0].mailbox_id if found and found[0].enabled else None)
        return self._mailbox_by_address[address]

    async def _park(self, stream: str, failed: dict[str, str]) -> None:
        now = self.ctx.clock()
        items = [PendingItem(mailbox_id=self.user, stream=stream, item_id=item_id)
                 for item_id in failed]
        await self.ctx.store.pending.add_many(items, now)
        for item in items:
            await self.ctx.store.pending.record_attempt(item, failed[item.item_id])


__all__ = ["SELECT", "IncomingEngine", "IncomingResult"]
