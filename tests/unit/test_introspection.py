"""RFC 7662 rules as pure functions: who may learn what, and the shape of the answer."""

from __future__ import annotations

import pytest

from tokenry.core.clients import ADMIN_SCOPE, INTROSPECT_SCOPE, Client
from tokenry.core.errors import InsufficientScope
from tokenry.core.introspection import (
    INACTIVE,
    audiences_of,
    from_claims,
    may_see,
    require_introspect_scope,
)


def client(client_id: str, scopes: set[str], audiences: tuple[str, ...] = ()) -> Client:
    return Client(
        client_id, "h", "p", frozenset({"client_credentials"}), frozenset(scopes), audiences
    )


CLAIMS = {
    "iss": "https://issuer.test",
    "sub": "alice",
    "aud": ["orders-api", "billing-api"],
    "exp": 1_800_000_600,
    "iat": 1_800_000_000,
    "jti": "j" * 22,
    "client_id": "web",
    "scope": "orders.read",
    "gid": "g" * 22,
}


def test_inactive_answer_has_nothing_but_active_false() -> None:
    assert INACTIVE.to_json() == {"active": False}


def test_positive_answer_is_rfc7662_shaped() -> None:
    body = from_claims(CLAIMS).to_json()
    assert body == {
        "active": True,
        "token_type": "Bearer",
        "scope": "orders.read",
        "client_id": "web",
        "sub": "alice",
        "iss": "https://issuer.test",
        "jti": "j" * 22,
        "exp": 1_800_000_600,
        "iat": 1_800_000_000,
        "aud": ["orders-api", "billing-api"],
    }
    assert "gid" not in body, "internal claims are not part of RFC 7662 §2.2"


def test_act_and_cnf_are_passed_through_when_present() -> None:
    body = from_claims({**CLAIMS, "act": {"sub": "gateway"}, "cnf": {"jkt": "x"}}).to_json()
    assert body["act"] == {"sub": "gateway"} and body["cnf"] == {"jkt": "x"}


def test_single_audience_is_a_string() -> None:
    assert from_claims({**CLAIMS, "aud": "orders-api"}).to_json()["aud"] == "orders-api"


@pytest.mark.parametrize(
    ("aud", "expected"),
    [("a", ("a",)), (["a", "b"], ("a", "b")), ([1], ()), (None, ()), ({"a": 1}, ())],
)
def test_audiences_of(aud: object, expected: tuple[str, ...]) -> None:
    assert audiences_of({"aud": aud}) == expected


def test_caller_sees_only_tokens_addressed_to_it() -> None:
    orders = client("orders-api", {INTROSPECT_SCOPE})
    assert may_see(orders, ("orders-api",))
    assert may_see(orders, ("billing-api", "orders-api"))
    assert not may_see(orders, ("billing-api",))
    assert not may_see(orders, ())
    web = client("web", {INTROSPECT_SCOPE}, ("orders-api",))
    assert not may_see(web, ("orders-api",)), (
        "where a client may send tokens is not what it may read"
    )
    assert may_see(client("ops", {ADMIN_SCOPE}), ("billing-api",)), "an admin sees every token"


def test_introspection_needs_the_introspect_scope() -> None:
    require_introspect_scope(client("a", {INTROSPECT_SCOPE}))
    require_introspect_scope(client("b", {ADMIN_SCOPE}))
    with pytest.raises(InsufficientScope):
        require_introspect_scope(client("c", {"orders.read"}))
