"""The public surface of tokenry.verifier, tokenry.jose and tokenry.client is pinned (httpx
``tests/test_exported_members.py``): an accidental export, or a lost one, fails here. Old import
paths keep working for one release, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

VERIFIER = {
    "Claims",
    "StalePolicy",
    "VerificationError",
    "Verifier",
    "VerifierConfig",
    "VerifierRuntime",
    "VerifierUnavailableError",
    "FeedSettings",
    "start_verifier",
    "JwksVerifierRuntime",
    "start_jwks_verifier",
    "Introspector",
    "VerifierMetrics",
    "AuthInterceptor",
    "MethodPolicy",
    "SyncAuthInterceptor",
    "VerifierLoop",
    "current_claims",
    "current_claims_or_none",
}
JOSE = {
    "ACCEPTED_TYP",
    "ALGORITHMS",
    "DEFAULT_LEEWAY",
    "DEFAULT_MAX_CLOCK_SKEW",
    "DEFAULT_MAX_SIZE",
    "FORBIDDEN_HEADERS",
    "MAX_LEEWAY",
    "Decoder",
    "JwsParts",
    "Rules",
    "SignaturePolicy",
    "check_claims",
    "decode_verified",
    "split_and_parse",
    "b64url_decode",
    "is_canonical_b64url",
    "loads_strict",
    "ParsedJwks",
    "PublicKey",
    "RejectedKey",
    "VerificationKey",
    "parse_jwks",
    "DEFAULT_MIN_REFRESH_INTERVAL",
    "JwksCache",
    "JwksSource",
    "REASONS",
    "BadSignatureError",
    "InvalidClaimsError",
    "MalformedTokenError",
    "RejectedHeaderError",
    "RevokedError",
    "TokenExpiredError",
    "VerificationError",
    "VerifierUnavailableError",
}
CLIENT = {
    "ClientAuth",
    "ClientSecretBasic",
    "IssuedToken",
    "IssuerTokenFetcher",
    "SyncIssuerTokenFetcher",
    "SyncTokenFetcher",
    "TokenExchangeFetcher",
    "TokenFetcher",
    "RefreshMachine",
    "RefreshPolicy",
    "Step",
    "SyncTokenSource",
    "TokenSource",
    "SyncBearerInterceptor",
    "bearer_channel",
    "bearer_interceptors",
    "sync_bearer_channel",
}
#: Public modules of the verifier besides the package itself; everything else is private.
VERIFIER_MODULES = {"errors", "interceptor", "sync_interceptor"}
#: Old module paths (shims, one release) and a name each must still resolve.
OLD_PATHS = {
    "tokenry.verifier.jose": "Decoder",
    "tokenry.verifier.keys": "VerificationKey",
    "tokenry.verifier.jwks": "JwksCache",
    "tokenry.verifier.client": "TokenSource",
    "tokenry.verifier.cache": "TokenCache",
    "tokenry.verifier.state": "RevocationState",
    "tokenry.verifier.sync": "SyncSettings",
    "tokenry.verifier.runtime": "start_verifier",
    "tokenry.verifier.verifier": "Verifier",
    "tokenry.verifier.external": "start_jwks_verifier",
    "tokenry.verifier.introspection": "Introspector",
    "tokenry.verifier.metrics": "VerifierMetrics",
}
MOVED_TO_CLIENT = {
    "ClientAuth",
    "ClientSecretBasic",
    "IssuerTokenFetcher",
    "RefreshPolicy",
    "SyncBearerInterceptor",
    "SyncIssuerTokenFetcher",
    "SyncTokenSource",
    "TokenSource",
    "bearer_interceptors",
}


@pytest.mark.parametrize(
    ("package", "expected"),
    [("tokenry.verifier", VERIFIER), ("tokenry.jose", JOSE), ("tokenry.client", CLIENT)],
)
def test_all_is_pinned_and_every_name_resolves(package: str, expected: set[str]) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) == expected
    assert len(module.__all__) == len(expected)  # no duplicates
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_the_verifier_has_three_public_modules() -> None:
    from pathlib import Path

    import tokenry.verifier

    root = Path(tokenry.verifier.__file__).parent
    public = {p.stem for p in root.glob("*.py") if not p.stem.startswith("_")}
    shims = {path.rsplit(".", 1)[1] for path in OLD_PATHS if path.startswith("tokenry.verifier.")}
    assert public - shims == VERIFIER_MODULES


@pytest.mark.parametrize(("path", "name"), sorted(OLD_PATHS.items()))
def test_old_module_paths_still_work_with_a_warning(path: str, name: str) -> None:
    module = importlib.import_module(path)
    with pytest.warns(DeprecationWarning, match=path):
        assert getattr(module, name) is not None
    with pytest.raises(AttributeError):
        getattr(module, "no_such_name")  # noqa: B009 - the attribute lookup is the test


@pytest.mark.parametrize("name", sorted(MOVED_TO_CLIENT))
def test_names_moved_to_tokenry_client_warn_from_the_verifier(name: str) -> None:
    import tokenry.client
    import tokenry.verifier

    with pytest.warns(DeprecationWarning, match="tokenry.client"):
        value = getattr(tokenry.verifier, name)
    assert value is getattr(tokenry.client, name)


def test_public_names_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from tokenry.verifier import AuthInterceptor, FeedSettings, Verifier  # noqa: F401
        from tokenry.verifier.errors import RevokedError  # noqa: F401


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


def _loaded(modules: set[str], *roots: str) -> set[str]:
    return {m for m in modules if any(m == r or m.startswith(r + ".") for r in roots)}


def test_tokenry_jose_loads_no_grpc_nats_or_verifier() -> None:
    # Services import tokenry.jose without paying for the verifier's gRPC and NATS stack.
    loaded = _modules_after("import tokenry.jose")
    assert not _loaded(loaded, "grpc", "nats", "asyncpg", "tokenry.verifier", "tokenry.v1")


def test_importing_the_verifier_package_loads_no_submodule() -> None:
    loaded = _modules_after("import tokenry.verifier")
    assert _loaded(loaded, "tokenry.verifier") == {"tokenry.verifier"}
    assert not _loaded(loaded, "grpc", "nats")


def test_tokenry_client_loads_no_verifier_or_nats() -> None:
    loaded = _modules_after("import tokenry.client")
    assert not _loaded(loaded, "tokenry.verifier", "nats", "asyncpg")
