"""The token sources' refresh state machine, sans I/O: every decision from a ``now`` passed in."""

from __future__ import annotations

import pytest

from tokenry.client import IssuedToken, RefreshMachine, RefreshPolicy, Step

POLICY = RefreshPolicy(refresh_ratio=0.75, expiry_margin=30.0, retry_backoff=1.0, max_backoff=4.0)


def fetched(machine: RefreshMachine, token: str, at: float, expires_in: float = 600.0) -> None:
    started = machine.fetch_started(at)
    machine.fetched(IssuedToken(token, expires_in), started)


def test_no_token_means_fetch_and_a_fetch_is_counted() -> None:
    machine = RefreshMachine(POLICY)
    assert machine.step(machine.held, 0.0) is Step.FETCH
    fetched(machine, "t1", at=0.0)
    assert machine.fetches == 1 and not machine.fetching
    assert machine.held is not None and machine.held.value == "t1"


def test_use_then_one_early_refresh_then_wait() -> None:
    machine = RefreshMachine(POLICY)
    fetched(machine, "t1", at=100.0)
    held = machine.held
    assert held is not None
    # 600 s lifetime: refresh after 450 s, usable until 600 - min(30, 60) = 570 s.
    assert (held.refresh_at, held.usable_until) == (550.0, 670.0)
    assert machine.step(held, 549.9) is Step.USE
    assert machine.step(held, 550.0) is Step.REFRESH_EARLY
    machine.fetch_started(550.0)
    # While that refresh is in flight every other caller keeps the current token.
    assert machine.step(held, 560.0) is Step.USE
    assert machine.step(held, 670.0) is Step.FETCH  # past usable_until: wait


def test_the_plan_counts_from_when_the_fetch_started() -> None:
    machine = RefreshMachine(POLICY)
    started = machine.fetch_started(0.0)
    machine.fetched(IssuedToken("t", 20.0), started)  # a slow fetch answered later
    held = machine.held
    assert held is not None
    assert held.usable_until == 18.0  # the margin is capped at a tenth of the lifetime
    assert held.refresh_at == 15.0


def test_a_failed_early_refresh_backs_off_doubling_to_the_cap() -> None:
    machine = RefreshMachine(POLICY)
    fetched(machine, "t1", at=0.0)
    held = machine.held
    assert held is not None
    now = held.refresh_at
    delays = []
    for _ in range(4):
        assert machine.step(held, now) is Step.REFRESH_EARLY
        machine.fetch_started(now)
        machine.fetch_failed(now)
        retry = now
        while machine.step(held, retry) is Step.USE:
            retry += 0.5
        delays.append(retry - now)
        now = retry
    assert delays == [1.0, 2.0, 4.0, 4.0]
    fetched(machine, "t2", at=now)  # a success resets the backoff to its first step
    held2 = machine.held
    assert held2 is not None
    machine.fetch_started(held2.refresh_at)
    machine.fetch_failed(held2.refresh_at)
    assert machine.step(held2, held2.refresh_at + 0.9) is Step.USE
    assert machine.step(held2, held2.refresh_at + 1.0) is Step.REFRESH_EARLY


def test_invalidate_drops_only_the_refused_token() -> None:
    machine = RefreshMachine(POLICY)
    fetched(machine, "t1", at=0.0)
    assert not machine.invalidate("someone-elses")
    assert machine.held is not None
    assert machine.invalidate("t1")
    assert machine.held is None and machine.step(None, 1.0) is Step.FETCH
    fetched(machine, "t2", at=1.0)
    assert not machine.invalidate("t1")  # a late refusal of the old token changes nothing


@pytest.mark.parametrize(
    "kwargs",
    [{"refresh_ratio": 0.0}, {"refresh_ratio": 1.5}, {"expiry_margin": -1}, {"retry_backoff": 0}],
)
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RefreshPolicy(**kwargs)


def test_the_exchange_request_is_rfc8693() -> None:
    from tokenry.client import ClientSecretBasic
    from tokenry.client._fetchers import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE, exchange_request

    request, metadata = exchange_request(
        ClientSecretBasic("svc-a", "s3cret"), "subject.jwt.token", "read", ["svc-b"]
    )
    assert request.grant_type == TOKEN_EXCHANGE
    assert (request.subject_token, request.subject_token_type) == (
        "subject.jwt.token",
        ACCESS_TOKEN_TYPE,
    )
    assert (request.scope, list(request.audience)) == ("read", ["svc-b"])
    assert not request.actor_token  # the authenticated client is the actor
    assert metadata[0][0] == "authorization"
    with pytest.raises(ValueError, match="subject token"):
        exchange_request(ClientSecretBasic("svc-a", "s3cret"), "")
