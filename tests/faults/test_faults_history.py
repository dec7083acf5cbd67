"""The history checker has teeth: hand-made histories, each breaking one rule, are caught; the
same histories without the breach pass."""

from __future__ import annotations

import pytest
from history import (
    OK,
    REVOKED,
    UNAVAILABLE,
    History,
    assert_holds,
    check,
    measure,
    state_digest,
)

from tokenry.core.revocations import Revocation, RevocationKind

BUDGET = 3.0


def base() -> History:
    """Two verifiers, one revocation acked at t=10 in steady state, one control token."""
    h = History(controls={"ctl"})
    for v in ("a", "b"):
        h.probe(v, 9.0, "x", OK)
        h.probe(v, 9.0, "ctl", OK)
    h.ack("x", 10.0)
    for v in ("a", "b"):
        h.probe(v, 10.05, "x", OK)  # within the 1 s liveness bound: allowed
        h.probe(v, 10.3, "x", REVOKED)
        h.probe(v, 10.3, "ctl", OK)
    return h


def rules(h: History) -> list[str]:
    return sorted({v.rule for v in check(h, budget=BUDGET)})


def test_a_clean_history_passes() -> None:
    h = base()
    assert check(h, budget=BUDGET) == []
    assert_holds(h, budget=BUDGET)
    (refused,) = measure(h).refuse_after_ack
    assert abs(refused - 0.3) < 1e-9


def test_an_accept_after_budget_plus_one_is_a_safety_violation() -> None:
    h = base()
    idx = h.fault_started("nats down", 9.5)
    h.probe("b", 10.0 + BUDGET + 1.2, "x", OK)  # the late-heartbeat bug's shape
    h.probe("b", 20.0, "x", REVOKED)
    h.fault_healed(idx, 19.0)
    assert rules(h) == ["safety"]
    # Within the bound, under a fault, the same accept is allowed.
    h = base()
    idx = h.fault_started("nats down", 9.5)
    h.probe("b", 10.0 + BUDGET + 0.8, "x", OK)
    h.probe("b", 20.0, "x", REVOKED)
    h.fault_healed(idx, 19.0)
    assert rules(h) == []


def test_an_accept_after_one_second_in_steady_state_is_a_liveness_violation() -> None:
    h = base()
    h.probe("a", 11.5, "x", OK)
    h.probe("a", 11.6, "x", REVOKED)
    assert rules(h) == ["liveness"]
    # The same during a fault is not a liveness matter (safety still bounds it).
    h = base()
    idx = h.fault_started("partition", 10.5)
    h.probe("a", 11.5, "x", OK)
    h.probe("a", 11.6, "x", REVOKED)
    h.fault_healed(idx, 12.0)
    assert rules(h) == []


def test_a_revocation_whose_last_probe_is_not_revoked_is_lost() -> None:
    h = base()
    h.probe("a", 30.0, "x", UNAVAILABLE)
    assert rules(h) == ["lost"]
    h = base()
    h.ack("y", 12.0)  # nobody ever checked it
    assert rules(h) == ["lost"]
    h = base()
    h.ack("y", 12.0)
    h.probe("a", 12.5, "y", REVOKED)
    h.probe("b", 40.0, "y", OK)
    assert "lost" in rules(h) and "safety" in rules(h)


def test_a_control_token_refused_after_the_heal_is_a_healing_violation() -> None:
    h = base()
    idx = h.fault_started("nats down", 20.0)
    h.probe("a", 22.0, "ctl", UNAVAILABLE)  # during the fault: fine
    h.fault_healed(idx, 25.0)
    h.probe("a", 25.0 + BUDGET + 4.0, "ctl", UNAVAILABLE)  # within budget + 5 s: fine
    assert rules(h) == []
    h.probe("a", 25.0 + BUDGET + 5.5, "ctl", UNAVAILABLE)
    assert rules(h) == ["healing"]


def test_a_control_token_refused_as_revoked_is_a_healing_violation() -> None:
    h = base()
    h.probe("b", 12.0, "ctl", REVOKED)
    assert rules(h) == ["healing"]


def test_the_first_ack_counts() -> None:
    h = base()
    h.ack("x", 30.0)  # a retry acked later does not move the deadline
    h.probe("a", 10.0 + BUDGET + 2, "x", OK)
    h.probe("a", 40.0, "x", REVOKED)
    assert "safety" in rules(h)


def test_a_violating_history_raises_with_the_rules() -> None:
    h = base()
    h.probe("a", 20.0, "x", OK)
    with pytest.raises(AssertionError, match=r"safety.*lost|lost.*safety"):
        assert_holds(h, budget=BUDGET)


def test_the_state_digest_ignores_order_but_not_content() -> None:
    a = Revocation(RevocationKind.JTI, "j1", 0, 100)
    b = Revocation(RevocationKind.SUBJECT, "s", 5, 100)
    assert state_digest([a, b]) == state_digest([b, a])
    assert state_digest([a, b]) != state_digest([a])
    assert state_digest([a]) != state_digest([Revocation(RevocationKind.JTI, "j1", 0, 101)])


def test_a_fault_of_one_verifier_leaves_the_others_in_steady_state() -> None:
    h = base()
    idx = h.fault_started("a paused", 10.5, verifiers={"a"})
    for v in ("a", "b"):
        h.probe(v, 11.5, "x", OK)
        h.probe(v, 11.6, "x", REVOKED)
    h.fault_healed(idx, 12.0)
    assert [(v.rule, v.verifier) for v in check(h, budget=BUDGET)] == [("liveness", "b")]
