"""The tracking status of a message or meeting, as the add-in shows it to a participant.

Pure: built from the one tracked row per message and what the caller could read.
"""

from __future__ import annotations

from typing import Any

from shared.store.tracked import Regarding, TrackedMessage


def status_view(key: str, row: TrackedMessage | None, *,
                readable: Regarding | None = None) -> dict[str, Any]:
    """The tracking status every participant sees (from the one row per message). What the
    regarding record is, and its name, only as `readable`: the row's record as the caller
    read it, since their CRM security may hide it (None: not shown)."""
    if row is None:
        return {"key": key, "tracked": False, "state": "not_tracked"}
    tracked = row.state == "tracked" and bool(row.activity_id)
    view: dict[str, Any] = {"key": key, "tracked": tracked, "state": row.state}
    if tracked:
        view["activity_id"] = row.activity_id
        view["activity_table"] = "appointment" if key.startswith("ical:") else "email"
        view["tracked_by"] = row.tracked_by
        view["tracked_at"] = row.tracked_at.isoformat() if row.tracked_at else None
        if row.regarding is not None and readable is not None and (
                readable.table, readable.id.lower()) == (row.regarding.table,
                                                         row.regarding.id.lower()):
            view["regarding"] = readable.model_dump()
    return view


__all__ = ["status_view"]
