"""Unit tests of the emulator's parts without HTTP: $filter parser, batch parser, journal."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from sandbox.dataverse.batch import parse_parts
from sandbox.dataverse.errors import DataverseError
from sandbox.dataverse.metadata import load_metadata
from sandbox.dataverse.odata_filter import compile_filter, index_hints, parse_filter, tokenize
from sandbox.dataverse.query import Options, select_rows
from sandbox.dataverse.store import Caller, CrmStore
from sandbox.dataverse.writes import create_record, update_record

MD = load_metadata()
CONTACT = MD.by_logical["contact"]


def _matches(text: str, row: dict[str, Any]) -> bool:
    node = parse_filter(text, CONTACT, lambda entity, nav: None)
    return compile_filter(node)(row, {}, lambda r, n: [])


ROW = {"contactid": "c0000000-0000-4000-8000-000000000001", "firstname": "Ana",
       "lastname": "O'Neil", "emailaddress1": "Ana@Fabrikam.com", "numberofchildren": 2,
       "donotemail": False, "createdon": "2026-01-02T03:04:05Z",
       "_parentcustomerid_value": "ac000000-0000-4000-8000-000000000001"}


@pytest.mark.parametrize(("text", "expected"), [
    ("firstname eq 'ana'", True),
    ("firstname ne 'Ana'", False),
    ("lastname eq 'O''Neil'", True),
    ("numberofchildren gt 1 and numberofchildren le 2", True),
    ("numberofchildren lt 2 or numberofchildren ge 3", False),
    ("not (firstname eq 'Bob')", True),
    ("donotemail eq false", True),
    ("donotemail", False),
    ("emailaddress2 eq null", True),
    ("emailaddress1 ne null", True),
    ("emailaddress2 ne 'x'", False),           # null never compares (SQL semantics)
    ("contains(emailaddress1, 'FABRIKAM')", True),
    ("startswith(lastname,'o''n') and endswith(emailaddress1,'.com')", True),
    ("createdon ge 2026-01-02T03:04:05Z and createdon lt 2026-01-03", True),
    ("createdon gt 2026-01-02T04:00:00+02:00", True),
    ("_parentcustomerid_value eq AC000000-0000-4000-8000-000000000001", True),
    ("contactid eq c0000000-0000-4000-8000-000000000001", True),
    ("Microsoft.Dynamics.CRM.In(PropertyName='emailaddress1',PropertyValues=['x','ana@fabrikam.com'])",
     True),
    ("Microsoft.Dynamics.CRM.NotIn(PropertyName='firstname',PropertyValues=['Ana'])", False),
    ("(firstname eq 'x' or (lastname eq 'O''Neil' and numberofchildren eq 2))", True),
])
def test_filter_semantics(text: str, expected: bool) -> None:
    assert _matches(text, ROW) is expected


@pytest.mark.parametrize("text", [
    "firstname eq",
    "firstname eq 'a' and",
    "(firstname eq 'a'",
    "nosuch eq 1",
    "_parentcustomerid_value eq 'ac000000-0000-4000-8000-000000000001'",
    "numberofchildren eq 'two'",
    "firstname eq 1",
    "contains(numberofchildren, 'x')",
    "unknownfn(firstname)",
    "firstname eq 'a' garbage",
])
def test_filter_errors_are_400(text: str) -> None:
    with pytest.raises(DataverseError) as raised:
        parse_filter(text, CONTACT, lambda entity, nav: None)
    assert raised.value.status == 400 and raised.value.code == "0x80060888"


def test_tokenizer_handles_guids_datetimes_and_strings() -> None:
    kinds = [t.kind for t in tokenize("a eq c0000000-0000-4000-8000-000000000001 or "
                                      "b gt 2026-01-01T00:00:00Z or c eq 'x''y' or d eq -1.5")]
    assert "guid" in kinds and "datetime" in kinds and "string" in kinds and "number" in kinds


def test_index_hints_only_from_top_level_conjuncts() -> None:
    node = parse_filter("emailaddress1 eq 'A@B.C' and statecode eq 0", CONTACT,
                        lambda e, n: None)
    assert ("emailaddress1", ["a@b.c"]) in index_hints(node)
    node = parse_filter("emailaddress1 eq 'a@b.c' or firstname eq 'x'", CONTACT,
                        lambda e, n: None)
    assert index_hints(node) == []


def _store() -> CrmStore:
    world = SimpleNamespace(users={}, apps={}, user=lambda key: None)
    return CrmStore(world)  # type: ignore[arg-type]


def test_journal_rolls_back_creates_updates_and_deletes() -> None:
    store = _store()
    caller = Caller("00000000-0000-0000-0000-0000000000aa")
    keep = create_record(store, "contact", {"lastname": "Keep",
                                            "emailaddress1": "keep@x.example"}, caller)
    gone = create_record(store, "contact", {"lastname": "Gone"}, caller)
    store.begin()
    new = create_record(store, "contact", {"lastname": "New",
                                           "emailaddress1": "new@x.example"}, caller)
    update_record(store, "contact", keep, {"emailaddress1": "changed@x.example"}, caller)
    store.remove("contact", gone)
    store.rollback()
    assert store.row("contact", new) is None
    assert store.row("contact", gone) is not None
    assert store.row("contact", keep)["emailaddress1"] == "keep@x.example"  # type: ignore[index]
    table = store.tables["contact"]
    assert table.lookup("emailaddress1", ["keep@x.example"]) == {keep}
    assert table.lookup("emailaddress1", ["changed@x.example"]) == set()
    assert table.lookup("emailaddress1", ["new@x.example"]) == set()


def test_indexed_lookup_is_fast_enough_for_thousands_of_emails() -> None:
    import time

    store = _store()
    caller = Caller("00000000-0000-0000-0000-0000000000aa")
    for n in range(5000):
        create_record(store, "email", {"subject": f"s{n}", "messageid": f"<m{n}@x>"}, caller)
    entity = MD.by_logical["email"]
    options = Options(filter=parse_filter("messageid eq '<m4321@x>'", entity, lambda e, n: None))
    started = time.perf_counter()
    for _ in range(200):
        rows = select_rows(store, entity, store.rows_of("email"), options, caller)
    assert [r["subject"] for r in rows] == ["s4321"]
    assert (time.perf_counter() - started) / 200 < 0.02


def test_batch_parser_reads_parts_changesets_and_lf_only_bodies() -> None:
    body = (
        b"--batch_1\n"
        b"Content-Type: multipart/mixed; boundary=changeset_1\n\n"
        b"--changeset_1\n"
        b"Content-Type: application/http\nContent-Transfer-Encoding: binary\nContent-ID: 1\n\n"
        b"POST /api/data/v9.2/contacts HTTP/1.1\nContent-Type: application/json\n\n"
        b'{"lastname": "A"}\n'
        b"--changeset_1--\n"
        b"--batch_1\n"
        b"Content-Type: application/http\nContent-Transfer-Encoding: binary\n\n"
        b"GET /api/data/v9.2/contacts?$filter=lastname eq 'A' HTTP/1.1\nAccept: application/json\n"
        b"\n"
        b"--batch_1--\n"
    )
    parts = parse_parts(body, "batch_1")
    assert parts[0].changeset is not None and parts[0].changeset[0].content_id == "1"
    assert parts[0].changeset[0].method == "POST"
    assert parts[0].changeset[0].body == b'{"lastname": "A"}'
    assert parts[1].method == "GET" and parts[1].url.endswith("lastname eq 'A'")
    assert parts[1].request_headers["accept"] == "application/json"


def test_seed_loads_activities_with_parties_owner_and_shares() -> None:
    from sandbox.world import SandboxUser

    megan = SandboxUser("a2", "megan@contoso.com", "Megan Bowen",
                        "5a000000-0000-4000-8000-0000000000a2",
                        "b0000000-0000-4000-8000-000000000001", crm_read_scope="user")
    world = SimpleNamespace(users={"a2": megan}, apps={},
                            user=lambda key: megan if key in ("a2", megan.upn) else None)
    store = CrmStore(world)  # type: ignore[arg-type]
    contact = "c0000000-0000-4000-8000-0000000000c1"
    store.load_seed({"crm": {
        "field_security": [{"table": "contact", "column": "telephone1"}],
        "contacts": [{"contactid": contact, "lastname": "Lopez", "telephone1": "1"}],
        "emails": [{"activityid": "e0000000-0000-4000-8000-0000000000e1", "subject": "Seeded",
                    "owner": "megan@contoso.com", "statuscode": 4, "directioncode": False,
                    "createdon": "2026-11-20T10:00:00Z", "_regardingobjectid_value": contact,
                    "parties": [{"participationtypemask": 1, "addressused": "ana@fabrikam.com"}],
                    "shared_with": ["megan@contoso.com"]}],
    }})
    email = store.row("email", "e0000000-0000-4000-8000-0000000000e1")
    assert email is not None and email["statecode"] == 1 and email["createdon"].startswith("2026")
    assert email["@lookup"]["_regardingobjectid_value"] == "contact"
    assert email["_ownerid_value"] == megan.systemuser_id
    assert len(store.parties_of(email["activityid"])) == 1
    assert store.secured["contact"] == {"telephone1"}
    assert store.hidden_columns("contact", Caller(megan.systemuser_id, megan)) == {"telephone1"}
