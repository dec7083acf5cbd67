"""The key lifecycle (docs/spec.md §5) with a fake clock: every transition, every timing edge."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenry.core.clock import FakeClock
from tokenry.core.keylifecycle import (
    ALLOWED,
    PUBLISHED,
    Change,
    IllegalTransition,
    KeyInfo,
    KeySet,
    KeyState,
    NewKey,
    NoActiveKey,
    Policy,
    SuccessorNotReady,
    Transition,
    UnknownKey,
    announce_order,
    parse_keysets,
    plan,
    plan_revoke,
    plan_rotate,
    timing_problems,
)

ACCESS = KeySet("access", "ES256")
ID = KeySet("id", "RS256")
POLICY = Policy(rotation_interval=100.0, publish_lead=10.0, retention=50.0)
P, A, RG, RD, RV = (
    KeyState.PENDING,
    KeyState.ACTIVE,
    KeyState.RETIRING,
    KeyState.RETIRED,
    KeyState.REVOKED,
)


class Sim:
    """An in-memory key table that applies changes like the database does (same constraints)."""

    def __init__(self, clock: FakeClock, keysets: tuple[KeySet, ...] = (ACCESS,)) -> None:
        self.clock = clock
        self.keysets = keysets
        self.keys: dict[str, KeyInfo] = {}
        self.ids = itertools.count(1)
        # kid -> {state: time entered}
        self.history: dict[str, dict[KeyState, float]] = {}
        self.emergency: set[str] = set()  # kids moved by a revocation or a forced rotation
        self.early: set[str] = set()  # kids moved by an on-demand rotation

    def published(self) -> list[KeyInfo]:
        return [k for k in self.keys.values() if k.state in PUBLISHED]

    def apply(
        self,
        changes: tuple[Change, ...] | list[Change],
        *,
        emergency: bool = False,
        on_demand: bool = False,
    ) -> None:
        """Apply like one transaction. ``emergency`` (revocations, forced rotations) exempts the
        keys it touches from every scheduled timing rule, ``on_demand`` (an operator's rotation)
        from the rotation interval only: the publish lead still holds."""
        now = self.clock.now()
        for change in changes:
            if isinstance(change, NewKey):
                kid = f"k{next(self.ids)}"
                if emergency:
                    self.emergency.add(kid)
                self.keys[kid] = KeyInfo(
                    kid,
                    change.keyset,
                    change.state,
                    now,
                    now if change.state is A else None,
                )
                self.history[kid] = {P: now} if change.state is P else {A: now}
            else:
                if emergency:
                    self.emergency.add(change.kid)
                if on_demand:
                    self.early.add(change.kid)
                key = self.keys[change.kid]
                assert key.state is change.src, (key, change)
                self.keys[change.kid] = replace(
                    key,
                    state=change.dst,
                    activated_at=now if change.dst is A else key.activated_at,
                    retiring_at=now if change.dst is RG else key.retiring_at,
                )
                self.history[change.kid][change.dst] = now
            self.check_unique()

    def check_unique(self) -> None:
        """The partial unique indexes: one active and one pending per key set."""
        for keyset in {k.keyset for k in self.keys.values()}:
            states = [k.state for k in self.keys.values() if k.keyset == keyset]
            assert states.count(A) <= 1 and states.count(P) <= 1, states

    def tick(self) -> list[Change]:
        """Run the schedule until nothing is due (what the leader's loop does)."""
        done: list[Change] = []
        for _ in range(5):
            result = plan(self.published(), self.keysets, POLICY, self.clock.now())
            if not result.changes:
                return done
            self.apply(result.changes)
            done += result.changes
        raise AssertionError("the schedule does not settle")

    def of(self, keyset: KeySet, state: KeyState) -> list[KeyInfo]:
        return [k for k in self.keys.values() if k.keyset == keyset and k.state is state]

    def one(self, keyset: KeySet, state: KeyState) -> KeyInfo:
        found = self.of(keyset, state)
        assert len(found) == 1, (state, found)
        return found[0]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def sim(clock: FakeClock) -> Sim:
    s = Sim(clock)
    s.tick()
    return s


# --- bootstrap and the successor invariant ----------------------------------------------------


def test_a_fresh_key_set_gets_an_active_key_and_a_pending_successor_at_once(
    clock: FakeClock,
) -> None:
    result = plan([], (ACCESS, ID), POLICY, clock.now())
    assert result.changes == (
        NewKey(ACCESS, A),
        NewKey(ACCESS, P),
        NewKey(ID, A),
        NewKey(ID, P),
    )
    assert result.next_due == clock.now()  # look again at once


def test_after_bootstrap_nothing_is_due_until_the_rotation(sim: Sim, clock: FakeClock) -> None:
    result = plan(sim.published(), sim.keysets, POLICY, clock.now())
    assert result.changes == ()
    assert result.next_due == clock.now() + POLICY.rotation_interval


def test_an_active_key_without_successor_gets_one(sim: Sim, clock: FakeClock) -> None:
    pending = sim.one(ACCESS, P)
    del sim.keys[pending.kid]
    assert plan(sim.published(), sim.keysets, POLICY, clock.now()).changes == (NewKey(ACCESS, P),)


def test_a_pending_key_without_active_is_promoted(sim: Sim, clock: FakeClock) -> None:
    active = sim.one(ACCESS, A)
    pending = sim.one(ACCESS, P)
    del sim.keys[active.kid]
    changes = plan(sim.published(), sim.keysets, POLICY, clock.now()).changes
    assert changes == (Transition(pending.kid, ACCESS, P, A), NewKey(ACCESS, P))


# --- scheduled rotation: timing edges ---------------------------------------------------------


def test_rotation_is_not_due_one_instant_before_the_interval(sim: Sim, clock: FakeClock) -> None:
    clock.advance(POLICY.rotation_interval - 0.001)
    result = plan(sim.published(), sim.keysets, POLICY, clock.now())
    assert result.changes == ()
    assert result.next_due == pytest.approx(clock.now() + 0.001)


def test_rotation_happens_exactly_at_the_interval(sim: Sim, clock: FakeClock) -> None:
    active, pending = sim.one(ACCESS, A), sim.one(ACCESS, P)
    clock.advance(POLICY.rotation_interval)
    changes = plan(sim.published(), sim.keysets, POLICY, clock.now()).changes
    # Demote before promote (one active per key set), the new successor last.
    assert changes == (
        Transition(active.kid, ACCESS, A, RG),
        Transition(pending.kid, ACCESS, P, A),
        NewKey(ACCESS, P),
    )


def test_rotation_waits_for_the_successor_publish_lead(sim: Sim, clock: FakeClock) -> None:
    """A successor created late (e.g. after a revocation) signs only after the publish lead."""
    clock.advance(POLICY.rotation_interval - 2)
    old_successor = sim.one(ACCESS, P)
    sim.apply([Transition(old_successor.kid, ACCESS, P, RV), NewKey(ACCESS, P)])
    late = sim.one(ACCESS, P)
    clock.advance(2)  # rotation due now, but the successor is 2 s old
    result = plan(sim.published(), sim.keysets, POLICY, clock.now())
    assert result.changes == ()
    assert result.next_due == late.created_at + POLICY.publish_lead
    clock.advance(POLICY.publish_lead - 2 - 0.001)
    assert plan(sim.published(), sim.keysets, POLICY, clock.now()).changes == ()
    clock.advance(0.001)
    changes = plan(sim.published(), sim.keysets, POLICY, clock.now()).changes
    assert Transition(late.kid, ACCESS, P, A) in changes


def test_each_rotation_restarts_the_interval(sim: Sim, clock: FakeClock) -> None:
    clock.advance(POLICY.rotation_interval)
    sim.tick()
    rotated_at = clock.now()
    # First the retiring key's retention ends, then the new active key's interval.
    assert plan(sim.published(), sim.keysets, POLICY, clock.now()).next_due == (
        rotated_at + POLICY.retention
    )
    clock.advance(POLICY.retention)
    sim.tick()
    result = plan(sim.published(), sim.keysets, POLICY, clock.now())
    assert result.next_due == rotated_at + POLICY.rotation_interval


# --- retiring → retired: timing edges ---------------------------------------------------------


def test_a_retiring_key_is_retired_exactly_after_the_retention(sim: Sim, clock: FakeClock) -> None:
    first = sim.one(ACCESS, A)
    clock.advance(POLICY.rotation_interval)
    sim.tick()
    assert sim.keys[first.kid].state is RG
    clock.advance(POLICY.retention - 0.001)
    result = plan(sim.published(), sim.keysets, POLICY, clock.now())
    assert result.changes == ()
    assert result.next_due == pytest.approx(clock.now() + 0.001)
    clock.advance(0.001)
    changes = plan(sim.published(), sim.keysets, POLICY, clock.now()).changes
    assert changes == (Transition(first.kid, ACCESS, RG, RD),)


def test_next_due_is_the_earliest_of_retirement_and_rotation(clock: FakeClock) -> None:
    policy = Policy(rotation_interval=100.0, publish_lead=10.0, retention=500.0)
    sim = Sim(clock)
    sim.tick()
    clock.advance(100)
    sim.apply(plan(sim.published(), sim.keysets, policy, clock.now()).changes)
    # retiring until +500, next rotation at +100: the rotation comes first.
    assert plan(sim.published(), sim.keysets, policy, clock.now()).next_due == clock.now() + 100


def test_unconfigured_key_sets_are_not_rotated_but_their_retiring_keys_retire(
    sim: Sim, clock: FakeClock
) -> None:
    clock.advance(POLICY.rotation_interval)
    sim.tick()
    retiring = sim.one(ACCESS, RG)
    clock.advance(POLICY.retention)
    changes = plan(sim.published(), (ID,), POLICY, clock.now()).changes
    assert Transition(retiring.kid, ACCESS, RG, RD) in changes
    assert not any(isinstance(c, Transition) and c.keyset == ACCESS and c.dst is A for c in changes)


# --- on-demand rotation -----------------------------------------------------------------------


def test_on_demand_rotation_refuses_a_successor_younger_than_the_lead(
    sim: Sim, clock: FakeClock
) -> None:
    pending = sim.one(ACCESS, P)
    clock.advance(POLICY.publish_lead - 0.5)
    with pytest.raises(SuccessorNotReady) as err:
        plan_rotate(sim.published(), ACCESS, POLICY, clock.now())
    assert err.value.kid == pending.kid
    assert err.value.ready_at == pending.created_at + POLICY.publish_lead


def test_on_demand_rotation_once_the_successor_is_ready(sim: Sim, clock: FakeClock) -> None:
    active, pending = sim.one(ACCESS, A), sim.one(ACCESS, P)
    clock.advance(POLICY.publish_lead)  # exactly ready
    changes = plan_rotate(sim.published(), ACCESS, POLICY, clock.now())
    assert changes == (
        Transition(active.kid, ACCESS, A, RG),
        Transition(pending.kid, ACCESS, P, A),
        NewKey(ACCESS, P),
    )


def test_forced_rotation_skips_the_lead(sim: Sim, clock: FakeClock) -> None:
    pending = sim.one(ACCESS, P)
    changes = plan_rotate(sim.published(), ACCESS, POLICY, clock.now(), force=True)
    assert Transition(pending.kid, ACCESS, P, A) in changes


def test_rotating_a_key_set_without_active_key_fails(sim: Sim, clock: FakeClock) -> None:
    with pytest.raises(NoActiveKey):
        plan_rotate(sim.published(), ID, POLICY, clock.now())


def test_forced_rotation_without_successor_makes_a_new_active_key(
    sim: Sim, clock: FakeClock
) -> None:
    active = sim.one(ACCESS, A)
    del sim.keys[sim.one(ACCESS, P).kid]
    with pytest.raises(SuccessorNotReady):
        plan_rotate(sim.published(), ACCESS, POLICY, clock.now())
    changes = plan_rotate(sim.published(), ACCESS, POLICY, clock.now(), force=True)
    assert changes == (Transition(active.kid, ACCESS, A, RG), NewKey(ACCESS, A), NewKey(ACCESS, P))


# --- revocation from every state ---------------------------------------------------------------


def test_revoking_the_active_key_promotes_its_successor_in_the_same_step(
    sim: Sim, clock: FakeClock
) -> None:
    active, pending = sim.one(ACCESS, A), sim.one(ACCESS, P)
    changes = plan_revoke(sim.published(), active.kid)
    assert changes == (
        Transition(active.kid, ACCESS, A, RV),
        Transition(pending.kid, ACCESS, P, A),
        NewKey(ACCESS, P),
    )
    sim.apply(changes)
    # The invariant holds right after the emergency: an active key and a published successor.
    assert sim.one(ACCESS, A).kid == pending.kid
    sim.one(ACCESS, P)


def test_revoking_the_active_key_without_successor_makes_a_new_active_key(sim: Sim) -> None:
    active = sim.one(ACCESS, A)
    del sim.keys[sim.one(ACCESS, P).kid]
    changes = plan_revoke(sim.published(), active.kid)
    assert changes == (Transition(active.kid, ACCESS, A, RV), NewKey(ACCESS, A), NewKey(ACCESS, P))


def test_revoking_the_pending_key_replaces_it(sim: Sim) -> None:
    pending = sim.one(ACCESS, P)
    changes = plan_revoke(sim.published(), pending.kid)
    assert changes == (Transition(pending.kid, ACCESS, P, RV), NewKey(ACCESS, P))


def test_revoking_a_retiring_key(sim: Sim, clock: FakeClock) -> None:
    clock.advance(POLICY.rotation_interval)
    sim.tick()
    retiring = sim.one(ACCESS, RG)
    assert plan_revoke(sim.published(), retiring.kid) == (Transition(retiring.kid, ACCESS, RG, RV),)


def test_revoking_a_retired_key(sim: Sim, clock: FakeClock) -> None:
    clock.advance(POLICY.rotation_interval)
    sim.tick()
    clock.advance(POLICY.retention)
    sim.tick()
    retired = sim.one(ACCESS, RD)
    assert plan_revoke([*sim.published(), retired], retired.kid) == (
        Transition(retired.kid, ACCESS, RD, RV),
    )


def test_revoking_a_revoked_key_changes_nothing(sim: Sim) -> None:
    pending = sim.one(ACCESS, P)
    sim.apply(plan_revoke(sim.published(), pending.kid))
    assert plan_revoke([*sim.published(), sim.keys[pending.kid]], pending.kid) == ()


def test_revoking_an_unknown_key_fails(sim: Sim) -> None:
    with pytest.raises(UnknownKey):
        plan_revoke(sim.published(), "nope")


# --- the transition table ----------------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(KeyState, KeyState)))
def test_every_transition_is_allowed_or_refused_per_the_table(src: KeyState, dst: KeyState) -> None:
    legal = {(P, A), (P, RV), (A, RG), (A, RV), (RG, RD), (RG, RV), (RD, RV)}
    assert (dst in ALLOWED[src]) == ((src, dst) in legal)
    if (src, dst) in legal:
        Transition("k", ACCESS, src, dst)
    else:
        with pytest.raises(IllegalTransition):
            Transition("k", ACCESS, src, dst)


def test_revoked_is_reachable_from_every_other_state() -> None:
    assert all(RV in ALLOWED[s] for s in KeyState if s is not RV)


def test_new_keys_are_only_pending_or_active() -> None:
    for state in (RG, RD, RV):
        with pytest.raises(ValueError, match="pending"):
            NewKey(ACCESS, state)


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_policy_durations_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Policy(rotation_interval=bad, publish_lead=1, retention=1)
    with pytest.raises(ValueError, match="positive"):
        Policy(rotation_interval=10, publish_lead=1, retention=bad)


def test_policy_interval_must_cover_the_publish_lead() -> None:
    Policy(rotation_interval=10, publish_lead=10, retention=1)
    with pytest.raises(ValueError, match="publish_lead"):
        Policy(rotation_interval=9.99, publish_lead=10, retention=1)


def test_timing_rules_edges() -> None:
    ok = Policy(rotation_interval=7200, publish_lead=900, retention=3900)
    assert timing_problems(ok, jwks_cache_ttl=900, max_token_ttl=3600, leeway=300) == []
    short_lead = replace(ok, publish_lead=899)
    [problem] = timing_problems(short_lead, jwks_cache_ttl=900, max_token_ttl=3600, leeway=300)
    assert "JWKS cache lifetime" in problem
    short_retention = replace(ok, retention=3899)
    [problem] = timing_problems(short_retention, jwks_cache_ttl=900, max_token_ttl=3600, leeway=300)
    assert "maximum token lifetime" in problem


def test_key_sets_parse_and_validate() -> None:
    assert parse_keysets("access:ES256, id:RS256,access:ES256") == (ACCESS, ID)
    assert str(ACCESS) == "access:ES256"
    for bad in ("access", "access:HS256", "refresh:ES256", "access:none", ""):
        with pytest.raises(ValueError, match=r"key set|use|alg"):
            parse_keysets(bad)


def test_activations_are_announced_first() -> None:
    states = [RV, A, P]
    assert announce_order(states) == [1, 0, 2]
    assert announce_order([RG, RD, A, P]) == [2, 0, 1, 3]


# --- whole lifecycles under a fake clock ----------------------------------------------------------


def test_fifty_scheduled_rotations_keep_every_timing_rule(sim: Sim, clock: FakeClock) -> None:
    sim.keysets = (ACCESS, ID)
    sim.tick()
    for _ in range(50 * 10):
        clock.advance(POLICY.rotation_interval / 10)
        sim.tick()
        for keyset in sim.keysets:
            sim.one(keyset, A)
            sim.one(keyset, P)
    check_history(sim)
    rotated = [k for k, h in sim.history.items() if RG in h]
    assert len(rotated) >= 2 * 49


def check_history(sim: Sim) -> None:
    """Every key obeyed the timing rules, except keys promoted by an emergency."""
    for kid, history in sim.history.items():
        if P in history and A in history and kid not in sim.emergency:
            assert history[A] - history[P] >= POLICY.publish_lead, kid
        if A in history and RG in history and kid not in sim.emergency | sim.early:
            assert history[RG] - history[A] >= POLICY.rotation_interval - 1e-9, kid
        if RG in history and RD in history:
            assert history[RD] - history[RG] >= POLICY.retention, kid


operations = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0.1, 150.0)),
        st.tuples(st.just("revoke"), st.integers(0, 50)),
        st.tuples(st.just("rotate"), st.booleans()),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=operations)
def test_any_history_keeps_an_active_key_and_a_published_successor(
    ops: list[tuple[str, object]],
) -> None:
    clock = FakeClock(1_800_000_000.0)
    sim = Sim(clock, (ACCESS, ID))
    sim.tick()
    for op, arg in ops:
        if op == "advance":
            assert isinstance(arg, float)
            clock.advance(arg)
        elif op == "revoke":
            assert isinstance(arg, int)
            everything = list(sim.keys.values())
            target = everything[arg % len(everything)]
            sim.apply(plan_revoke([*sim.published(), target], target.kid), emergency=True)
            assert sim.keys[target.kid].state is RV
        else:
            force = bool(arg)
            try:
                changes = plan_rotate(sim.published(), ACCESS, POLICY, clock.now(), force=force)
            except SuccessorNotReady:
                assert not force
                continue
            sim.apply(changes, emergency=force, on_demand=True)
        sim.tick()
        # docs/spec.md §5: each configured key set has exactly one active key and one published
        # successor after every step, whatever happened.
        for keyset in sim.keysets:
            sim.one(keyset, A)
            sim.one(keyset, P)
    check_history(sim)
