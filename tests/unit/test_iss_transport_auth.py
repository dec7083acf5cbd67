"""The issuer's transport and client-authentication hot path, session 5: the same answers as
before, with less work per call.

- core.clientauth.credentials_from picks the same method, or refuses with the same error, as
  the rule it replaces (RFC 6749 §2.3: one method) for every mix of presented fields;
- servicekit.grpcmeta.caller_credentials sets one ContextVar per call: the failure limiter
  still gets the call's peer (core.clientauth.request_peer resolves it from the transport object
  in core.mtls.request_certificate) and an adapter's own peer still wins;
- core.clientauth.authenticate recalls a proven Basic header by its key and remembers it after
  a full check, under the same key ProvenSecrets.recall uses; a changed secret hash voids it.
"""

from __future__ import annotations

import base64
import contextvars
import itertools
from typing import Any

import jwt
import pytest

from tokenry.core import mtls
from tokenry.core.client_assertion import CLIENT_ASSERTION_TYPE, unverified_subject
from tokenry.core.client_secrets import Pepper, generate_secret, hash_secret, pepper_id
from tokenry.core.clientauth import (
    MAX_CREDENTIAL_LENGTH,
    POST,
    BasicHeader,
    ClientCredentials,
    FailureLimiter,
    Presented,
    ProvenSecrets,
    authenticate,
    credentials_from,
    parse_basic,
    request_peer,
)
from tokenry.core.clients import CLIENT_CREDENTIALS, NO_AUTH, PRIVATE_KEY_JWT, Client
from tokenry.core.clock import FakeClock
from tokenry.core.errors import InvalidClient, InvalidRequest
from tokenry.servicekit.grpcmeta import caller_credentials

PEPPER_KEY = b"t" * 32
PEPPER = Pepper(pepper_id(PEPPER_KEY), PEPPER_KEY)
SECRET = generate_secret()


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _reference(
    authorization: str | None,
    client_id: str,
    client_secret: str,
    client_assertion_type: str = "",
    client_assertion: str = "",
) -> Presented:
    """credentials_from as it was before session 5 (b9327de), the rule's reference."""
    if bool(authorization) + bool(client_secret) + bool(client_assertion) > 1:
        raise InvalidRequest("use exactly one client authentication method")
    if authorization:
        if not client_id:
            if len(authorization) > MAX_CREDENTIAL_LENGTH:
                raise InvalidClient("client credentials too long")
            return BasicHeader(authorization)
        creds = parse_basic(authorization)
        if client_id and client_id != creds.client_id:
            raise InvalidClient("client authentication failed")
        return creds
    if client_assertion or client_assertion_type:
        if client_assertion_type != CLIENT_ASSERTION_TYPE or not client_assertion:
            raise InvalidClient(f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}")
        sub = unverified_subject(client_assertion)
        if client_id and client_id != sub:
            raise InvalidClient("client authentication failed")
        return ClientCredentials(sub, "", PRIVATE_KEY_JWT, client_assertion)
    if client_id and client_secret:
        return ClientCredentials(client_id, client_secret, POST)
    if client_id:
        return ClientCredentials(client_id, "", NO_AUTH)
    raise InvalidClient("client authentication required")


def _outcome(pick: Any, *args: Any) -> tuple[str, object]:
    try:
        got = pick(*args)
    except (InvalidClient, InvalidRequest) as exc:
        return type(exc).__name__, exc.description
    return type(got).__name__, tuple(got) if isinstance(got, BasicHeader) else got


ASSERTION = jwt.encode({"sub": "svc", "iss": "svc"}, "k" * 32, algorithm="HS256")
MIXES = list(
    itertools.product(
        [None, "", _basic("svc", "s3"), _basic("other", "s3"), "Bearer x", "Basic !!", "B" * 600],
        ["", "svc", "other"],
        ["", "s3"],
        ["", CLIENT_ASSERTION_TYPE, "urn:bogus"],
        ["", ASSERTION],
    )
)


@pytest.mark.parametrize("mix", MIXES, ids=range(len(MIXES)))
def test_the_method_picked_or_the_refusal_is_the_rules(mix: tuple[Any, ...]) -> None:
    assert _outcome(credentials_from, *mix) == _outcome(_reference, *mix)


def test_a_basic_header_alone_is_a_basic_header() -> None:
    header = _basic("svc", SECRET)
    presented = credentials_from(header, "", "")
    assert type(presented) is BasicHeader and presented == BasicHeader(header)
    assert presented.authorization == header and presented.method == "client_secret_basic"
    assert presented.parse() == ClientCredentials("svc", SECRET, "client_secret_basic")
    assert SECRET not in repr(presented)


# --- the transport object: one ContextVar per call ----------------------------------------------


class _Context:
    def __init__(self, metadata: tuple[tuple[str, str], ...], pem: bytes | None = None) -> None:
        self.metadata = metadata
        self.pem = pem
        self.peer_reads = 0

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def peer(self) -> str:
        self.peer_reads += 1
        return "ipv6:[::1]:5123"

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self.pem]} if self.pem else {}


def _peer() -> str:
    held = request_peer.get()
    return held if isinstance(held, str) else held()


def test_the_peer_comes_from_the_call_through_its_one_transport_object() -> None:
    context = _Context((("user-agent", "t"), ("authorization", _basic("svc", SECRET))))

    def call() -> tuple[str, object, object]:
        presented = caller_credentials(context)  # type: ignore[arg-type]
        assert context.peer_reads == 0  # read only when a failure needs it
        return _peer(), presented, mtls.request_certificate.get()

    peer, presented, source = contextvars.copy_context().run(call)
    assert peer == "::1" and context.peer_reads == 1
    assert presented == BasicHeader(_basic("svc", SECRET))
    assert getattr(source, "client_certificate", None) is not None


def test_an_adapters_own_peer_wins_and_no_source_means_no_peer() -> None:
    def gateway() -> str:
        request_peer.set("198.51.100.7")  # services/gateway sets the peer itself
        return _peer()

    assert contextvars.copy_context().run(gateway) == "198.51.100.7"

    def certificate_only() -> str:
        mtls.request_certificate.set(lambda: None)  # a certificate source with no peer
        return _peer()

    assert contextvars.copy_context().run(certificate_only) == ""
    assert contextvars.copy_context().run(_peer) == ""


def test_the_first_authorization_entry_is_the_one_read() -> None:
    context = _Context(
        (("authorization", _basic("svc", SECRET)), ("authorization", _basic("x", "y")))
    )
    presented = contextvars.copy_context().run(caller_credentials, context)  # type: ignore[arg-type]
    assert presented == BasicHeader(_basic("svc", SECRET))


async def test_a_failure_is_held_against_the_calls_peer() -> None:
    failed: list[tuple[str, str]] = []

    class Recording(FailureLimiter):
        def failed(self, client_id: str, peer: str) -> float:
            failed.append((client_id, peer))
            return 0.0

    context = _Context((("authorization", _basic("svc", "wrong")),))

    async def call() -> None:
        presented = caller_credentials(context)  # type: ignore[arg-type]
        with pytest.raises(InvalidClient):
            await authenticate(
                presented, _Lookup(_client()), {PEPPER.id: PEPPER}, limiter=Recording(FakeClock(0))
            )

    await contextvars.copy_context().run(call)
    assert failed == [("svc", "::1")]


# --- the proven-secret recall -------------------------------------------------------------------


def _client(secret: str = SECRET) -> Client:
    return Client(
        client_id="svc",
        secret_hash=hash_secret(PEPPER, secret),
        pepper_id=PEPPER.id,
        grant_types=frozenset({CLIENT_CREDENTIALS}),
        scopes=frozenset({"a"}),
        audiences=("api",),
    )


class _Lookup:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.calls = 0

    async def get_client(self, client_id: str) -> Client | None:
        self.calls += 1
        return self.client if client_id == self.client.client_id else None


@pytest.mark.parametrize(
    "presented",
    [BasicHeader(_basic("svc", SECRET)), ClientCredentials("svc", SECRET, POST)],
    ids=["basic", "post"],
)
async def test_a_proven_secret_is_recalled_under_its_one_key(presented: Presented) -> None:
    proven = ProvenSecrets()
    lookup = _Lookup(_client())
    peppers = {PEPPER.id: PEPPER}
    assert await authenticate(presented, lookup, peppers, proven=proven) is lookup.client
    key = ProvenSecrets.key(presented)
    assert len(proven) == 1 and proven.recall(presented) == (
        key,
        ("svc", lookup.client.secret_hash),
    )
    if isinstance(presented, BasicHeader):
        assert proven.recall_basic(presented.authorization) == ("svc", lookup.client.secret_hash)
    assert await authenticate(presented, lookup, peppers, proven=proven) is lookup.client
    assert len(proven) == 1
    # Another secret registered for the client: the memo no longer vouches, the full check runs
    # and refuses the old secret.
    lookup.client = _client(generate_secret())
    with pytest.raises(InvalidClient):
        await authenticate(presented, lookup, peppers, proven=proven)


async def test_a_wrong_basic_secret_is_never_remembered() -> None:
    proven = ProvenSecrets()
    with pytest.raises(InvalidClient):
        await authenticate(
            BasicHeader(_basic("svc", "wrong")),
            _Lookup(_client()),
            {PEPPER.id: PEPPER},
            proven=proven,
        )
    assert len(proven) == 0


async def test_methods_without_a_secret_skip_the_memo() -> None:
    proven = ProvenSecrets()
    with pytest.raises(InvalidClient):
        await authenticate(
            ClientCredentials("svc", "", NO_AUTH),
            _Lookup(_client()),
            {PEPPER.id: PEPPER},
            proven=proven,
        )
    assert len(proven) == 0
