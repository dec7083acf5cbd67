"""Brute force and abuse (issue 13 item 8): the failure-only limiter of tokenry.core.clientauth.

Client ids are public and secrets 256-bit random: the threat is lock-out and load. So a correct
credential is never refused nor delayed, whatever failures came before it from the same client
and peer; failures beyond a burst are held back and keep answering ``invalid_client`` with a
retry hint; a success never touches the limiter's state.
"""

from __future__ import annotations

import base64
import time

import pytest

from tokenry.core.client_secrets import Pepper, generate_secret, hash_secret, pepper_id
from tokenry.core.clientauth import (
    BasicHeader,
    Bucket,
    CallerLimiter,
    ClientCredentials,
    FailureLimiter,
    FailureLimits,
    authenticate,
    peer_from,
    request_peer,
)
from tokenry.core.clients import CLIENT_CREDENTIALS, Client
from tokenry.core.clock import FakeClock
from tokenry.core.errors import InvalidClient, TemporarilyUnavailable

PEPPER_KEY = b"k" * 32
PEPPER = Pepper(pepper_id(PEPPER_KEY), PEPPER_KEY)
SECRET = generate_secret()
CLIENT = Client(
    client_id="svc",
    secret_hash=hash_secret(PEPPER, SECRET),
    pepper_id=PEPPER.id,
    grant_types=frozenset({CLIENT_CREDENTIALS}),
    scopes=frozenset({"a"}),
    audiences=("api",),
)


class Lookup:
    async def get_client(self, client_id: str) -> Client | None:
        return CLIENT if client_id == "svc" else None


def basic(cid: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()


PEPPERS = {PEPPER.id: PEPPER}
LIMITS = FailureLimits(pair=Bucket(3, 1.0), peer=Bucket(10, 5.0), max_delay=2.0)


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def make(clock: FakeClock | None = None) -> tuple[FailureLimiter, RecordingSleep, FakeClock]:
    clock = clock or FakeClock(time.time())
    sleep = RecordingSleep()
    return FailureLimiter(clock, LIMITS, sleep), sleep, clock


async def attempt(limiter: FailureLimiter, secret: str, peer: str = "10.0.0.9") -> object:
    token = request_peer.set(peer)
    try:
        return await authenticate(
            BasicHeader(basic("svc", secret)), Lookup(), PEPPERS, limiter=limiter
        )
    finally:
        request_peer.reset(token)


# --- pure limiter --------------------------------------------------------------------------------


def test_failures_within_the_burst_are_answered_at_once_then_held() -> None:
    limiter, _, clock = make()
    assert [limiter.failed("svc", "p") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.failed("svc", "p") == pytest.approx(1.0)
    assert limiter.failed("svc", "p") == pytest.approx(2.0)
    assert limiter.failed("svc", "p") == pytest.approx(2.0)  # capped at max_delay
    clock.advance(10)  # the bucket refills
    assert limiter.failed("svc", "p") == 0.0


def test_keys_are_per_client_and_peer_and_per_peer() -> None:
    limiter, _, _ = make()
    for _ in range(3):
        limiter.failed("svc", "p1")
    assert limiter.failed("svc", "p2") == 0.0  # another peer: its own pair bucket
    assert limiter.failed("other", "p1") == 0.0  # another client from the same peer
    # The peer bucket (10) is shared by every client id the peer tries: spraying ids is limited.
    for i in range(6):  # 3 + 1 + 6 = the peer's burst of 10
        limiter.failed(f"c{i}", "p1")
    assert limiter.failed("fresh-id", "p1") > 0


def test_memory_is_bounded() -> None:
    clock = FakeClock(0.0)
    limiter = FailureLimiter(clock, FailureLimits(max_keys=64), RecordingSleep())
    for i in range(10_000):
        limiter.failed(f"c{i}", f"p{i}")
    assert len(limiter) <= 2 * 64


def test_peer_from_ignores_forwarded_header_unless_a_trusted_proxy_is_configured() -> None:
    assert peer_from("ipv4:10.1.2.3:5555") == "10.1.2.3"
    assert peer_from("ipv6:%5B::1%5D:5555") == "::1"
    assert peer_from("ipv4:10.1.2.3:5555", "6.6.6.6") == "10.1.2.3"
    assert peer_from("ipv4:10.1.2.3:5555", "1.1.1.1, 7.7.7.7", trusted=True) == "7.7.7.7"


# --- through authenticate() ----------------------------------------------------------------------


async def test_correct_credential_is_never_refused_or_delayed_after_a_flood_of_failures() -> None:
    limiter, sleep, _ = make()
    for _ in range(50):
        with pytest.raises(InvalidClient):
            await attempt(limiter, "wrong")
    held_before = list(sleep.delays)
    assert held_before  # the flood was held back
    client = await attempt(limiter, SECRET)
    assert client.client_id == "svc"  # type: ignore[attr-defined]
    assert sleep.delays == held_before  # the success waited for nothing


async def test_success_does_not_touch_the_limiter_state() -> None:
    limiter, sleep, _ = make()
    for _ in range(100):
        await attempt(limiter, SECRET)
    assert len(limiter) == 0
    assert sleep.delays == []


async def test_held_failure_stays_invalid_client_with_a_retry_hint() -> None:
    limiter, sleep, _ = make()
    for _ in range(3):
        with pytest.raises(InvalidClient) as caught:
            await attempt(limiter, "wrong")
        assert "retry after" not in caught.value.description
    with pytest.raises(InvalidClient) as caught:
        await attempt(limiter, "wrong")
    assert caught.value.error == "invalid_client"
    assert caught.value.retry_after == 1  # type: ignore[attr-defined]
    assert caught.value.description.endswith("retry after 1 s")
    assert sleep.delays == [pytest.approx(1.0)]


async def test_unknown_client_failures_are_limited_like_wrong_secrets() -> None:
    limiter, sleep, _ = make()
    creds = ClientCredentials("nobody", "x", "client_secret_post")
    for _ in range(5):
        with pytest.raises(InvalidClient):
            await authenticate(creds, Lookup(), PEPPERS, limiter=limiter)
    assert len(sleep.delays) == 2


def test_introspection_limited_per_authenticated_caller() -> None:
    clock = FakeClock(0.0)
    limiter = CallerLimiter(clock, Bucket(5, 5.0))
    for _ in range(5):
        limiter.check("rs-1")
    with pytest.raises(TemporarilyUnavailable, match="retry after 1 s"):
        limiter.check("rs-1")
    limiter.check("rs-2")  # another caller is not affected
    clock.advance(1.0)
    limiter.check("rs-1")
