"""Grant rules as pure functions: refresh rotation, authorization requests, token exchange,
client registration, scope narrowing, and the issuer's in-memory caches."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from tokenry.core import authorize
from tokenry.core.client_cache import CachedClients
from tokenry.core.clients import (
    ADMIN_SCOPE,
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    LOGIN_SCOPE,
    NO_AUTH,
    PRIVATE_KEY_JWT,
    PUBLIC,
    REFRESH_TOKEN,
    TOKEN_EXCHANGE,
    Client,
    check_redirect_uri,
    validate_registration,
)
from tokenry.core.clock import FakeClock
from tokenry.core.errors import (
    InsufficientScope,
    InvalidClient,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    TemporarilyUnavailable,
    UnauthorizedClient,
)
from tokenry.core.grants import narrow_audiences, narrow_scopes
from tokenry.core.refresh import Outcome, RefreshState, decide
from tokenry.core.token_exchange import check_request
from tokenry.core.token_exchange import decide as decide_exchange
from tokenry.core.tokens import ACCESS_TOKEN_TYPE_URN
from tokenry.flows import Watermarks

CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
WEB = Client(
    client_id="web",
    secret_hash="h",
    pepper_id="p",
    grant_types=frozenset({AUTHORIZATION_CODE, REFRESH_TOKEN}),
    scopes=frozenset({"openid", "read", "write"}),
    audiences=("api",),
    redirect_uris=("https://app.test/cb", "http://127.0.0.1:8123/cb"),
)


# --- refresh rotation (OAuth 2.1 §4.3.1, docs/spec.md §3 grace rule) ------------------------------


def _state(**kw: object) -> RefreshState:
    base = RefreshState(
        client_id="web", expires_at=2000, revoked=False, used_at=None, successor_used=False
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_first_use_rotates() -> None:
    assert decide(_state(), client_id="web", now=1000) is Outcome.ROTATE


def test_retry_inside_grace_replays_the_same_successor() -> None:
    assert decide(_state(used_at=1000), client_id="web", now=1010, grace=10) is Outcome.REPLAY


def test_reuse_after_grace_revokes_the_family() -> None:
    assert decide(_state(used_at=1000), client_id="web", now=1011, grace=10) is Outcome.REUSE


def test_reuse_after_the_successor_was_used_is_reuse_even_inside_grace() -> None:
    state = _state(used_at=1000, successor_used=True)
    assert decide(state, client_id="web", now=1001) is Outcome.REUSE


def test_other_client_expired_or_revoked_is_invalid() -> None:
    assert decide(_state(), client_id="other", now=1000) is Outcome.INVALID
    assert decide(_state(), client_id="web", now=2000) is Outcome.INVALID
    assert decide(_state(revoked=True), client_id="web", now=1000) is Outcome.INVALID
    assert decide(_state(used_at=1000), client_id="other", now=1001) is Outcome.INVALID


# --- authorization requests (RFC 6749 §4.1.1, §4.1.2.1) -----------------------------------------


def _req(**kw: str) -> authorize.AuthorizationRequest:
    base = authorize.AuthorizationRequest(
        response_type="code",
        client_id="web",
        redirect_uri="https://app.test/cb",
        scope="openid read",
        state="xyz/=&?",
        code_challenge=CHALLENGE,
        code_challenge_method="S256",
        nonce="n1",
    )
    return replace(base, **kw)


def test_valid_request() -> None:
    valid = authorize.validate(_req(), WEB)
    assert valid.scopes == ("openid", "read")
    assert valid.audiences == ("api",)
    assert valid.state == "xyz/=&?"


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.test/cb/",  # trailing slash
        "https://APP.test/cb",  # case
        "https://app.test/CB",
        "https://app.test/cb?extra=1",  # extra query
        "https://app.test/cb#frag",
        "http://app.test/cb",
        "",
        # RFC 8252 §7.3: a loopback URI ignores only the port; §8.3: localhost is exact
        "http://127.0.0.1:8124/cb2",
        "https://127.0.0.1:8124/cb",
        "http://localhost:8123/cb",
        "http://[::1]:8123/cb",
    ],
)
def test_redirect_uri_mismatch_is_not_redirected(uri: str) -> None:
    with pytest.raises(InvalidRequest, match="redirect_uri"):
        authorize.validate(_req(redirect_uri=uri), WEB)


def test_a_loopback_redirect_uri_matches_on_any_port() -> None:
    """RFC 8252 §7.3: native apps listen on an ephemeral port."""
    valid = authorize.validate(_req(redirect_uri="http://127.0.0.1:53123/cb"), WEB)
    assert valid.redirect_uri == "http://127.0.0.1:53123/cb"


def test_unknown_client_is_not_redirected() -> None:
    with pytest.raises(InvalidClient):
        authorize.validate(_req(client_id="nobody"), None)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": ""}, "invalid_request"),
        ({"code_challenge_method": ""}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "admin"}, "invalid_scope"),
    ],
)
def test_refusals_are_redirected_with_state(change: dict[str, str], error: str) -> None:
    with pytest.raises(authorize.RedirectError) as err:
        authorize.validate(_req(**change), WEB)
    assert err.value.error == error
    assert err.value.state == "xyz/=&?"
    assert err.value.redirect_uri == "https://app.test/cb"


def test_client_without_code_grant_is_unauthorized() -> None:
    client = replace(WEB, grant_types=frozenset({CLIENT_CREDENTIALS}))
    with pytest.raises(authorize.RedirectError) as err:
        authorize.validate(_req(), client)
    assert err.value.error == "unauthorized_client"


def test_unknown_resource_is_invalid_target() -> None:
    with pytest.raises(authorize.RedirectError) as err:
        authorize.validate(_req(resources=("other",)), WEB)  # type: ignore[arg-type]
    assert err.value.error == "invalid_target"


def test_add_query_keeps_the_redirect_uris_query_and_state_untouched() -> None:
    uri = authorize.add_query("https://app.test/cb?a=1", {"code": "c", "state": "x y&z=1", "e": ""})
    parts = urlsplit(uri)
    assert parse_qs(parts.query) == {"a": ["1"], "code": ["c"], "state": ["x y&z=1"]}


# --- token exchange (RFC 8693) -------------------------------------------------------------------

SVC = Client(
    client_id="svc-a",
    secret_hash="h",
    pepper_id="p",
    grant_types=frozenset({TOKEN_EXCHANGE}),
    scopes=frozenset({"read", "write"}),
    audiences=("svc-b", "svc-c"),
    token_exchange_from=frozenset({"web"}),
)


def _exchange(**kw: object) -> object:
    args: dict[str, object] = {
        "subject": "alice",
        "subject_client_id": "web",
        "subject_scopes": ("openid", "read", "write"),
        "subject_gid": "g1",
        "subject_expires_at": 5000,
        "subject_act": None,
        "requested_scope": "",
        "requested_audiences": (),
    }
    args.update(kw)
    return decide_exchange(SVC, **args)  # type: ignore[arg-type]


def test_exchange_narrows_and_inherits() -> None:
    decision = _exchange(requested_scope="read", requested_audiences=("svc-b",))
    assert decision.subject == "alice" and decision.gid == "g1"  # type: ignore[attr-defined]
    assert decision.scopes == ("read",)  # type: ignore[attr-defined]
    assert decision.audiences == ("svc-b",)  # type: ignore[attr-defined]
    assert decision.act == {"sub": "svc-a"}  # type: ignore[attr-defined]
    assert decision.not_after == 5000  # type: ignore[attr-defined]


def test_exchange_default_scope_is_the_intersection() -> None:
    assert _exchange().scopes == ("read", "write")  # type: ignore[attr-defined]


def test_exchange_widening_scope_is_invalid_scope() -> None:
    with pytest.raises(InvalidScope):
        _exchange(requested_scope="read admin")
    with pytest.raises(InvalidScope):  # the subject had it, the exchanging client may not
        _exchange(requested_scope="openid")
    with pytest.raises(InvalidScope):
        _exchange(subject_scopes=("read",), requested_scope="write")


def test_exchange_to_an_unregistered_audience_is_invalid_target() -> None:
    with pytest.raises(InvalidTarget):
        _exchange(requested_audiences=("svc-z",))


def test_exchange_policy_who_for_whom() -> None:
    with pytest.raises(UnauthorizedClient):
        _exchange(subject_client_id="someone")
    assert decide_exchange(
        replace(SVC, token_exchange_from=frozenset({"*"})),
        subject="alice",
        subject_client_id="someone",
        subject_scopes=("read",),
        subject_gid="g",
        subject_expires_at=1,
        subject_act=None,
        requested_scope="",
        requested_audiences=(),
    ).scopes == ("read",)


def test_exchange_nests_earlier_actors_and_caps_the_chain() -> None:
    decision = _exchange(subject_act={"sub": "svc-0"})
    assert decision.act == {"sub": "svc-a", "act": {"sub": "svc-0"}}  # type: ignore[attr-defined]
    deep: dict[str, object] = {"sub": "x"}
    for _ in range(5):
        deep = {"sub": "x", "act": deep}
    with pytest.raises(InvalidRequest):
        _exchange(subject_act=deep)


def test_phantom_cap_never_extends_the_subject() -> None:
    assert _exchange(max_ttl_end=4000).not_after == 4000  # type: ignore[attr-defined]
    assert _exchange(max_ttl_end=9000).not_after == 5000  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("", ACCESS_TOKEN_TYPE_URN, "", ""), "subject_token"),
        (("t", "urn:ietf:params:oauth:token-type:id_token", "", ""), "subject_token_type"),
        (("t", ACCESS_TOKEN_TYPE_URN, "actor", ""), "actor_token"),
        (("t", ACCESS_TOKEN_TYPE_URN, "", "urn:x"), "requested_token_type"),
    ],
)
def test_exchange_request_parameters(args: tuple[str, str, str, str], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        check_request(*args)


# --- narrowing ----------------------------------------------------------------------------------


def test_narrowing() -> None:
    assert narrow_scopes("", ("a", "b")) == ("a", "b")
    assert narrow_scopes("b", ("a", "b")) == ("b",)
    with pytest.raises(InvalidScope):
        narrow_scopes("a c", ("a", "b"))
    assert narrow_audiences((), ("x",)) == ("x",)
    with pytest.raises(InvalidTarget):
        narrow_audiences(("y",), ("x",))


# --- registration --------------------------------------------------------------------------------


def test_valid_registrations() -> None:
    validate_registration(WEB, registrar_is_admin=True)
    spa = replace(WEB, client_type=PUBLIC, auth_method=NO_AUTH, secret_hash=None, pepper_id=None)
    validate_registration(spa, registrar_is_admin=True)


def test_only_an_admin_grants_tokenry_scopes() -> None:
    client = replace(WEB, scopes=frozenset({ADMIN_SCOPE}))
    with pytest.raises(InsufficientScope):
        validate_registration(client, registrar_is_admin=False)
    validate_registration(client, registrar_is_admin=True)
    validate_registration(replace(WEB, scopes=frozenset({LOGIN_SCOPE})), registrar_is_admin=True)
    with pytest.raises(InvalidRequest, match="reserved"):
        validate_registration(
            replace(WEB, scopes=frozenset({"tokenry:root"})), registrar_is_admin=True
        )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"grant_types": frozenset({"password"})}, "unsupported grant"),
        ({"grant_types": frozenset({"implicit"})}, "unsupported grant"),
        ({"grant_types": frozenset()}, "at least one grant"),
        ({"client_id": "bad id"}, "client_id"),
        ({"redirect_uris": ()}, "redirect URI"),
        ({"redirect_uris": ("http://app.test/cb",)}, "loopback"),
        ({"redirect_uris": ("https://app.test/cb#x",)}, "fragment"),
        ({"redirect_uris": ("javascript:alert(1)",)}, "not allowed"),
        ({"client_type": PUBLIC}, "method none"),
        ({"auth_method": NO_AUTH}, "must authenticate"),
        ({"auth_method": PRIVATE_KEY_JWT}, "jwks"),
        ({"jwks_json": '{"keys": []}'}, "only for private_key_jwt"),
        ({"token_format": "xml"}, "token_format"),
        ({"id_token_alg": "HS256"}, "id_token_alg"),
        ({"refresh_token_idle_ttl": 8 * 86400}, "refresh_token_idle_ttl"),
        ({"refresh_token_absolute_ttl": 31 * 86400}, "refresh_token_absolute_ttl"),
        ({"id_token_ttl": 0}, "id_token_ttl"),
        ({"token_exchange_from": frozenset({"x"})}, "token-exchange"),
    ],
)
def test_invalid_registrations(change: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        validate_registration(replace(WEB, **change), registrar_is_admin=True)  # type: ignore[arg-type]


def test_public_client_cannot_use_client_credentials() -> None:
    spa = replace(
        WEB,
        client_type=PUBLIC,
        auth_method=NO_AUTH,
        grant_types=frozenset({AUTHORIZATION_CODE, CLIENT_CREDENTIALS}),
    )
    with pytest.raises(InvalidRequest, match="public client"):
        validate_registration(spa, registrar_is_admin=True)


def test_bad_scope_token_is_invalid_scope() -> None:
    with pytest.raises(InvalidScope):
        validate_registration(replace(WEB, scopes=frozenset({'a"b'})), registrar_is_admin=True)


def test_redirect_uri_rules() -> None:
    for ok in (
        "https://a.test/cb",
        "http://localhost:9/cb",
        "http://[::1]/x",
        "com.example.app:/cb",
    ):
        check_redirect_uri(ok)
    for bad in ("/relative", "cb", "myapp:/cb", "https:///nohost", "https://a.test/c b"):
        with pytest.raises(InvalidRequest):
            check_redirect_uri(bad)


# --- the issuer's in-memory caches ---------------------------------------------------------------


def test_watermarks_refuse_tokens_born_revoked() -> None:
    marks = Watermarks()
    marks.raise_to("client", "svc", 1002)
    with pytest.raises(TemporarilyUnavailable):
        marks.check("alice", "svc", 1001.9)
    marks.check("alice", "svc", 1002.0)  # iat 1002 is not < 1002
    marks.check("alice", "other", 1000)
    marks.raise_to("subject", "alice", 1005)
    marks.raise_to("subject", "alice", 1003)  # never lowered
    with pytest.raises(TemporarilyUnavailable):
        marks.check("alice", "x", 1004)
    marks.load([], now=1010)  # past marks are forgotten
    marks.check("alice", "svc", 0)


class CountingStore:
    def __init__(self) -> None:
        self.calls = 0
        self.client: Client | None = WEB

    async def get_client(self, client_id: str) -> Client | None:
        self.calls += 1
        return self.client


async def test_client_cache_hits_expire_and_invalidate() -> None:
    clock = FakeClock()
    store = CountingStore()
    cache = CachedClients(store, clock, ttl=10, negative_ttl=2)
    assert await cache.get_client("web") is WEB
    assert await cache.get_client("web") is WEB
    assert store.calls == 1
    cache.invalidate("web")
    store.client = None
    assert await cache.get_client("web") is None
    assert store.calls == 2
    clock.advance(2.5)  # negative entries live shorter
    store.client = WEB
    assert await cache.get_client("web") is WEB
    clock.advance(10.5)
    await cache.get_client("web")
    assert store.calls == 4


async def test_client_cache_does_not_keep_a_result_raced_by_an_invalidation() -> None:
    clock = FakeClock()

    class RacingStore(CountingStore):
        async def get_client(self, client_id: str) -> Client | None:
            self.calls += 1
            cache.invalidate(client_id)  # an event arrives while the query runs
            return WEB

    store = RacingStore()
    cache = CachedClients(store, clock)
    await cache.get_client("web")
    await cache.get_client("web")
    assert store.calls == 2
