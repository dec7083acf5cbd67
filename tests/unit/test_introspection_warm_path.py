"""The introspector's warm path (``IntrospectionFlow.answer_now``): a caller proven before and a
cached token are answered without a coroutine, and always as ``introspect`` would answer them.
It answers only while the caller's registration (as cached, invalidated by client events) still
vouches for its secret and the token's entry is still cached (invalidated by revocations);
otherwise it steps aside (None) without counting the call, and ``introspect`` decides."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any, ClassVar

import grpc
import pytest

from tokenry.core.client_assertion import CLIENT_ASSERTION_TYPE
from tokenry.core.client_cache import CachedClients
from tokenry.core.client_secrets import Pepper, generate_secret, hash_secret, pepper_id
from tokenry.core.clientauth import BasicHeader, ClientCredentials, ProvenSecrets, request_peer
from tokenry.core.clients import ADMIN_SCOPE, CLIENT_CREDENTIALS, INTROSPECT_SCOPE, Client
from tokenry.core.clock import FakeClock
from tokenry.core.errors import InsufficientScope, InvalidClient, TemporarilyUnavailable
from tokenry.core.introspection import INACTIVE, Introspection
from tokenry.core.opaque import ACCESS, new_token, token_hash
from tokenry.flows.introspection import (
    MAX_TOKEN_LENGTH,
    IntrospectionFlow,
    IntrospectRequest,
    OpaqueRecord,
)
from tokenry.flows.introspection_cache import PositiveCache
from tokenry.jose import VerificationKey
from tokenry.servicekit.server import Ready
from tokenry.services.introspector.servicer import IntrospectorServicer
from tokenry.v1 import introspector_pb2

ISSUER = "https://issuer.test"
PEPPER_KEY = b"p" * 32
PEPPER = Pepper(pepper_id(PEPPER_KEY), PEPPER_KEY)
SECRET = generate_secret()


def _client(client_id: str, scopes: frozenset[str], secret: str = SECRET) -> Client:
    return Client(
        client_id=client_id,
        secret_hash=hash_secret(PEPPER, secret),
        pepper_id=PEPPER.id,
        grant_types=frozenset({CLIENT_CREDENTIALS}),
        scopes=scopes,
        audiences=("tokenry",),
    )


class Registry:
    """The client store (in memory): what CachedClients reads on a miss."""

    def __init__(self) -> None:
        self.clients = {
            "orders-api": _client("orders-api", frozenset({INTROSPECT_SCOPE})),
            "other-api": _client("other-api", frozenset({INTROSPECT_SCOPE})),
            "admin": _client("admin", frozenset({ADMIN_SCOPE})),
            "no-scope": _client("no-scope", frozenset({"orders.read"})),
        }
        self.reads = 0

    async def get_client(self, client_id: str) -> Client | None:
        self.reads += 1
        return self.clients.get(client_id)


class Records:
    def __init__(self, clock: FakeClock) -> None:
        self.rows: dict[bytes, OpaqueRecord] = {}
        self.finds = 0
        self._clock = clock

    def issue(self, jti: str, audience: str = "orders-api") -> str:
        token = new_token(ACCESS)
        now = int(self._clock.now())
        self.rows[token_hash(token)] = OpaqueRecord(
            "access", jti, None, "web", "alice", "orders.read", (audience,), ISSUER, now,
            now + 600, False,
        )  # fmt: skip
        return token

    async def find(self, digest: bytes) -> OpaqueRecord | None:
        self.finds += 1
        return self.rows.get(digest)


class NoRevocations:
    async def revoked(self, *_: Any) -> bool:
        return False


class NoKeys:
    keys: ClassVar[dict[str, VerificationKey]] = {}

    async def refresh(self, *, force: bool = False) -> None:
        return None


class World:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.registry = Registry()
        self.clients = CachedClients(self.registry, self.clock)
        self.records = Records(self.clock)
        self.cache = PositiveCache(self.clock, max_age=5.0)
        self.flow = IntrospectionFlow(
            clients=self.clients,
            peppers={PEPPER.id: PEPPER},
            opaque=self.records,
            revocations=NoRevocations(),
            keys=NoKeys(),
            issuer_url=ISSUER,
            clock=self.clock,
            cache=self.cache,
            proven=ProvenSecrets(),
        )

    async def call(self, creds: BasicHeader | ClientCredentials, token: str) -> Introspection:
        """What the servicer does: the warm path first, else the whole flow."""
        answer = self.flow.answer_now(creds, token)
        if answer is None:
            answer = await self.flow.introspect(IntrospectRequest(creds, token, ""))
        return answer


def basic(client_id: str, secret: str = SECRET) -> BasicHeader:
    return BasicHeader("Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode())


async def test_warm_needs_a_proven_caller_and_a_cached_token() -> None:
    w = World()
    token = w.records.issue("j1")
    assert w.flow.answer_now(basic("orders-api"), token) is None  # nobody proven yet
    first = await w.flow.introspect(IntrospectRequest(basic("orders-api"), token, ""))
    assert first.active and first.jti == "j1"
    warm = w.flow.answer_now(basic("orders-api"), token)
    assert warm == first
    assert w.flow.answer_now(basic("orders-api"), token) is warm  # one cached object
    assert w.flow.answer_now(basic("orders-api"), w.records.issue("j2")) is None  # not cached
    post = ClientCredentials("orders-api", SECRET, "client_secret_post")
    assert w.flow.answer_now(post, token) is None  # other credential material: not proven
    await w.call(post, token)
    assert w.flow.answer_now(post, token) is warm


@pytest.mark.parametrize(
    ("caller", "expected"),
    [("orders-api", True), ("other-api", False), ("admin", True), ("no-scope", None)],
)
async def test_warm_answers_as_introspect_does(caller: str, expected: bool | None) -> None:
    w = World()
    token = w.records.issue("j1")
    for t in (token, "", "x" * (MAX_TOKEN_LENGTH + 1)):
        try:
            slow: Introspection | None = await w.flow.introspect(
                IntrospectRequest(basic(caller), t, "")
            )
        except InsufficientScope:
            slow = None
        try:
            warm = w.flow.answer_now(basic(caller), t)
        except InsufficientScope:
            warm = None
        assert warm == slow, (caller, len(t))
        if t == token and expected is not None:
            assert warm is not None and warm.active is expected
        if t != token and expected is not None:
            assert warm is INACTIVE
        if expected is None:
            assert warm is None and slow is None  # both refused the caller


async def test_a_rotated_or_deleted_caller_is_not_recalled() -> None:
    w = World()
    token = w.records.issue("j1")
    await w.call(basic("orders-api"), token)
    assert w.flow.answer_now(basic("orders-api"), token) is not None
    # The secret is rotated; the client event drops the cached registration.
    w.registry.clients["orders-api"] = _client(
        "orders-api", frozenset({INTROSPECT_SCOPE}), generate_secret()
    )
    w.clients.invalidate("orders-api")
    assert w.flow.answer_now(basic("orders-api"), token) is None
    with pytest.raises(InvalidClient):
        await w.call(basic("orders-api"), token)
    # The new registration is cached again, and no longer vouches for the old secret.
    assert w.clients.cached("orders-api") is not None
    assert w.flow.answer_now(basic("orders-api"), token) is None
    # Deleted: the same.
    del w.registry.clients["other-api"]
    await w.call(basic("admin"), token)
    w.clients.invalidate("other-api")
    assert w.flow.answer_now(basic("other-api"), token) is None
    # A missed event: the registration's TTL ends the recall, then the store decides again.
    reads = w.registry.reads
    w.clock.advance(11.0)
    w.cache.clear()
    assert w.flow.answer_now(basic("admin"), token) is None
    assert (await w.call(basic("admin"), token)).active
    assert w.registry.reads == reads + 1


async def test_a_revoked_token_leaves_the_warm_path() -> None:
    w = World()
    token = w.records.issue("j1")
    assert (await w.call(basic("orders-api"), token)).active
    finds = w.records.finds
    assert (await w.call(basic("orders-api"), token)).active
    assert w.records.finds == finds  # warm: no store read
    digest = token_hash(token)
    w.records.rows[digest] = replace(w.records.rows[digest], revoked=True)
    w.cache.invalidate("jti", "j1")  # the revocation's event or notification
    assert w.flow.answer_now(basic("orders-api"), token) is None
    assert (await w.call(basic("orders-api"), token)) is INACTIVE
    assert w.records.finds == finds + 1


async def test_every_call_counts_once_against_the_callers_limit() -> None:
    """The burst is 2,000 calls (docs/security.md): a cold call that the warm path stepped
    aside for must not be counted twice."""
    w = World()
    tokens = [w.records.issue(f"j{i}") for i in range(50)]
    for i in range(2000):  # 50 cold calls, the rest warm; the clock does not move
        await w.call(basic("orders-api"), tokens[i % 50])
    with pytest.raises(TemporarilyUnavailable):
        await w.call(basic("orders-api"), tokens[0])
    assert (await w.call(basic("other-api"), tokens[0])) is INACTIVE  # another caller's bucket


async def test_cached_reads_the_registry_cache_without_awaiting() -> None:
    w = World()
    assert w.clients.cached("orders-api") is None  # never read
    client = await w.clients.get_client("orders-api")
    assert w.clients.cached("orders-api") is client
    assert await w.clients.get_client("missing") is None
    assert w.clients.cached("missing") is None  # a cached "no such client"
    w.clock.advance(11.0)
    assert w.clients.cached("orders-api") is None  # stale


# --- the servicer: the warm path is taken before caller_credentials, with the same rules ------


class Aborted(Exception):
    pass


class Context:
    """The part of grpc.aio.ServicerContext the servicer reads (pure logic, no I/O)."""

    def __init__(self, *metadata: tuple[str, str]) -> None:
        self.metadata = metadata
        self.status: grpc.Status | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("user-agent", "test"), *self.metadata)

    def peer(self) -> str:
        return "ipv4:10.0.0.7:5123"

    async def abort_with_status(self, status: grpc.Status) -> None:
        self.status = status
        raise Aborted


class Watched:
    """The flow, noting how each call was answered and what the failure limiter would see."""

    def __init__(self, flow: IntrospectionFlow) -> None:
        self.flow = flow
        self.slow_peers: list[object] = []
        self.cold: list[str] = []  # callers answered by introspect_as (recalled, not cached)

    def answer_now(self, creds: Any, token: str) -> Introspection | None:
        return self.flow.answer_now(creds, token)

    def answer_or_caller(self, creds: Any, token: str) -> Any:
        return self.flow.answer_or_caller(creds, token)

    def answer_or_caller_basic(self, authorization: str, token: str) -> Any:
        return self.flow.answer_or_caller_basic(authorization, token)

    async def introspect_as(self, caller: Any, token: str) -> Introspection:
        self.cold.append(caller.client_id)
        return await self.flow.introspect_as(caller, token)

    async def introspect(self, req: IntrospectRequest) -> Introspection:
        self.slow_peers.append(request_peer.get())
        return await self.flow.introspect(req)


def _servicer(w: World) -> tuple[IntrospectorServicer, Watched]:
    ready: Ready[Any] = Ready()
    watched = Watched(w.flow)
    ready.set(watched)
    return IntrospectorServicer(ready), watched


async def test_the_servicer_answers_warm_calls_without_the_slow_path() -> None:
    w = World()
    servicer, watched = _servicer(w)
    token = w.records.issue("j1")
    auth = ("authorization", basic("orders-api").authorization)
    request = introspector_pb2.IntrospectRequest(token=token)
    first = await servicer.Introspect(request, Context(auth))  # type: ignore[arg-type]
    assert first.active and first.jti == "j1" and first.aud == ["orders-api"]
    # The slow path had the lazy peer for the failure limiter (caller_credentials set it).
    assert len(watched.slow_peers) == 1 and callable(watched.slow_peers[0])
    again = await servicer.Introspect(request, Context(auth))  # type: ignore[arg-type]
    assert again == first and len(watched.slow_peers) == 1


@pytest.mark.parametrize(
    ("authorization", "assertion", "code"),
    [
        # two methods at once (RFC 6749 §2.3): refused before any answer, warm or not
        ("proven", "a.b.c", grpc.StatusCode.INVALID_ARGUMENT),
        ("", "", grpc.StatusCode.UNAUTHENTICATED),  # nothing presented
        ("Basic " + "A" * 600, "", grpc.StatusCode.UNAUTHENTICATED),  # over 512 characters
    ],
)
async def test_the_servicer_keeps_the_credential_rules(
    authorization: str, assertion: str, code: grpc.StatusCode
) -> None:
    w = World()
    servicer, _ = _servicer(w)
    token = w.records.issue("j1")
    proven = basic("orders-api").authorization
    await servicer.Introspect(  # orders-api is proven, the token cached
        introspector_pb2.IntrospectRequest(token=token),
        Context(("authorization", proven)),  # type: ignore[arg-type]
    )
    if authorization == "proven":
        authorization = proven
    context = Context(*((("authorization", authorization),) if authorization else ()))
    request = introspector_pb2.IntrospectRequest(
        token=token,
        client_assertion=assertion,
        client_assertion_type=CLIENT_ASSERTION_TYPE if assertion else "",
    )
    with pytest.raises(Aborted):
        await servicer.Introspect(request, context)  # type: ignore[arg-type]
    assert context.status is not None and context.status.code == code
