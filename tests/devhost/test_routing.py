"""Route templates match as the Functions host (ASP.NET routing) matches them."""

import pytest

from devhost.config import DevHostError
from devhost.routing import RouteEntry, Router, RouteTemplate


def test_literal_and_parameter_segments():
    t = RouteTemplate("admin/mailboxes/{mailbox_id}", "api")
    assert t.match("/api/admin/mailboxes/42") == {"mailbox_id": "42"}
    assert t.match("/API/Admin/Mailboxes/42/") == {"mailbox_id": "42"}
    assert t.match("/api/admin/mailboxes") is None
    assert t.match("/api/admin/mailboxes/42/extra") is None
    assert t.match("/admin/mailboxes/42") is None


def test_constraints():
    guid = RouteTemplate("items/{id:guid}", "api")
    assert guid.match("/api/items/3f2504e0-4f89-11d3-9a0c-0305e82c3301")
    assert guid.match("/api/items/not-a-guid") is None
    number = RouteTemplate("n/{n:int:min(10)}", "")
    assert number.match("/n/12") == {"n": "12"}
    assert number.match("/n/9") is None
    assert number.match("/n/x") is None
    regex = RouteTemplate(r"r/{code:regex(^[a-z]{{2}}\d$)}", "")
    assert regex.match("/r/ab1") is not None
    with pytest.raises(DevHostError):
        RouteTemplate("x/{y:nonsense}", "")


def test_optional_default_and_catch_all():
    opt = RouteTemplate("a/{b?}", "api")
    assert opt.match("/api/a") == {}
    assert opt.match("/api/a/1") == {"b": "1"}
    default = RouteTemplate("a/{b=dflt}", "")
    assert default.match("/a") == {"b": "dflt"}
    rest = RouteTemplate("files/{*rest}", "api")
    assert rest.match("/api/files/x/y/z.txt") == {"rest": "x/y/z.txt"}
    assert rest.match("/api/files") == {}
    root = RouteTemplate("/{*route}", "")
    assert root.match("/anything/at/all") == {"route": "anything/at/all"}


def test_empty_route_prefix_and_mixed_segment():
    t = RouteTemplate("report/{name}.{ext}", "")
    assert t.match("/report/summary.csv") == {"name": "summary", "ext": "csv"}


def test_router_precedence_and_methods():
    router = Router(
        [
            RouteEntry(RouteTemplate("{*all}", "api"), None, "catch-all"),
            RouteEntry(RouteTemplate("m/{id}", "api"), frozenset({"GET"}), "param"),
            RouteEntry(RouteTemplate("m/special", "api"), frozenset({"GET"}), "literal"),
        ]
    )
    assert router.match("GET", "/api/m/special")[0] == "literal"
    assert router.match("GET", "/api/m/7") == ("param", {"id": "7"})
    assert router.match("POST", "/api/m/7")[0] == "catch-all"
    assert Router([]).match("GET", "/api/x") is None
