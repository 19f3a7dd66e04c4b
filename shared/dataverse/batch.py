"""Dataverse `$batch` wire format: multipart/mixed requests with optional change sets, and the
parser of the multipart answer (execute-batch-operations-using-web-api).

Kept apart from the client because it is pure text handling, testable without HTTP.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ErrorKind, UpstreamError

CRLF = "\r\n"
BATCH_LIMIT = 1000


@dataclass
class DataverseOperation:
    """One request inside a $batch; `path` is relative to the API URL (`accounts(<id>)`)."""

    method: str
    path: str
    body: Any = None
    headers: dict[str, str] | None = None

    @classmethod
    def create(cls, entity_set: str, body: dict[str, Any]) -> DataverseOperation:
        return cls("POST", entity_set, body)

    @classmethod
    def update(cls, entity_set: str, record_id: str, body: dict[str, Any], *,
               etag: str | None = None) -> DataverseOperation:
        return cls("PATCH", f"{entity_set}({record_id})", body, {"If-Match": etag or "*"})

    @classmethod
    def upsert(cls, entity_set: str, record_id: str, body: dict[str, Any]
               ) -> DataverseOperation:
        return cls("PATCH", f"{entity_set}({record_id})", body)

    @classmethod
    def delete(cls, entity_set: str, record_id: str) -> DataverseOperation:
        return cls("DELETE", f"{entity_set}({record_id})")

    @classmethod
    def get(cls, path: str) -> DataverseOperation:
        return cls("GET", path)


@dataclass
class DataverseResult:
    """The answer to one batch operation, in request order."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    error: UpstreamError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def entity_id(self) -> str | None:
        """The id a create returned (from `OData-EntityId`)."""
        for name, value in self.headers.items():
            if name.lower() == "odata-entityid":
                return entity_id_of(value)
        return None

    def raise_for_error(self) -> DataverseResult:
        if self.error is not None:
            raise self.error
        return self


_ID_RE = re.compile(r"\(([^()]*)\)\s*$")


def entity_id_of(url: str) -> str | None:
    """`https://org/api/data/v9.2/accounts(<guid>)` -> `<guid>`."""
    match = _ID_RE.search(url)
    return match.group(1) if match else None


def _http_part(operation: DataverseOperation, api_url: str, content_id: int | None,
               extra_headers: dict[str, str]) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    path = operation.path
    url = path if path.startswith(("https://", "$")) else f"{api_url}/{path.lstrip('/')}"
    lines += ["", f"{operation.method.upper()} {url} HTTP/1.1"]
    headers = {**extra_headers, **(operation.headers or {})}
    body = ""
    if operation.body is not None:
        headers.setdefault("Content-Type", "application/json; type=entry")
        body = json.dumps(operation.body, separators=(",", ":"))
        # Dataverse rejects inner writes without it (0x80048d19, "stream not readable").
        headers["Content-Length"] = str(len(body.encode("utf-8")))
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += ["", body]
    return CRLF.join(lines)


def build_batch(operations: Sequence[DataverseOperation], api_url: str, *, atomic: bool,
                headers: dict[str, str] | None = None) -> tuple[str, bytes]:
    """(content type, body) of one $batch. Atomic batches put every write in one change set
    (all or nothing); reads cannot go in a change set, so they follow it."""
    batch = f"batch_{uuid.uuid4()}"
    extra = dict(headers or {})
    parts: list[str] = []
    if atomic:
        writes = [op for op in operations if op.method.upper() != "GET"]
        reads = [op for op in operations if op.method.upper() == "GET"]
        if writes:
            changeset = f"changeset_{uuid.uuid4()}"
            inner = [f"--{changeset}{CRLF}" + _http_part(op, api_url, index + 1, extra)
                     for index, op in enumerate(writes)]
            parts.append(f"Content-Type: multipart/mixed; boundary={changeset}{CRLF}{CRLF}"
                         + CRLF.join(inner) + f"{CRLF}--{changeset}--")
        parts += [_http_part(op, api_url, None, extra) for op in reads]
    else:
        parts = [_http_part(op, api_url, None, extra) for op in operations]
    body = "".join(f"--{batch}{CRLF}{part}{CRLF}" for part in parts) + f"--{batch}--{CRLF}"
    return f"multipart/mixed; boundary={batch}", body.encode("utf-8")


# --- parsing ----------------------------------------------------------------------------------


def _boundary(content_type: str) -> str | None:
    match = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    return match.group(1).strip() if match else None


def _split_headers(block: str) -> tuple[dict[str, str], str]:
    """Headers up to the first blank line, and the rest."""
    normalized = block.lstrip("\r\n") if block.startswith(("\r\n", "\n")) else block
    match = re.search(r"\r?\n\r?\n", normalized)
    if match is None:
        head, rest = normalized, ""
    else:
        head, rest = normalized[: match.start()], normalized[match.end():]
    headers: dict[str, str] = {}
    for line in re.split(r"\r?\n", head):
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip()] = value.strip()
    return headers, rest


def _multipart(body: str, boundary: str) -> list[str]:
    """The parts between `--boundary` delimiters (preamble and epilogue dropped)."""
    delimiter = re.compile(r"(?:^|\r?\n)--" + re.escape(boundary) + r"(--)?[ \t]*(?:\r?\n|$)")
    parts: list[str] = []
    position: int | None = None
    for match in delimiter.finditer(body):
        if position is not None:
            parts.append(body[position: match.start()])
        if match.group(1):
            break
        position = match.end()
    return parts


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: Any
    content_id: str | None


def _http_response(part_headers: dict[str, str], content: str) -> RawResponse:
    content = content.lstrip("\r\n")
    status_line, _, rest = content.partition("\n")
    words = status_line.strip().split(" ", 2)
    status = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
    headers, raw_body = _split_headers(rest)
    raw_body = raw_body.strip()
    body: Any = None
    if raw_body:
        try:
            body = json.loads(raw_body)
        except ValueError:
            body = raw_body
    content_id = next((v for k, v in part_headers.items() if k.lower() == "content-id"), None)
    return RawResponse(status, headers, body, content_id)


def parse_batch_response(content_type: str, body: bytes) -> list[list[RawResponse]]:
    """The batch answer as groups: one group per change set, one single-item group per
    top-level request. A failed change set comes back as one response for the whole group."""
    boundary = _boundary(content_type)
    if boundary is None:
        raise UpstreamError("dataverse $batch answer is not multipart", kind=ErrorKind.TRANSIENT,
                            service="dataverse")
    groups: list[list[RawResponse]] = []
    for part in _multipart(body.decode("utf-8", errors="replace"), boundary):
        headers, content = _split_headers(part)
        part_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        if part_type.lower().startswith("multipart/mixed"):
            inner_boundary = _boundary(part_type) or ""
            group = []
            for inner in _multipart(content, inner_boundary):
                inner_headers, inner_content = _split_headers(inner)
                group.append(_http_response(inner_headers, inner_content))
            groups.append(group)
        else:
            groups.append([_http_response(headers, content)])
    return groups


__all__ = [
    "BATCH_LIMIT",
    "DataverseOperation",
    "DataverseResult",
    "build_batch",
    "entity_id_of",
    "parse_batch_response",
]
