"""Make the project's own stripped copy of the shared API descriptions.

The tests must pass on a plain clone where ../shared/specs is absent, so the project keeps a
copy reduced to names, types, formats, enums and structure (see the specs README). Prose keys
are removed recursively; everything else is kept byte-for-byte in meaning. Generic on purpose:
the same script strips graph-v1.0-subset.json and dataverse-subset.json.

Usage: python tools/strip_specs.py [SOURCE_DIR] [DEST_DIR]
(defaults: ../shared/specs relative to the repo root, and tests/specs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

STRIP_KEYS = frozenset({"description", "summary", "title", "externalDocs", "example", "examples"})
REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "specs"
DEFAULT_DEST = REPO / "tests" / "specs"


def strip(node: Any, *, under_properties: bool = False) -> Any:
    """Remove prose keys recursively.

    Inside a `properties` map (or `paths`/`schemas`-like maps) keys are *names*, not keywords:
    a property literally called `description` or `title` (message subjects, event titles...)
    must be kept, so the caller flags maps whose keys are names.
    """
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if not under_properties and key in STRIP_KEYS:
                continue
            out[key] = strip(value, under_properties=key in _NAME_MAPS and not under_properties)
        return out
    if isinstance(node, list):
        return [strip(item) for item in node]
    return node


# Maps whose keys are user-chosen names rather than schema keywords.
_NAME_MAPS = frozenset({
    "properties", "paths", "schemas", "parameters", "responses", "requestBodies",
    "securitySchemes", "definitions", "patternProperties", "attributes", "entities",
    "headers", "content", "links", "callbacks", "scopes", "variables",
})


def strip_file(src: Path, dest: Path) -> None:
    data = json.loads(src.read_text(encoding="utf-8"))
    dest.write_text(json.dumps(strip(data), indent=1, sort_keys=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else DEFAULT_SOURCE
    dest = Path(args[1]) if len(args) > 1 else DEFAULT_DEST
    if not source.is_dir():
        print(f"source folder not found: {source}", file=sys.stderr)
        return 1
    dest.mkdir(parents=True, exist_ok=True)
    done = 0
    for src in sorted(source.glob("*.json")):
        strip_file(src, dest / src.name)
        print(f"wrote {dest / src.name}")
        done += 1
    return 0 if done else 1


if __name__ == "__main__":
    raise SystemExit(main())
