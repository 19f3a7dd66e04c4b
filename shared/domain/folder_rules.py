"""Folder rules: track every message of an Exchange folder, optionally regarding one record.

One validation for every path that writes rules (the admin API, the add-in's options) and for
every reader of rows stored before today's rules: `problem_of` says why a rule is refused.
Writes refuse such rules, views show stored ones flagged with the reason, and the sync cycle
skips them, so an old row can neither break a read nor put its folder id into a Graph URL.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

# Exchange ids (REST or immutable) are URL-safe base64; the add-in's item ids use the same
# characters. Bounded so a rule stays a small part of the mailbox row and of a stream name.
EXCHANGE_ID_PATTERN = r"^[A-Za-z0-9_\-+/=]{1,512}$"
MAX_FOLDER_NAME = 255
TABLE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
GUID_PATTERN = (r"^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
                r"-[0-9a-fA-F]{12}\}?$")
MAX_FOLDER_RULES = 25  # Dynamics 365 allows 25 tracked folders per mailbox

_EXCHANGE_ID = re.compile(EXCHANGE_ID_PATTERN)
_TABLE = re.compile(TABLE_PATTERN)
_BARE_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
                        r"-[0-9a-fA-F]{12}$")


class FolderRule(BaseModel):
    """A folder rule as stored. Loads whatever an earlier version stored (unknown keys are
    dropped); `problem_of` decides whether today's rules accept it."""

    model_config = ConfigDict(extra="ignore")

    folder_id: str
    folder_name: str = ""
    regarding_table: str | None = None
    regarding_id: str | None = None


@dataclass(frozen=True)
class RuleProblem:
    """Why a rule is refused: the rule's attribute at fault and the reason."""

    attribute: str  # folder_id, folder_name, regarding_table or regarding_id
    reason: str

    def __str__(self) -> str:
        return f"{self.attribute}: {self.reason}"


def problem_of(rule: FolderRule, regarding_tables: Collection[str] | None = None
               ) -> RuleProblem | None:
    """The first thing today's rules refuse in `rule`, or None. `regarding_tables` None
    allows any table name (the settings decide the real list)."""
    if not _EXCHANGE_ID.fullmatch(rule.folder_id):
        return RuleProblem("folder_id", "not an Exchange folder id (1 to 512 characters of "
                           "A-Z a-z 0-9 _ - + / =)")
    if len(rule.folder_name) > MAX_FOLDER_NAME:
        return RuleProblem("folder_name", f"at most {MAX_FOLDER_NAME} characters")
    if (rule.regarding_table is None) != (rule.regarding_id is None):
        missing = "regarding_id" if rule.regarding_id is None else "regarding_table"
        return RuleProblem(missing, "regarding_table and regarding_id go together")
    table = rule.regarding_table
    if table is not None and (not _TABLE.fullmatch(table) or (
            regarding_tables is not None and table not in regarding_tables)):
        listed = ", ".join(regarding_tables) if regarding_tables is not None \
            else "a logical table name"
        return RuleProblem("regarding_table", f"not an allowed table (allowed: {listed})")
    if rule.regarding_id is not None and not _BARE_GUID.fullmatch(rule.regarding_id):
        return RuleProblem("regarding_id", "not a GUID")
    return None


def first_problem(rules: Sequence[FolderRule], regarding_tables: Collection[str] | None,
                  max_rules: int = MAX_FOLDER_RULES) -> tuple[str, str] | None:
    """(field, reason) of the first refusal of a whole set of rules, fields named
    `folder_rules` or `folder_rules.<index>.<attribute>`; None when the set is acceptable."""
    limit = min(max_rules, MAX_FOLDER_RULES)
    if len(rules) > limit:
        return "folder_rules", f"at most {limit} folder rules per mailbox"
    for index, rule in enumerate(rules):
        found = problem_of(rule, regarding_tables)
        if found is not None:
            return f"folder_rules.{index}.{found.attribute}", found.reason
    folder_ids = [rule.folder_id for rule in rules]
    if len(set(folder_ids)) != len(folder_ids):
        return "folder_rules", "each folder may have one rule only"
    return None


def usable(rules: Sequence[FolderRule], regarding_tables: Collection[str] | None
           ) -> list[FolderRule]:
    """The rules the sync cycle may follow: a stored rule today's rules refuse is skipped."""
    return [rule for rule in rules if problem_of(rule, regarding_tables) is None]


__all__ = [
    "EXCHANGE_ID_PATTERN",
    "GUID_PATTERN",
    "MAX_FOLDER_NAME",
    "MAX_FOLDER_RULES",
    "TABLE_PATTERN",
    "FolderRule",
    "RuleProblem",
    "first_problem",
    "problem_of",
    "usable",
]
