"""Conformance: the emulator exposes exactly the spec's entity sets, columns, types and options.

Checked against the project's stripped copy (tests/specs/dataverse-subset.json), and that copy
against a fresh strip of ../shared/specs when that folder is present.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from sandbox.dataverse.metadata import SPEC_PATH, load_metadata
from sandbox.dataverse.query import Options, Prefer, project
from sandbox.dataverse.store import Caller, CrmStore
from sandbox.dataverse.writes import create_record

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "specs" / "dataverse-subset.json"
SPEC = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
EXTRA = {"opportunity", "incident"}  # outside the spec subset, declared by the emulator


def _expected_columns(raw_attributes: dict) -> dict[str, dict]:
    """Web API property name -> spec attribute (lookups become _x_value, party lists vanish)."""
    columns = {}
    for name, spec in raw_attributes.items():
        if spec.get("partyList") or spec.get("edm") is None:
            continue
        match = re.match(r"^_(\w+)_value\b", str(spec.get("webApi", "")))
        columns[f"_{match.group(1)}_value" if match else name] = spec
    return columns


def test_entity_sets_and_keys_match_the_spec() -> None:
    md = load_metadata()
    described = {k: v for k, v in SPEC["entities"].items() if isinstance(v.get("attributes"), dict)}
    assert set(md.by_logical) - EXTRA == set(described)
    for logical, raw in described.items():
        entity = md.by_logical[logical]
        assert entity.entity_set == raw["entitySet"]
        assert entity.primary_key == raw["primaryKey"]
    assert all(md.by_logical[name].extra for name in EXTRA)


@pytest.mark.parametrize("logical", [k for k, v in SPEC["entities"].items()
                                     if isinstance(v.get("attributes"), dict)])
def test_columns_types_lengths_and_options_match_the_spec(logical: str) -> None:
    entity = load_metadata().by_logical[logical]
    expected = _expected_columns(SPEC["entities"][logical]["attributes"])
    assert set(entity.columns) == set(expected)
    for column, spec in expected.items():
        attr = entity.columns[column]
        if column.startswith("_") and column.endswith("_value"):
            assert attr.edm == "Edm.Guid" and attr.lookup
            continue
        assert attr.edm == ("Edm.String" if spec["edm"] == "JSON" else spec["edm"])
        assert attr.max_length == spec.get("maxLength")
        expected_options = {int(k) for k in spec.get("options", {})} or None
        assert (set(attr.options) if attr.options else None) == expected_options


def test_party_list_navigations_come_from_the_spec() -> None:
    md = load_metadata()
    assert md.by_logical["email"].party_nav == "email_activity_parties"
    assert "email_activity_parties" in SPEC["entities"]["email"]["navigation"]["collection"]
    assert md.by_logical["appointment"].party_nav == "appointment_activity_parties"
    assert md.by_logical["task"].party_nav is None


def test_email_state_and_status_pairs_follow_the_spec() -> None:
    email = load_metadata().by_logical["email"]
    assert email.status_state == {1: 0, 8: 0, 2: 1, 3: 1, 4: 1, 6: 1, 7: 1, 5: 2}
    assert email.default_status == {0: 1, 1: 2, 2: 5}


def _store() -> CrmStore:
    world = SimpleNamespace(users={}, apps={}, user=lambda key: None)
    return CrmStore(world)  # type: ignore[arg-type]


def test_every_projected_property_is_in_the_spec() -> None:
    store = _store()
    caller = Caller("00000000-0000-0000-0000-0000000000aa")
    for logical in ("contact", "account", "lead", "email", "appointment", "task", "queue"):
        entity = store.md.by_logical[logical]
        row_id = create_record(store, logical, {}, caller)
        out = project(store, entity, store.row(logical, row_id) or {}, caller, Options(),
                      Prefer())
        allowed = set(_expected_columns(SPEC["entities"][logical]["attributes"]))
        assert set(out) - {"@odata.etag"} <= allowed


def test_unknown_attribute_is_refused_on_create() -> None:
    from sandbox.dataverse.errors import DataverseError

    with pytest.raises(DataverseError) as raised:
        create_record(_store(), "contact", {"lastname": "X", "shoesize": 44}, Caller("x"))
    assert raised.value.status == 400 and raised.value.code == "0x80060888"


def test_stripped_copy_equals_a_fresh_strip() -> None:
    """Beside ../shared (as in CI) the copy must equal a fresh strip of Microsoft's file; on a
    plain clone, stripping the copy again must change nothing (it carries no prose)."""
    from tools.strip_specs import strip

    copy = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    source = json.loads(SHARED.read_text(encoding="utf-8")) if SHARED.exists() else copy
    assert copy == strip(source)
