"""Per-mailbox state and one change log shared by every kind of item.

Every mutation goes through `Mailbox.touch`, which appends (seq, item) to the log index of
each container the item is in or has just left. Delta queries and change notifications both
read from that index, so they always agree, and a delta page costs O(entries scanned) thanks
to bisect over the append-only per-container sequence lists (5,000+ messages stay cheap).
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

WELL_KNOWN = {
    "inbox": "Inbox", "sentitems": "Sent Items", "drafts": "Drafts",
    "deleteditems": "Deleted Items", "archive": "Archive", "junkemail": "Junk Email",
    "outbox": "Outbox",
}
SEND_LIMIT_PER_MINUTE = 30  # Exchange Online sending limit per mailbox


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id(prefix: str) -> str:
    """Opaque, URL-safe, Exchange-looking ids (case-sensitive, like Graph's)."""
    raw = base64.urlsafe_b64encode(os.urandom(33)).decode().rstrip("=")
    return prefix + raw


def new_change_key() -> str:
    return base64.b64encode(os.urandom(12)).decode()


@dataclass
class Item:
    kind: str                       # message | event | contact | task | list | folder
    imm_id: str                     # stable for the item's life in this mailbox
    reg_id: str                     # "regular" id: changes when the item changes container
    container: str                  # folder id / todo list id / "" (calendar, contacts)
    data: dict[str, Any]            # Graph properties as Graph names them
    change_key: str = field(default_factory=new_change_key)
    created: str = field(default_factory=now_iso)
    modified: str = field(default_factory=now_iso)
    deleted: bool = False
    latest: dict[str, int] = field(default_factory=dict)   # index key -> latest seq there
    reg_in: dict[str, str] = field(default_factory=dict)   # index key -> reg id while there
    extra: dict[str, Any] = field(default_factory=dict)    # internal (headers, attachments)

    def etag(self) -> str:
        return f'W/"{self.change_key}"'


class LogIndex:
    """Append-only (seq, item id) list for one container; bisectable by seq."""

    __slots__ = ("seqs", "ids")

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.ids: list[str] = []

    def append(self, seq: int, imm_id: str) -> None:
        self.seqs.append(seq)
        self.ids.append(imm_id)

    def after(self, seq: int, upto: int) -> Iterator[tuple[int, str]]:
        i = bisect.bisect_right(self.seqs, seq)
        while i < len(self.seqs) and self.seqs[i] <= upto:
            yield self.seqs[i], self.ids[i]
            i += 1


class Mailbox:
    """One user's mailbox, calendar, contacts and To Do lists."""

    def __init__(self, store: GraphStore, user: Any) -> None:
        self.store = store
        self.user = user
        self.folders: dict[str, Item] = {}
        self.wellknown: dict[str, str] = {}
        self.items: dict[str, Item] = {}          # imm id -> item (incl. tombstones)
        self.by_reg: dict[str, str] = {}          # current reg id -> imm id
        self.index: dict[str, LogIndex] = {}
        self.categories: list[dict[str, Any]] = []
        self.settings: dict[str, Any] = {
            "timeZone": "UTC", "dateFormat": "yyyy-MM-dd", "timeFormat": "HH:mm",
            "language": {"locale": "en-US", "displayName": "English (United States)"},
        }
        self.sends: list[float] = []
        for key, name in WELL_KNOWN.items():
            self.add_folder(name, None, wellknown=key)
        self.default_list = self.add_list("Tasks", wellknown="defaultList")

    # ---- identity -------------------------------------------------------------------------
    @property
    def key(self) -> str:
        return self.user.object_id

    def find(self, any_id: str, kind: str | None = None) -> Item | None:
        """Accept a regular or an immutable id, as Graph does whatever the Prefer header."""
        imm = self.by_reg.get(any_id, any_id)
        item = self.items.get(imm)
        if item is None or item.deleted or (kind and item.kind != kind):
            return None
        return item

    # ---- change log -----------------------------------------------------------------------
    def keys_of(self, item: Item) -> list[str]:
        if item.deleted:
            return []
        if item.kind == "message":
            return [f"message:{item.container}", "message:*"]
        if item.kind == "task":
            return [f"task:{item.container}"]
        return [f"{item.kind}:*"]

    def touch(self, item: Item, before: list[str] | None = None, *, change: str = "updated",
              new_version: bool = True) -> None:
        """Record a change; `before` are the index keys the item was in before the change."""
        seq = self.store.next_seq()
        if new_version:
            item.change_key = new_change_key()
            item.modified = now_iso()
        now_keys = self.keys_of(item)
        for k in set(before or []) | set(now_keys):
            self.index.setdefault(k, LogIndex()).append(seq, item.imm_id)
            item.latest[k] = seq
            if k in now_keys:
                item.reg_in[k] = item.reg_id
        self.store.notify(self, item, change)

    def visible_in(self, item: Item, key: str) -> bool:
        return not item.deleted and key in self.keys_of(item)

    def add(self, item: Item, *, notify: str = "created") -> Item:
        self.items[item.imm_id] = item
        self.by_reg[item.reg_id] = item.imm_id
        item.extra["first_seq"] = self.store.seq + 1
        self.touch(item, change=notify, new_version=False)
        return item

    def remove(self, item: Item) -> None:
        before = self.keys_of(item)
        item.deleted = True
        self.by_reg.pop(item.reg_id, None)
        self.touch(item, before, change="deleted", new_version=False)

    def move(self, item: Item, container: str) -> None:
        """Change container; the regular id changes as Exchange's does, the immutable one not."""
        if container == item.container:
            return
        before = self.keys_of(item)
        self.by_reg.pop(item.reg_id, None)
        item.reg_id = new_id("AAMkA")
        self.by_reg[item.reg_id] = item.imm_id
        item.container = container
        if item.kind == "message":
            item.data["parentFolderId"] = container
        self.touch(item, before)

    # ---- folders --------------------------------------------------------------------------
    def add_folder(self, name: str, parent: str | None, wellknown: str | None = None) -> Item:
        fid = new_id("AAMkAF")
        root = "AAMkAROOT" + self.user.object_id.replace("-", "")
        folder = Item("folder", fid, fid, parent or root,
                      {"displayName": name, "parentFolderId": parent or root, "isHidden": False})
        self.folders[fid] = folder
        if wellknown:
            self.wellknown[wellknown] = fid
            folder.extra["wellknown"] = wellknown
        self.add(folder)
        return folder

    def folder(self, id_or_name: str) -> Item | None:
        fid = self.wellknown.get(id_or_name.lower(), id_or_name)
        folder = self.folders.get(fid)
        if folder is None:
            for f in self.folders.values():  # display names, for seeds and the control API
                if f.data["displayName"].lower() == id_or_name.lower():
                    return f
        return folder if folder is not None and not folder.deleted else None

    def add_list(self, name: str, wellknown: str = "none") -> Item:
        lid = new_id("AAMkAL")
        lst = Item("list", lid, lid, "", {"displayName": name, "isOwner": True,
                                           "isShared": False, "wellknownListName": wellknown})
        return self.add(lst)

    def todo_list(self, id_or_name: str) -> Item | None:
        item = self.find(id_or_name, "list")
        if item:
            return item
        for it in self.items.values():
            if it.kind == "list" and not it.deleted and (
                    it.data["displayName"].lower() == id_or_name.lower()):
                return it
        return None

    def of_kind(self, kind: str, container: str | None = None) -> list[Item]:
        return [i for i in self.items.values() if i.kind == kind and not i.deleted
                and (container is None or i.container == container)]

    # ---- sending limit --------------------------------------------------------------------
    def check_send_rate(self) -> float | None:
        """Seconds to wait if this mailbox is over 30 sends in the last minute, else None."""
        now = self.store.clock()
        self.sends = [t for t in self.sends if now - t < 60.0]
        if len(self.sends) >= SEND_LIMIT_PER_MINUTE:
            return max(1.0, 60.0 - (now - self.sends[0]))
        self.sends.append(now)
        return None


class GraphStore:
    """All mailboxes plus subscriptions, outbox and notification log (see contract)."""

    DELTA_RETENTION_SECONDS = 30 * 24 * 3600.0

    def __init__(self, world: Any) -> None:
        self.world = world
        self.epoch = secrets.token_hex(4)
        self.seq = 0
        self.clock_offset = 0.0
        self._clock: Callable[[], float] = time.monotonic
        self.mailboxes: dict[str, Mailbox] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.outbox: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.strict_headers = True
        self.notifier: Callable[[Mailbox, Item, str], None] | None = None
        self.transactions: dict[tuple[str, str], str] = {}
        self.threads: dict[str, tuple[str, str]] = {}  # internetMessageId -> conversation
        for user in getattr(world, "users", {}).values():
            self.mailbox(user)

    def clock(self) -> float:
        """Monotonic seconds; tests replace `_clock` or advance `clock_offset`."""
        return self._clock() + self.clock_offset

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def mailbox(self, user: Any) -> Mailbox:
        mbx = self.mailboxes.get(user.object_id)
        if mbx is None:
            mbx = self.mailboxes[user.object_id] = Mailbox(self, user)
        return mbx

    def mailbox_for(self, id_or_upn: str) -> Mailbox | None:
        user = self.world.user(id_or_upn)
        return self.mailbox(user) if user else None

    def notify(self, mbx: Mailbox, item: Item, change: str) -> None:
        if self.notifier is not None:
            self.notifier(mbx, item, change)

    def load_seed(self, seed: dict[str, Any]) -> None:
        from sandbox.graph import ops

        for upn, raw in (seed.get("mailboxes") or {}).items():
            mbx = self.mailbox_for(upn)
            if mbx is None:
                raise ValueError(f"mailbox for unknown user {upn}")
            ops.seed_mailbox(mbx, raw)


