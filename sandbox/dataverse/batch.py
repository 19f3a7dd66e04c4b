"""`POST /api/data/v9.2/$batch`: multipart/mixed parts and transactional change sets.

Format and rules from execute-batch-operations-using-web-api: at most 1,000 requests, no nested
batches, no GET inside a change set, a change set is all-or-nothing (the journal is rolled back
and its response is the one failing request), `Content-ID` / `$n` references inside a change
set, responses in request order under `--batchresponse_<guid>`. Without
`Prefer: odata.continue-on-error` processing stops at the first failure and the batch status is
that failure's status. Each inner request is counted and may be hit by an injected fault,
exactly like a top-level request.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from sandbox.dataverse import errors
from sandbox.dataverse.api import API_PATH, Api, ApiRequest, ApiResponse, error_to_response
from sandbox.dataverse.errors import DataverseError
from sandbox.dataverse.query import Prefer
from sandbox.dataverse.store import Caller

MAX_REQUESTS = 1000
_BOUNDARY_RE = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_REF_RE = re.compile(r"^\$(\w+)(/.*)?$")


@dataclass
class Part:
    headers: dict[str, str]
    method: str = ""
    url: str = ""
    request_headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    changeset: list[Part] | None = None

    @property
    def content_id(self) -> str | None:
        return self.headers.get("content-id")


def boundary_of(content_type: str) -> str:
    match = _BOUNDARY_RE.search(content_type or "")
    if match is None or not content_type.lower().startswith("multipart/mixed"):
        raise errors.bad_request("A $batch request needs Content-Type: multipart/mixed with a "
                                 "boundary.")
    return match.group(1)


def _split_head(blob: bytes) -> tuple[list[str], bytes]:
    """Header lines and the rest, split at the first blank line (CRLF or LF)."""
    crlf, lf = blob.find(b"\r\n\r\n"), blob.find(b"\n\n")
    if crlf != -1 and (lf == -1 or crlf <= lf):
        return blob[:crlf].decode("utf-8").splitlines(), blob[crlf + 4:]
    if lf != -1:
        return blob[:lf].decode("utf-8").splitlines(), blob[lf + 2:]
    return blob.decode("utf-8").splitlines(), b""


def _headers(lines: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in lines:
        if ":" in line:
            name, _, value = line.partition(":")
            result[name.strip().lower()] = value.strip()
    return result


def split_multipart(body: bytes, boundary: str) -> list[bytes]:
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        raise errors.bad_request("The $batch body has no parts for its boundary.")
    parts: list[bytes] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        elif chunk.startswith(b"\n"):
            chunk = chunk[1:]
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2]
        elif chunk.endswith(b"\n"):
            chunk = chunk[:-1]
        parts.append(chunk)
    return parts


def parse_parts(body: bytes, boundary: str, *, nested: bool = False) -> list[Part]:
    parts: list[Part] = []
    for raw in split_multipart(body, boundary):
        head, content = _split_head(raw)
        headers = _headers(head)
        content_type = headers.get("content-type", "")
        if content_type.lower().startswith("multipart/mixed"):
            if nested:
                raise errors.bad_request("Change sets cannot be nested.")
            inner = parse_parts(content, boundary_of(content_type), nested=True)
            parts.append(Part(headers, changeset=inner))
            continue
        if not content_type.lower().startswith("application/http"):
            raise errors.bad_request("Each $batch part must be application/http or a change "
                                     "set (multipart/mixed).")
        request_head, request_body = _split_head(content.lstrip(b"\r\n"))
        if not request_head:
            raise errors.bad_request("A $batch part has no request line.")
        method, url = _request_line(request_head[0])
        if url.split("?", 1)[0].rstrip("/").endswith("$batch"):
            raise errors.bad_request("Batch requests can't contain other batch requests.")
        parts.append(Part(headers, method, url, _headers(request_head[1:]),
                          request_body.strip()))
    return parts


def _request_line(line: str) -> tuple[str, str]:
    """`METHOD url HTTP/1.1`; tolerant of unencoded spaces inside the URL."""
    method, _, rest = line.strip().partition(" ")
    url, _, version = rest.rpartition(" ")
    if not version.upper().startswith("HTTP/"):
        url = rest
    if not method or not url.strip():
        raise errors.bad_request(f"Bad request line in $batch: '{line}'.")
    return method.upper(), url.strip()


def _count(parts: list[Part]) -> int:
    return sum(len(p.changeset) if p.changeset is not None else 1 for p in parts)


def _relative(url: str) -> tuple[str, str]:
    """Any URL form a client may send -> (path under /api/data/v9.2/, query)."""
    split = urlsplit(url)
    path = split.path
    index = path.find(API_PATH)
    if index != -1:
        path = path[index + len(API_PATH):]
    elif path.startswith(API_PATH.rstrip("/")):
        path = path[len(API_PATH.rstrip("/")):]
    return path.lstrip("/"), split.query


class BatchRunner:
    """Executes one parsed batch against the Api, with faults and change-set rollback."""

    def __init__(self, api: Api, world: Any, caller_for: Callable[[str | None], Caller],
                 outer_key: str | None) -> None:
        self.api = api
        self.world = world
        self.caller_for = caller_for
        self.outer_key = outer_key

    async def run(self, body: bytes, content_type: str,
                  prefer: Prefer) -> tuple[int, dict[str, str], bytes]:
        parts = parse_parts(body, boundary_of(content_type))
        if _count(parts) > MAX_REQUESTS:
            raise errors.bad_request(f"The number of requests in the batch exceeds the limit of "
                                     f"{MAX_REQUESTS}.")
        boundary = f"batchresponse_{uuid.uuid4()}"
        out: list[bytes] = []
        status, extra = 200, {}
        for part in parts:
            if part.changeset is not None:
                responses, failed = await self._changeset(part.changeset)
                out.append(_changeset_block(boundary, responses, failed))
                failure = responses[-1][1] if failed else None
            else:
                response = await self._one(part, {}, in_changeset=False)
                out.append(_part_block(boundary, response, None))
                failure = response if response.status >= 400 else None
            if failure is not None and not prefer.continue_on_error:
                status = failure.status
                if "Retry-After" in failure.headers:
                    extra["Retry-After"] = failure.headers["Retry-After"]
                break
        payload = b"".join(out) + f"--{boundary}--\r\n".encode()
        headers = {"OData-Version": "4.0", "Content-Type": f"multipart/mixed; boundary={boundary}",
                   **extra}
        return status, headers, payload

    async def _changeset(
        self, parts: list[Part],
    ) -> tuple[list[tuple[str | None, ApiResponse]], bool]:
        store = self.api.store
        refs: dict[str, str] = {}
        results: list[tuple[str | None, ApiResponse]] = []
        store.begin()
        for part in parts:
            if part.method == "GET":
                response = error_to_response(errors.bad_request(
                    "GET requests are not allowed within change sets."))
            else:
                response = await self._one(part, refs, in_changeset=True)
            if response.status >= 400:
                store.rollback()
                return [(part.content_id, response)], True
            results.append((part.content_id, response))
            entity_url = response.headers.get("OData-EntityId")
            if part.content_id and entity_url:
                refs[part.content_id] = entity_url
        store.commit()
        return results, False

    async def _one(self, part: Part, refs: dict[str, str], *, in_changeset: bool) -> ApiResponse:
        faults = self.world.faults
        faults.count_op("dataverse")
        key = (part.request_headers.get("callerobjectid") or self.outer_key or None)
        decision = faults.decide("dataverse", key.lower() if key else None)
        if decision is not None:
            if decision.latency_ms:
                await asyncio.sleep(decision.latency_ms / 1000)
            if decision.status:
                if decision.status == 429:
                    return error_to_response(errors.throttled(errors.THROTTLE_REQUESTS,
                                                              decision.retry_after))
                return error_to_response(DataverseError(
                    decision.status, errors.UNEXPECTED, "An unexpected error occurred."))
            if decision.drop:
                return error_to_response(DataverseError(
                    500, errors.UNEXPECTED, "The connection was closed unexpectedly."))
        try:
            url = self._resolve_url(part.url, refs)
            body = self._resolve_body(part.body, refs) if refs else part.body
            caller = self.caller_for(part.request_headers.get("callerobjectid"))
        except DataverseError as error:
            return error_to_response(error)
        path, query = _relative(url)
        return self.api.handle(ApiRequest(part.method, path, query, part.request_headers, body,
                                          caller))

    def _resolve_url(self, url: str, refs: dict[str, str]) -> str:
        match = _REF_RE.match(url)
        if match is None:
            return url
        if match.group(1) not in refs:
            raise errors.bad_request(f"Content-ID Reference: '${match.group(1)}' does not exist "
                                     f"in the batch context.")
        return refs[match.group(1)] + (match.group(2) or "")

    def _resolve_body(self, body: bytes, refs: dict[str, str]) -> bytes:
        try:
            value = json.loads(body) if body.strip() else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return body
        if not isinstance(value, dict):
            return body
        for key, item in list(value.items()):
            if isinstance(item, str) and _REF_RE.match(item):
                value[key] = self._resolve_url(item, refs)
        return json.dumps(value).encode()


def _http_block(response: ApiResponse) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    body = response.encoded()
    text = "\r\n".join(lines) + "\r\n\r\n"
    return text.encode() + body + (b"\r\n" if body else b"")


def _part_block(boundary: str, response: ApiResponse, content_id: str | None) -> bytes:
    head = [f"--{boundary}", "Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        head.append(f"Content-ID: {content_id}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + _http_block(response) + b"\r\n"


def _changeset_block(boundary: str, responses: list[tuple[str | None, ApiResponse]],
                     failed: bool) -> bytes:
    if failed:  # a failed change set answers with its one failing request (OData 11.7.4)
        content_id, response = responses[-1]
        return _part_block(boundary, response, content_id)
    inner = f"changesetresponse_{uuid.uuid4()}"
    blob = f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={inner}\r\n\r\n".encode()
    for content_id, response in responses:
        blob += _part_block(inner, response, content_id)
    return blob + f"--{inner}--\r\n".encode()
