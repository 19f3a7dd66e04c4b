"""Putting the tracked category on every copy of a tracked message.

Users see "tracked" through the category, in every participant's mailbox. The master
category is created once per mailbox (remembered in the cursor table, so an idle cycle
never spends a Graph request on it), and messages are tagged in $batch calls of 20.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from shared.domain.tracking import has_category
from shared.errors import ErrorKind, UpstreamError
from shared.graph import GraphClient
from shared.store import Store

log = logging.getLogger("sss.categories")
MASTER_STREAM = "meta:master-category"


class CategoryTagger:
    def __init__(self, graph: GraphClient, store: Store, category: str) -> None:
        self.graph = graph
        self.store = store
        self.category = category
        self._ensured: set[str] = set()

    async def ensure_master(self, user: str) -> None:
        if user in self._ensured:
            return
        marker = await self.store.cursors.get(user, MASTER_STREAM)
        if marker is None or marker.value != self.category:
            await self.graph.ensure_master_category(user, self.category)
            await self.store.cursors.put(user, MASTER_STREAM, self.category,
                                         marker.etag if marker else None)
        self._ensured.add(user)

    def needs_tag(self, message: Mapping[str, Any]) -> bool:
        return not has_category(message.get("categories") or (), self.category)

    async def tag(self, user: str, messages: Sequence[Mapping[str, Any]]) -> int:
        """Add the category to each message lacking it; returns how many were tagged.
        A copy deleted meanwhile is skipped; throttling left over raises (retry next cycle)."""
        todo = [m for m in messages if self.needs_tag(m)]
        if not todo:
            return 0
        await self.ensure_master(user)
        changes = [(str(m["id"]), [*(m.get("categories") or []), self.category]) for m in todo]
        answers = await self.graph.patch_messages_categories(user, changes)
        tagged = 0
        for answer in answers:
            if answer.ok:
                tagged += 1
            elif answer.error is not None and answer.error.kind is ErrorKind.NOT_FOUND:
                continue
            elif answer.error is not None:
                raise answer.error
        return tagged

    async def tag_copy_elsewhere(self, user: str, internet_message_id: str) -> int:
        """Tag another participant's copy, found by internetMessageId (2 Graph calls)."""
        literal = internet_message_id.replace("'", "''")
        try:
            copies = [m async for m in self.graph.list_messages(
                user, filter=f"internetMessageId eq '{literal}'",
                select=["id", "categories"], top=5)]
            return await self.tag(user, copies)
        except UpstreamError as error:
            if error.kind in (ErrorKind.NOT_FOUND, ErrorKind.FORBIDDEN):
                return 0
            raise


__all__ = ["MASTER_STREAM", "CategoryTagger"]
