"""Dataverse's one error mapper, and how $batch parts (including a failed change set) map."""

from __future__ import annotations

import httpx
import pytest

from shared.dataverse.batch import (
    DataverseOperation,
    build_batch,
    entity_id_of,
    parse_batch_response,
)
from shared.dataverse.errors import dataverse_error, dataverse_error_from
from shared.errors import ErrorKind


def response(status: int, code: str | None = None, headers: dict[str, str] | None = None
             ) -> httpx.Response:
    if code is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, headers=headers,
                          json={"error": {"code": code, "message": "name 'Ana Lopez' ..."}})


@pytest.mark.parametrize(("status", "code", "kind"), [
    (429, "0x80072322", ErrorKind.TRANSIENT),
    (429, "0x80072321", ErrorKind.TRANSIENT),
    (429, "0x80072326", ErrorKind.TRANSIENT),
    (503, None, ErrorKind.TRANSIENT),
    (504, None, ErrorKind.TRANSIENT),
    # only what the SDK retry handlers resend is transient: other 5xx surface at once
    (500, "0x80040216", ErrorKind.PERMANENT),
    (501, None, ErrorKind.PERMANENT),
    (502, None, ErrorKind.PERMANENT),
    (401, None, ErrorKind.AUTH),
    (403, "0x80040220", ErrorKind.FORBIDDEN),
    (404, "0x80040217", ErrorKind.NOT_FOUND),
    (412, "0x80060882", ErrorKind.CONFLICT),
    (409, "0x80040237", ErrorKind.CONFLICT),
    (400, "0x80048d19", ErrorKind.INVALID),
    (405, "0x80060888", ErrorKind.PERMANENT),
])
def test_status_and_code_map_to_kind(status: int, code: str | None, kind: ErrorKind) -> None:
    error = dataverse_error(response(status, code))
    assert error.kind is kind
    assert (error.status, error.code, error.service) == (status, code, "dataverse")
    assert "Ana" not in str(error)


def test_service_protection_retry_after() -> None:
    error = dataverse_error(response(429, "0x80072322", {"Retry-After": "30"}))
    assert error.transient and error.retry_after == 30.0


def test_privilege_code_is_forbidden_whatever_the_status() -> None:
    assert dataverse_error_from(400, {}, {"error": {"code": "0x80040220"}}).kind is \
        ErrorKind.FORBIDDEN


def test_entity_id_of() -> None:
    url = "https://org.test/api/data/v9.2/accounts(00000000-0000-0000-0000-000000000001)"
    assert entity_id_of(url) == "00000000-0000-0000-0000-000000000001"
    assert entity_id_of("nothing") is None


def test_batch_request_puts_writes_in_one_change_set() -> None:
    ops = [DataverseOperation.create("contacts", {"lastname": "A"}),
           DataverseOperation.get("contacts?$top=1"),
           DataverseOperation.update("contacts", "c1", {"lastname": "B"}, etag='W/"1"')]
    content_type, body = build_batch(ops, "https://org.test/api/data/v9.2", atomic=True,
                                     headers={"CallerObjectId": "oid"})
    text = body.decode()
    boundary = content_type.split("boundary=")[1]
    assert text.startswith(f"--{boundary}\r\nContent-Type: multipart/mixed; boundary=changeset_")
    assert text.rstrip().endswith(f"--{boundary}--")
    assert "Content-ID: 1" in text and "Content-ID: 2" in text
    assert "POST https://org.test/api/data/v9.2/contacts HTTP/1.1" in text
    assert "PATCH https://org.test/api/data/v9.2/contacts(c1) HTTP/1.1" in text
    assert 'If-Match: W/"1"' in text
    # the read follows the change set, outside it
    assert text.index("GET https://") > text.index("--changeset_", text.index("PATCH")) - 1


def test_failed_change_set_answers_once_and_parts_parse() -> None:
    body = (
        "--batchresponse_1\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n\r\n"
        "HTTP/1.1 412 Precondition Failed\r\n"
        "Content-Type: application/json; odata.metadata=minimal\r\n"
        "OData-Version: 4.0\r\n\r\n"
        '{"error":{"code":"0x80060882","message":"The version of the existing record doesn\'t'
        ' match"}}\r\n'
        "--batchresponse_1\r\n"
        "Content-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n"
        "--changesetresponse_2\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "Content-ID: 1\r\n\r\n"
        "HTTP/1.1 204 No Content\r\n"
        "OData-Version: 4.0\r\n"
        "OData-EntityId: https://org.test/api/data/v9.2/tasks(t1)\r\n\r\n\r\n"
        "--changesetresponse_2--\r\n"
        "--batchresponse_1--\r\n"
    )
    groups = parse_batch_response("multipart/mixed; boundary=batchresponse_1", body.encode())
    assert [len(g) for g in groups] == [1, 1]
    failed, created = groups[0][0], groups[1][0]
    assert failed.status == 412
    assert dataverse_error_from(failed.status, failed.headers, failed.body).kind is \
        ErrorKind.CONFLICT
    assert created.status == 204 and created.content_id == "1"
    assert entity_id_of(created.headers["OData-EntityId"]) == "t1"
