"""Client authentication (RFC 6749 §2.3, RFC 7523; docs/spec.md §3), pure: fakes at the ports."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tokenry.core.client_assertion import CLIENT_ASSERTION_TYPE
from tokenry.core.client_secrets import Pepper, generate_secret, hash_secret, pepper_id
from tokenry.core.clientauth import (
    AssertionContext,
    BasicHeader,
    ProvenSecrets,
    authenticate,
    credentials_from,
)
from tokenry.core.clients import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    NO_AUTH,
    PRIVATE_KEY_JWT,
    PUBLIC,
    Client,
)
from tokenry.core.clock import FakeClock
from tokenry.core.errors import InvalidClient, InvalidRequest

ISSUER = "https://issuer.test"
TOKEN_ENDPOINT = "https://issuer.test/oauth2/token"
PEPPER_KEY = b"k" * 32
PEPPER = Pepper(pepper_id(PEPPER_KEY), PEPPER_KEY)
SECRET = generate_secret()
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwks(key: ec.EllipticCurvePrivateKey, kid: str = "k1") -> str:
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, alg="ES256")
    return json.dumps({"keys": [jwk]})


CLIENTS = {
    "svc": Client(
        client_id="svc",
        secret_hash=hash_secret(PEPPER, SECRET),
        pepper_id=PEPPER.id,
        grant_types=frozenset({CLIENT_CREDENTIALS}),
        scopes=frozenset({"a"}),
        audiences=("api",),
    ),
    "jwtsvc": Client(
        client_id="jwtsvc",
        secret_hash=None,
        pepper_id=None,
        grant_types=frozenset({CLIENT_CREDENTIALS}),
        scopes=frozenset({"a"}),
        audiences=("api",),
        auth_method=PRIVATE_KEY_JWT,
        jwks_json=_jwks(KEY),
    ),
    "spa": Client(
        client_id="spa",
        secret_hash=None,
        pepper_id=None,
        grant_types=frozenset({AUTHORIZATION_CODE}),
        scopes=frozenset({"openid"}),
        audiences=("api",),
        client_type=PUBLIC,
        auth_method=NO_AUTH,
        redirect_uris=("https://app.test/cb",),
    ),
}


class Lookup:
    async def get_client(self, client_id: str) -> Client | None:
        return CLIENTS.get(client_id)


class MemoryReplay:
    """The in-memory stand-in for store.assertion_jtis.AssertionJtiStore."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], int] = {}

    async def first_use(self, client_id: str, jti: str, remember_until: int) -> bool:
        if (client_id, jti) in self.seen:
            return False
        self.seen[(client_id, jti)] = remember_until
        return True


def basic(cid: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def ctx(clock: FakeClock) -> AssertionContext:
    return AssertionContext(frozenset({ISSUER, TOKEN_ENDPOINT}), clock, MemoryReplay())


def assertion(
    clock: FakeClock, key: Any = KEY, headers: dict[str, Any] | None = None, **claims: Any
) -> str:
    now = int(clock.now())
    body: dict[str, Any] = {
        "iss": "jwtsvc",
        "sub": "jwtsvc",
        "aud": ISSUER,
        "iat": now,
        "exp": now + 60,
        "jti": f"j-{now}-{id(claims)}",
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": "k1", **(headers or {})})


async def auth_assertion(text: str, ctx: AssertionContext) -> Client:
    creds = credentials_from(None, "", "", CLIENT_ASSERTION_TYPE, text)
    return await authenticate(creds, Lookup(), {PEPPER.id: PEPPER}, ctx)


# --- secrets -------------------------------------------------------------------------------------


async def test_client_secret_basic() -> None:
    creds = credentials_from(basic("svc", SECRET), "", "")
    assert (await authenticate(creds, Lookup(), {PEPPER.id: PEPPER})).client_id == "svc"


async def test_client_secret_post() -> None:
    creds = credentials_from(None, "svc", SECRET)
    assert creds.method == "client_secret_post"
    assert (await authenticate(creds, Lookup(), {PEPPER.id: PEPPER})).client_id == "svc"


@pytest.mark.parametrize(
    ("cid", "secret"), [("svc", "wrong"), ("svc", SECRET + "x"), ("nobody", SECRET), ("svc", "")]
)
async def test_wrong_secret_or_unknown_client_is_invalid_client(cid: str, secret: str) -> None:
    with pytest.raises(InvalidClient) as err:
        await authenticate(
            credentials_from(basic(cid, secret), "", ""), Lookup(), {PEPPER.id: PEPPER}
        )
    assert err.value.description == "client authentication failed"  # one answer for all


async def test_two_methods_at_once_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        credentials_from(basic("svc", SECRET), "svc", SECRET)
    with pytest.raises(InvalidRequest):
        credentials_from(None, "svc", SECRET, CLIENT_ASSERTION_TYPE, "x.y.z")


async def test_secret_for_a_private_key_jwt_client_is_refused() -> None:
    with pytest.raises(InvalidClient):
        await authenticate(
            credentials_from(None, "jwtsvc", "anything"), Lookup(), {PEPPER.id: PEPPER}
        )


async def test_confidential_client_without_credentials_is_refused() -> None:
    with pytest.raises(InvalidClient):
        await authenticate(credentials_from(None, "svc", ""), Lookup(), {PEPPER.id: PEPPER})


async def test_public_client_by_id_alone() -> None:
    client = await authenticate(credentials_from(None, "spa", ""), Lookup(), {PEPPER.id: PEPPER})
    assert client.is_public


async def test_public_client_with_a_secret_is_refused() -> None:
    with pytest.raises(InvalidClient):
        await authenticate(credentials_from(None, "spa", "x"), Lookup(), {PEPPER.id: PEPPER})


def test_credentials_repr_hides_secret() -> None:
    assert SECRET not in repr(credentials_from(basic("svc", SECRET), "", ""))


# --- proven secrets (the positive-only memo) -----------------------------------------------------


class MutableLookup:
    """A registry whose clients can change between calls (rotation, deletion)."""

    def __init__(self) -> None:
        self.clients = dict(CLIENTS)
        self.calls = 0

    async def get_client(self, client_id: str) -> Client | None:
        self.calls += 1
        return self.clients.get(client_id)


def rotated(client: Client, secret: str) -> Client:
    return dataclasses.replace(client, secret_hash=hash_secret(PEPPER, secret))


async def test_a_basic_header_is_parsed_only_when_it_must_be() -> None:
    creds = credentials_from(basic("svc", SECRET), "", "")
    assert isinstance(creds, BasicHeader)
    assert SECRET not in repr(creds)
    # With a client_id in the body the header is parsed at once, to compare the two.
    with pytest.raises(InvalidClient):
        credentials_from(basic("svc", SECRET), "other", "")


async def test_proven_secret_is_remembered_without_keeping_the_secret() -> None:
    proven, lookup = ProvenSecrets(), MutableLookup()
    header = basic("svc", SECRET)
    for _ in range(3):
        client = await authenticate(BasicHeader(header), lookup, {PEPPER.id: PEPPER}, None, proven)
        assert client.client_id == "svc"
    assert len(proven) == 1
    held = repr(proven._entries)
    assert SECRET not in held and header not in held
    assert base64.b64encode(f"svc:{SECRET}".encode()).decode() not in held


@pytest.mark.parametrize("secret", ["wrong", SECRET + "x", ""])
async def test_a_failed_check_is_never_remembered(secret: str) -> None:
    proven = ProvenSecrets()
    for _ in range(2):
        with pytest.raises(InvalidClient):
            await authenticate(
                BasicHeader(basic("svc", secret)), Lookup(), {PEPPER.id: PEPPER}, None, proven
            )
    assert len(proven) == 0


async def test_a_rotated_secret_voids_what_was_proven() -> None:
    proven, lookup = ProvenSecrets(), MutableLookup()
    old = BasicHeader(basic("svc", SECRET))
    await authenticate(old, lookup, {PEPPER.id: PEPPER}, None, proven)
    new_secret = generate_secret()
    lookup.clients["svc"] = rotated(CLIENTS["svc"], new_secret)
    with pytest.raises(InvalidClient):
        await authenticate(old, lookup, {PEPPER.id: PEPPER}, None, proven)
    fresh = BasicHeader(basic("svc", new_secret))
    assert (await authenticate(fresh, lookup, {PEPPER.id: PEPPER}, None, proven)).client_id == "svc"


async def test_a_deleted_client_or_a_retired_pepper_voids_what_was_proven() -> None:
    proven, lookup = ProvenSecrets(), MutableLookup()
    header = BasicHeader(basic("svc", SECRET))
    await authenticate(header, lookup, {PEPPER.id: PEPPER}, None, proven)
    other = Pepper(pepper_id(b"o" * 32), b"o" * 32)
    with pytest.raises(InvalidClient):
        await authenticate(header, lookup, {other.id: other}, None, proven)
    del lookup.clients["svc"]
    with pytest.raises(InvalidClient):
        await authenticate(header, lookup, {PEPPER.id: PEPPER}, None, proven)


async def test_a_client_switched_to_private_key_jwt_is_refused_its_old_secret() -> None:
    proven, lookup = ProvenSecrets(), MutableLookup()
    header = BasicHeader(basic("svc", SECRET))
    await authenticate(header, lookup, {PEPPER.id: PEPPER}, None, proven)
    lookup.clients["svc"] = dataclasses.replace(
        CLIENTS["svc"], auth_method=PRIVATE_KEY_JWT, jwks_json=_jwks(KEY)
    )
    with pytest.raises(InvalidClient):
        await authenticate(header, lookup, {PEPPER.id: PEPPER}, None, proven)


async def test_client_secret_post_is_remembered_too() -> None:
    proven = ProvenSecrets()
    creds = credentials_from(None, "svc", SECRET)
    for _ in range(2):
        await authenticate(creds, Lookup(), {PEPPER.id: PEPPER}, None, proven)
    assert len(proven) == 1
    with pytest.raises(InvalidClient):  # the same id with another secret is another key
        await authenticate(
            credentials_from(None, "svc", "nope"), Lookup(), {PEPPER.id: PEPPER}, None, proven
        )


def test_proven_secrets_are_bounded() -> None:
    proven = ProvenSecrets(size=16)
    for i in range(100):
        proven.remember(ProvenSecrets.key(BasicHeader(f"Basic {i}")), CLIENTS["svc"])
    assert len(proven) <= 16
    with pytest.raises(ValueError, match="at least 1"):
        ProvenSecrets(size=0)


# --- private_key_jwt (RFC 7523) ------------------------------------------------------------------


async def test_private_key_jwt(clock: FakeClock, ctx: AssertionContext) -> None:
    assert (await auth_assertion(assertion(clock), ctx)).client_id == "jwtsvc"


async def test_private_key_jwt_audience_token_endpoint_or_array(
    clock: FakeClock, ctx: AssertionContext
) -> None:
    await auth_assertion(assertion(clock, aud=TOKEN_ENDPOINT, jti="a"), ctx)
    await auth_assertion(assertion(clock, aud=[ISSUER], jti="b"), ctx)
    await auth_assertion(assertion(clock, aud=[ISSUER, TOKEN_ENDPOINT], jti="c"), ctx)


async def test_replayed_assertion_is_refused(clock: FakeClock, ctx: AssertionContext) -> None:
    text = assertion(clock, jti="once")
    await auth_assertion(text, ctx)
    with pytest.raises(InvalidClient, match="already used"):
        await auth_assertion(text, ctx)


async def test_expired_assertion_is_refused(clock: FakeClock, ctx: AssertionContext) -> None:
    text = assertion(clock)
    clock.advance(60 + 31)  # exp + leeway
    with pytest.raises(InvalidClient, match="expired"):
        await auth_assertion(text, ctx)


@pytest.mark.parametrize(
    "aud",
    ["https://other.test", [ISSUER, "https://other.test"], [], "", 42, ISSUER + "/"],
)
async def test_wrongly_audienced_assertion_is_refused(
    clock: FakeClock, ctx: AssertionContext, aud: Any
) -> None:
    with pytest.raises(InvalidClient, match="aud"):
        await auth_assertion(assertion(clock, aud=aud), ctx)


async def test_too_long_lived_assertion_is_refused(clock: FakeClock, ctx: AssertionContext) -> None:
    now = int(clock.now())
    with pytest.raises(InvalidClient, match="at most 300"):
        await auth_assertion(assertion(clock, iat=now, exp=now + 301), ctx)
    with pytest.raises(InvalidClient, match="at most 300"):
        await auth_assertion(assertion(clock, iat=None, exp=now + 400), ctx)
    await auth_assertion(assertion(clock, iat=now, exp=now + 300, jti="max"), ctx)


async def test_assertion_without_exp_or_jti_is_refused(
    clock: FakeClock, ctx: AssertionContext
) -> None:
    with pytest.raises(InvalidClient, match="exp"):
        await auth_assertion(assertion(clock, exp=None), ctx)
    with pytest.raises(InvalidClient, match="jti"):
        await auth_assertion(assertion(clock, jti=None), ctx)


async def test_assertion_iss_must_equal_sub(clock: FakeClock, ctx: AssertionContext) -> None:
    with pytest.raises(InvalidClient, match="iss and sub"):
        await auth_assertion(assertion(clock, iss="someone-else"), ctx)


async def test_assertion_signed_by_another_key_is_refused(
    clock: FakeClock, ctx: AssertionContext
) -> None:
    with pytest.raises(InvalidClient, match="authentication failed"):
        await auth_assertion(assertion(clock, key=OTHER_KEY), ctx)


async def test_assertion_with_unknown_kid_is_refused(
    clock: FakeClock, ctx: AssertionContext
) -> None:
    with pytest.raises(InvalidClient):
        await auth_assertion(assertion(clock, headers={"kid": "nope"}), ctx)


async def test_assertion_alg_none_is_refused(clock: FakeClock, ctx: AssertionContext) -> None:
    now = int(clock.now())
    body = {"iss": "jwtsvc", "sub": "jwtsvc", "aud": ISSUER, "exp": now + 60, "jti": "n"}
    text = jwt.encode(body, None, algorithm="none", headers={"kid": "k1"})
    with pytest.raises(InvalidClient):
        await auth_assertion(text, ctx)


async def test_assertion_with_embedded_jwk_is_refused(
    clock: FakeClock, ctx: AssertionContext
) -> None:
    jwk = json.loads(ECAlgorithm.to_jwk(OTHER_KEY.public_key()))
    with pytest.raises(InvalidClient):
        await auth_assertion(assertion(clock, key=OTHER_KEY, headers={"jwk": jwk}), ctx)


async def test_assertion_iat_in_the_future_is_refused(
    clock: FakeClock, ctx: AssertionContext
) -> None:
    now = int(clock.now())
    with pytest.raises(InvalidClient, match="future"):
        await auth_assertion(assertion(clock, iat=now + 120, exp=now + 180), ctx)


async def test_assertion_without_context_is_refused(clock: FakeClock) -> None:
    creds = credentials_from(None, "", "", CLIENT_ASSERTION_TYPE, assertion(clock))
    with pytest.raises(InvalidClient):
        await authenticate(creds, Lookup(), {PEPPER.id: PEPPER}, None)


async def test_assertion_type_must_be_jwt_bearer(clock: FakeClock) -> None:
    with pytest.raises(InvalidClient):
        credentials_from(None, "", "", "urn:other", assertion(clock))


async def test_client_id_param_must_match_assertion(clock: FakeClock) -> None:
    with pytest.raises(InvalidClient):
        credentials_from(None, "svc", "", CLIENT_ASSERTION_TYPE, assertion(clock))
