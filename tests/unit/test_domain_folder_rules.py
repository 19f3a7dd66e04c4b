"""Folder rules: the one validation every writer uses, lenient loading of stored rows, and the
rules the sync cycle may follow."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.folder_rules import FolderRule, first_problem, problem_of, usable
from shared.domain.mailbox import Mailbox, MailboxRuleError

TABLES = ["contact", "account", "lead", "opportunity", "incident"]
FABRIKAM = "ac000000-0000-4000-8000-000000000001"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(("rule", "attribute"), [
    ({"folder_id": ""}, "folder_id"),
    ({"folder_id": "inbox/messages?$filter=isRead eq false"}, "folder_id"),
    ({"folder_id": "AAMk')/messages"}, "folder_id"),
    ({"folder_id": "A" * 513}, "folder_id"),
    ({"folder_id": "AAMk\n"}, "folder_id"),
    ({"folder_id": "AAMk=", "folder_name": "x" * 256}, "folder_name"),
    ({"folder_id": "AAMk=", "regarding_table": "account"}, "regarding_id"),
    ({"folder_id": "AAMk=", "regarding_id": FABRIKAM}, "regarding_table"),
    ({"folder_id": "AAMk=", "regarding_table": "systemuser", "regarding_id": FABRIKAM},
     "regarding_table"),
    ({"folder_id": "AAMk=", "regarding_table": "Account';--", "regarding_id": FABRIKAM},
     "regarding_table"),
    ({"folder_id": "AAMk=", "regarding_table": "account", "regarding_id": "id-1"},
     "regarding_id"),
    ({"folder_id": "AAMk=", "regarding_table": "account", "regarding_id": "{" + FABRIKAM + "}"},
     "regarding_id"),
])
def test_problem_names_the_attribute_at_fault(rule: dict[str, str], attribute: str) -> None:
    problem = problem_of(FolderRule(**rule), TABLES)
    assert problem is not None and problem.attribute == attribute


def test_acceptable_rules_have_no_problem() -> None:
    assert problem_of(FolderRule(folder_id="inbox"), TABLES) is None
    assert problem_of(FolderRule(folder_id="AAMkAGI2-_+/=" + "A" * 499, folder_name="Deals",
                                 regarding_table="account", regarding_id=FABRIKAM),
                      TABLES) is None


def test_stored_rows_load_whatever_an_earlier_version_wrote() -> None:
    stored = {"folder_id": "x" * 60_000, "folder_name": "", "regarding_table": "systemuser",
              "regarding_id": None, "colour": "red"}
    rule = FolderRule.model_validate(stored)
    assert problem_of(rule, TABLES) is not None
    assert not hasattr(rule, "colour")


def test_first_problem_covers_count_duplicates_and_each_rule() -> None:
    ok = FolderRule(folder_id="AAMk1=")
    assert first_problem([ok], TABLES) is None
    assert first_problem([ok] * 26, TABLES) == ("folder_rules",
                                                "at most 25 folder rules per mailbox")
    assert first_problem([ok, ok], TABLES, 5) == ("folder_rules",
                                                  "each folder may have one rule only")
    bad = FolderRule(folder_id="AAMk2=", regarding_table="systemuser", regarding_id=FABRIKAM)
    field, _ = first_problem([ok, bad], TABLES) or ("", "")
    assert field == "folder_rules.1.regarding_table"


def test_set_folder_rules_refuses_what_the_validation_refuses() -> None:
    box = Mailbox.new(owner_object_id="a1", email="a@contoso.com", now=NOW)
    bad = FolderRule(folder_id="inbox/childFolders?$top=1")
    with pytest.raises(MailboxRuleError) as error:
        box.set_folder_rules([bad], NOW, regarding_tables=TABLES)
    assert error.value.field == "folder_rules.0.folder_id"
    assert box.folder_rules == []


def test_the_cycle_follows_only_usable_rules() -> None:
    good = FolderRule(folder_id="AAMk1=", regarding_table="account", regarding_id=FABRIKAM)
    odata = FolderRule(folder_id="inbox/messages?$select=body")
    table = FolderRule(folder_id="AAMk3=", regarding_table="systemuser", regarding_id=FABRIKAM)
    assert usable([good, odata, table], TABLES) == [good]
