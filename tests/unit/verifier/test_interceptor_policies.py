"""The pure parts of the server interceptors: policies, bearer parsing, statuses, scopes."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from tokenry.v1 import errors_pb2
from tokenry.verifier._verifier import StalePolicy
from tokenry.verifier.errors import RevokedError, VerifierUnavailableError
from tokenry.verifier.interceptor import (
    MISSING_TOKEN,
    PUBLIC_METHODS,
    MethodPolicy,
    Policies,
    ScopeCheck,
    StatusBook,
    bearer_token,
)


def test_policies_resolve_exact_then_service_then_default() -> None:
    admin = MethodPolicy(scopes=frozenset({"demo.admin"}))
    open_ = MethodPolicy(public=True)
    policies = Policies({"/demo.Admin/*": admin, "/demo.Admin/Ping": open_})
    assert policies.resolve("/demo.Admin/Ping") is open_
    assert policies.resolve("/demo.Admin/Delete") is admin
    assert policies.resolve("/demo.Other/Call") == MethodPolicy()
    for method in PUBLIC_METHODS:
        assert policies.resolve(method).public
    # A service may protect its health checks too.
    strict = Policies({"/grpc.health.v1.Health/Check": MethodPolicy()})
    assert not strict.resolve("/grpc.health.v1.Health/Check").public


@pytest.mark.parametrize("name", ["demo.Admin/Do", "/demo.Admin", "/demo.Admin/", "/a/b/c"])
def test_policy_names_are_validated(name: str) -> None:
    with pytest.raises(ValueError, match="not /package"):
        Policies({name: MethodPolicy()})


def test_method_policies_are_validated_and_normalised() -> None:
    policy = MethodPolicy(scopes={"a", "b"}, on_stale=StalePolicy.INTROSPECT)  # type: ignore[arg-type]
    assert policy.scopes == frozenset({"a", "b"})
    with pytest.raises(TypeError):
        MethodPolicy(scopes="demo.read")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scope name"):
        MethodPolicy(scopes=frozenset({"a b"}))
    with pytest.raises(ValueError, match="public"):
        MethodPolicy(scopes=frozenset({"a"}), public=True)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ([("authorization", "Bearer abc.def.ghi")], "abc.def.ghi"),
        ([("authorization", "bearer abc")], "abc"),
        ([("authorization", "BEARER  abc ")], "abc"),
        ([("x-other", "1"), ("authorization", "Bearer abc")], "abc"),
        ([], None),
        (None, None),
        ([("authorization", "Basic Zm9vOmJhcg==")], None),
        ([("authorization", "Bearer")], None),
        ([("authorization", "Bearer ")], None),
        ([("authorization", "Bearer a b")], None),
        ([("authorization", "Bearerabc")], None),
        ([("authorization", "Bearer a"), ("authorization", "Bearer b")], None),
        ([("x-access-token", "abc")], None),  # only the authorization metadata counts
        ([("authorization-bin", b"Bearer abc")], None),
    ],
)
def test_bearer_token_is_read_only_from_one_authorization_entry(metadata, expected) -> None:  # type: ignore[no-untyped-def]
    assert bearer_token(metadata) == expected


def _details(status: grpc.Status) -> tuple[errors_pb2.OAuthError, error_details_pb2.ErrorInfo]:
    ((key, value),) = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    rpc = status_pb2.Status.FromString(value)
    oauth, info = errors_pb2.OAuthError(), error_details_pb2.ErrorInfo()
    rpc.details[0].Unpack(oauth)
    rpc.details[1].Unpack(info)
    return oauth, info


def test_statuses_carry_the_oauth_error_and_the_reason() -> None:
    book = StatusBook()
    revoked = book(RevokedError("revoked", "token revoked (by jti)"))
    assert revoked.code == grpc.StatusCode.UNAUTHENTICATED
    oauth, info = _details(revoked)
    assert oauth.error == "invalid_token" and "revoked" in oauth.error_description
    assert (info.reason, info.metadata["reason"]) == ("REVOKED", "revoked")
    assert book(RevokedError("revoked", "token revoked (by jti)")) is revoked  # built once

    stale = book(VerifierUnavailableError("stale", "revocation state cannot be proven current"))
    assert stale.code == grpc.StatusCode.UNAVAILABLE
    assert _details(stale)[0].error == "temporarily_unavailable"
    assert _details(MISSING_TOKEN)[1].metadata["reason"] == "missing_token"


def test_scope_check_needs_every_required_scope() -> None:
    check = ScopeCheck()
    assert check({"scope": "demo.read demo.write"}, frozenset({"demo.read"}))
    assert check({"scope": "demo.read demo.write"}, frozenset({"demo.write", "demo.read"}))
    assert not check({"scope": "demo.read"}, frozenset({"demo.write"}))
    assert not check({"scope": "demo.readx"}, frozenset({"demo.read"}))
    assert not check({}, frozenset({"demo.read"}))
    assert not check({"scope": ["demo.read"]}, frozenset({"demo.read"}))
