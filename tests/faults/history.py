"""A history of one fault run and the checker of docs/spec.md §4's promise over it (pure, no I/O).

A run records, on one clock (``time.monotonic``: CLOCK_MONOTONIC is system-wide on Linux, so
stamps taken in the verifier processes and in the test compare directly):

- each revocation the revocation service acknowledged (jti, the moment the ack was received);
- each probe of each verifier (when it answered, which token, what it answered: ``ok``,
  ``revoked``, ``unavailable`` or another refusal);
- the fault windows (from the injection to the heal).

:func:`check` then looks for violations of four rules (issue 11):

- ``lost``: an acknowledged revocation is never lost — each verifier's last probe of that
  token refuses it as revoked;
- ``safety`` (under every fault): no verifier accepts a token later than its revocation's
  ack + the staleness budget + 1 s;
- ``liveness`` (steady state, i.e. no fault open within a second of the ack): no verifier
  accepts it later than ack + 1 s;
- ``healing``: a token that was never revoked is never refused as revoked, and is accepted
  by every verifier from the last heal + budget + 5 s on (outside fault windows).

``probe`` times are taken by the verifier right after it answered; a probe that was sent
before a pause and answered after it carries the later time, which is when it was decided.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from tokenry.core.revocations import Revocation

OK = "ok"
REVOKED = "revoked"
UNAVAILABLE = "unavailable"

SAFETY_SLACK = 1.0
LIVENESS_BOUND = 1.0
HEALING_SLACK = 5.0


@dataclass(frozen=True, slots=True)
class Probe:
    verifier: str
    at: float
    jti: str
    outcome: str  # OK, REVOKED, UNAVAILABLE or another refusal ("error:<reason>")


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    start: float
    end: float | None  # None: never healed in this run
    #: the verifiers it hits (None: every one, e.g. NATS down)
    verifiers: frozenset[str] | None = None

    def hits(self, verifier: str) -> bool:
        return self.verifiers is None or verifier in self.verifiers


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    verifier: str
    jti: str
    at: float
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: verifier {self.verifier}, jti {self.jti[:8]}…: {self.detail}"


@dataclass
class History:
    acks: dict[str, float] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    #: tokens that are never revoked in this run (the healing rule's witnesses)
    controls: set[str] = field(default_factory=set)

    def ack(self, jti: str, at: float) -> None:
        # The first ack counts: a retried revocation cannot move the deadline later.
        self.acks.setdefault(jti, at)

    def probe(self, verifier: str, at: float, jti: str, outcome: str) -> None:
        self.probes.append(Probe(verifier, at, jti, outcome))

    def fault_started(self, name: str, at: float, verifiers: Iterable[str] | None = None) -> int:
        hit = None if verifiers is None else frozenset(verifiers)
        self.faults.append(Fault(name, at, None, hit))
        return len(self.faults) - 1

    def fault_healed(self, index: int, at: float) -> None:
        fault = self.faults[index]
        self.faults[index] = Fault(fault.name, fault.start, at, fault.verifiers)

    def verifiers(self) -> set[str]:
        return {p.verifier for p in self.probes}

    def in_fault(self, verifier: str, start: float, end: float) -> bool:
        """Whether a fault that hits ``verifier`` overlaps [start, end]."""
        return any(
            f.hits(verifier) and f.start <= end and (f.end is None or f.end >= start)
            for f in self.faults
        )


def check(history: History, *, budget: float) -> list[Violation]:
    """Every violation of the four rules in ``history`` (empty: the promise held)."""
    out: list[Violation] = []
    acks = history.acks
    last: dict[tuple[str, str], Probe] = {}
    for p in sorted(history.probes, key=lambda p: p.at):
        last[(p.verifier, p.jti)] = p
        acked = acks.get(p.jti)
        if acked is not None:
            if p.outcome == OK and p.at > acked + budget + SAFETY_SLACK:
                out.append(
                    Violation(
                        "safety",
                        p.verifier,
                        p.jti,
                        p.at,
                        f"accepted {p.at - acked:.2f}s after the ack"
                        f" (bound: budget {budget:g}s + {SAFETY_SLACK:g}s)",
                    )
                )
            elif (
                p.outcome == OK
                and p.at > acked + LIVENESS_BOUND
                and not history.in_fault(p.verifier, acked, acked + LIVENESS_BOUND)
            ):
                out.append(
                    Violation(
                        "liveness",
                        p.verifier,
                        p.jti,
                        p.at,
                        f"accepted {p.at - acked:.2f}s after an ack in steady state"
                        f" (bound: {LIVENESS_BOUND:g}s)",
                    )
                )
        elif p.jti in history.controls:
            if p.outcome == REVOKED:
                out.append(
                    Violation("healing", p.verifier, p.jti, p.at, "a never-revoked token refused")
                )
            elif p.outcome != OK and _should_accept(history, p.verifier, p.at, budget):
                out.append(
                    Violation(
                        "healing",
                        p.verifier,
                        p.jti,
                        p.at,
                        f"answered {p.outcome} {_since_heal(history, p.verifier, p.at)}"
                        f" (bound: budget"
                        f" {budget:g}s + {HEALING_SLACK:g}s)",
                    )
                )
    for verifier in sorted(history.verifiers()):
        for jti, acked in acks.items():
            final = last.get((verifier, jti))
            if final is None:
                out.append(Violation("lost", verifier, jti, acked, "never probed after the ack"))
            elif final.outcome != REVOKED:
                out.append(
                    Violation(
                        "lost",
                        verifier,
                        jti,
                        final.at,
                        f"last probe ({final.at - acked:.2f}s after the ack) answered"
                        f" {final.outcome}, not revoked",
                    )
                )
    return out


def _should_accept(history: History, verifier: str, at: float, budget: float) -> bool:
    """Outside every fault window that hits ``verifier`` and at least budget + 5 s after the
    last heal of one before ``at``."""
    heal: float | None = None
    for f in history.faults:
        if not f.hits(verifier):
            continue
        if f.start <= at and (f.end is None or f.end >= at):
            return False
        if f.end is not None and f.end <= at:
            heal = f.end if heal is None else max(heal, f.end)
    return heal is None or at > heal + budget + HEALING_SLACK


def _since_heal(history: History, verifier: str, at: float) -> str:
    ends = [f.end for f in history.faults if f.hits(verifier) and f.end is not None and f.end <= at]
    return f"{at - max(ends):.2f}s after the heal" if ends else "in steady state"


def assert_holds(history: History, *, budget: float, limit: int = 20) -> None:
    """Raise AssertionError listing the first ``limit`` violations, if any."""
    violations = check(history, budget=budget)
    if violations:
        # The first violation of each (rule, verifier, token): one line each, the worst first.
        first: dict[tuple[str, str, str], Violation] = {}
        for v in violations:
            first.setdefault((v.rule, v.verifier, v.jti), v)
        order = {"lost": 0, "safety": 1, "liveness": 2, "healing": 3}
        distinct = sorted(first.values(), key=lambda v: (order.get(v.rule, 9), v.at))
        lines = [str(v) for v in distinct[:limit]]
        more = len(distinct) - limit
        if more > 0:
            lines.append(f"… and {more} more")
        counts: dict[str, int] = {}
        for v in violations:
            counts[v.rule] = counts.get(v.rule, 0) + 1
        raise AssertionError(
            f"{len(violations)} violation(s) {counts}, {len(distinct)} distinct"
            " (rule, verifier, token), the first of each:\n" + "\n".join(lines)
        )


@dataclass(frozen=True, slots=True)
class Measures:
    """Figures of a run, for the test output and docs (not asserted)."""

    #: ack → every verifier refuses as revoked (the slowest verifier), seconds, per revocation
    refuse_after_ack: list[float]
    #: the same for the acks with no fault hitting any verifier within a second (steady state)
    refuse_steady: list[float]
    #: fault start → first unavailable answer (per verifier), seconds
    fail_closed_after: list[float]
    #: heal → first ok of a control token (per verifier, after the first heal), seconds
    reopen_after_heal: list[float]

    def describe(self) -> str:
        def fmt(xs: list[float]) -> str:
            if not xs:
                return "n/a"
            s = sorted(xs)
            return f"median {s[len(s) // 2]:.3f}s, max {s[-1]:.3f}s (n={len(s)})"

        return (
            f"ack→refused: {fmt(self.refuse_after_ack)}"
            f" (steady state: {fmt(self.refuse_steady)}); "
            f"fault→fail closed: {fmt(self.fail_closed_after)}; "
            f"heal→reopened: {fmt(self.reopen_after_heal)}"
        )


def measure(history: History) -> Measures:
    probes = sorted(history.probes, key=lambda p: p.at)
    verifiers = history.verifiers()
    first_refusal: dict[tuple[str, str], float] = {}
    for p in probes:
        acked = history.acks.get(p.jti)
        if acked is not None and p.outcome == REVOKED and p.at >= acked:
            first_refusal.setdefault((p.verifier, p.jti), p.at - acked)
    refuse: list[float] = []
    steady: list[float] = []
    for jti, acked in history.acks.items():
        firsts = [first_refusal.get((v, jti)) for v in verifiers]
        if firsts and all(f is not None for f in firsts):
            refuse.append(max(f for f in firsts if f is not None))
            if not any(history.in_fault(v, acked, acked + LIVENESS_BOUND) for v in verifiers):
                steady.append(refuse[-1])
    fail_closed: list[float] = []
    reopen: list[float] = []
    if history.faults:
        fault = history.faults[0]
        for v in sorted(v for v in verifiers if fault.hits(v)):
            first = next(
                (
                    p.at
                    for p in probes
                    if p.verifier == v and p.at >= fault.start and p.outcome == UNAVAILABLE
                ),
                None,
            )
            if first is not None:
                fail_closed.append(first - fault.start)
            if fault.end is not None:
                healed = fault.end
                first = next(
                    (
                        p.at
                        for p in probes
                        if p.verifier == v
                        and p.at >= healed
                        and p.jti in history.controls
                        and p.outcome == OK
                    ),
                    None,
                )
                if first is not None:
                    reopen.append(first - healed)
    return Measures(refuse, steady, fail_closed, reopen)


def state_digest(entries: Iterable[Revocation]) -> str:
    """An order-free hash of a revocation state (``RevocationSet.entries()``), to compare a
    verifier with the replay-from-zero oracle."""
    lines = sorted(f"{r.kind}|{r.value}|{r.not_before}|{r.expires_at}" for r in entries)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
