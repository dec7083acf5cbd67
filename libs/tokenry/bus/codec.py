"""The wire format of events, as pure functions (no sockets): domain <-> tokenry.v1.Event.

One envelope for every producer: revocations, key state changes and client-registry changes
are each a ``payload`` of ``tokenry.v1.Event``, and :class:`Subjects` names every subject.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from tokenry.bus.errors import MalformedSnapshot
from tokenry.bus.errors import UndecodableEvent as UndecodableEvent  # noqa: PLC0414 - re-export
from tokenry.core.events import OutboxEvent
from tokenry.core.renames import renamed
from tokenry.core.revocations import Revocation, RevocationKind, SnapshotBatch
from tokenry.v1 import events_pb2, revocation_pb2

_KIND_TO_PB: Final = {
    RevocationKind.JTI: events_pb2.REVOCATION_KIND_JTI,
    RevocationKind.GRANT: events_pb2.REVOCATION_KIND_GRANT,
    RevocationKind.SUBJECT: events_pb2.REVOCATION_KIND_SUBJECT,
    RevocationKind.CLIENT: events_pb2.REVOCATION_KIND_CLIENT,
}
_PB_TO_KIND: Final = {v: k for k, v in _KIND_TO_PB.items()}


def kind_to_pb(kind: RevocationKind | None) -> events_pb2.RevocationKind:
    """The protobuf enum of a revocation kind (UNSPECIFIED for None)."""
    return events_pb2.REVOCATION_KIND_UNSPECIFIED if kind is None else _KIND_TO_PB[kind]


KEY_STATES: Final = {
    "pending": events_pb2.KEY_STATE_PENDING,
    "active": events_pb2.KEY_STATE_ACTIVE,
    "retiring": events_pb2.KEY_STATE_RETIRING,
    "retired": events_pb2.KEY_STATE_RETIRED,
    "revoked": events_pb2.KEY_STATE_REVOKED,
}
_PB_TO_KEY_STATE: Final = {v: k for k, v in KEY_STATES.items()}

#: Client-registry changes (``Subjects.client(change)``, ``ClientChanged.change``).
CLIENT_CREATED: Final = "created"
CLIENT_UPDATED: Final = "updated"
CLIENT_DELETED: Final = "deleted"
_CLIENT_CHANGES: Final = {
    CLIENT_CREATED: events_pb2.CLIENT_CHANGE_CREATED,
    CLIENT_UPDATED: events_pb2.CLIENT_CHANGE_UPDATED,
    CLIENT_DELETED: events_pb2.CLIENT_CHANGE_DELETED,
}
_PB_TO_CLIENT_CHANGE: Final = {v: k for k, v in _CLIENT_CHANGES.items()}


@dataclass(frozen=True, slots=True)
class Subjects:
    """Subject names under one prefix, so several deployments can share a NATS cluster."""

    prefix: str = "tokenry"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events.>"

    @property
    def heartbeat(self) -> str:
        return f"{self.prefix}.heartbeat"

    def revocation(self, kind: RevocationKind) -> str:
        return f"{self.prefix}.events.revocation.{kind.value}"

    def key(self, state: str) -> str:
        return f"{self.prefix}.events.keys.{state}"

    def client(self, change: str) -> str:
        """A client-registry change (``CLIENT_CREATED``, ``CLIENT_UPDATED``, ``CLIENT_DELETED``)."""
        return f"{self.prefix}.events.clients.{change}"

    @property
    def clients(self) -> str:
        return f"{self.prefix}.events.clients.>"


@dataclass(frozen=True, slots=True)
class KeyHint:
    """A key changed state: refetch the JWKS (never take key material from an event)."""

    kid: str
    alg: str
    state: str


@dataclass(frozen=True, slots=True)
class ClientChanged:
    """A client registration was created, updated or deleted: drop any cached copy."""

    client_id: str
    change: str


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    event_id: str
    seq: int
    occurred_at: float
    revocation: Revocation | None = None
    key: KeyHint | None = None
    actor: str = ""
    client: ClientChanged | None = None


def _envelope(now: float) -> tuple[uuid.UUID, events_pb2.Event]:
    event_id = uuid.uuid4()
    ts = Timestamp()
    ts.FromNanoseconds(int(now * 1e9))
    return event_id, events_pb2.Event(event_id=str(event_id), occurred_at=ts)


def revocation_event(
    subjects: Subjects,
    rev: Revocation,
    now: float,
    traceparent: str | None = None,
    actor: str = "",
) -> OutboxEvent:
    event_id, env = _envelope(now)
    env.revoked.CopyFrom(
        events_pb2.Revoked(
            kind=_KIND_TO_PB[rev.kind],
            value=rev.value,
            not_before=rev.not_before,
            expires_at=rev.expires_at,
            reason=rev.reason,
            actor=actor,
        )
    )
    return OutboxEvent(
        event_id, subjects.revocation(rev.kind), env.SerializeToString(), traceparent
    )


def key_event(
    subjects: Subjects, hint: KeyHint, now: float, traceparent: str | None = None
) -> OutboxEvent:
    event_id, env = _envelope(now)
    env.key_changed.CopyFrom(
        events_pb2.KeyChanged(kid=hint.kid, alg=hint.alg, state=KEY_STATES[hint.state])
    )
    return OutboxEvent(event_id, subjects.key(hint.state), env.SerializeToString(), traceparent)


def client_event(
    subjects: Subjects, change: ClientChanged, now: float, traceparent: str | None = None
) -> OutboxEvent:
    event_id, env = _envelope(now)
    env.client_changed.CopyFrom(
        events_pb2.ClientChanged(client_id=change.client_id, change=_CLIENT_CHANGES[change.change])
    )
    return OutboxEvent(
        event_id, subjects.client(change.change), env.SerializeToString(), traceparent
    )


def stamp_seq(payload: bytes, seq: int, occurred_at: float | None = None) -> bytes:
    """Set the outbox seq on a stored envelope (known only after the producer's commit) and,
    when given, ``occurred_at``: the row's write time on PostgreSQL's clock (migration 0008),
    which the relay knows and the producer, building the payload before its write, does not."""
    env = events_pb2.Event.FromString(payload)
    env.seq = seq
    if occurred_at is not None:
        env.occurred_at.FromNanoseconds(round(occurred_at * 1e9))
    return env.SerializeToString()


def decode(data: bytes) -> DecodedEvent:
    try:
        env = events_pb2.Event.FromString(data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise UndecodableEvent("not a tokenry.v1.Event") from exc
    occurred = env.occurred_at.ToNanoseconds() / 1e9
    which = env.WhichOneof("payload")
    if which == "revoked":
        kind = _PB_TO_KIND.get(env.revoked.kind)
        if kind is None:
            raise UndecodableEvent(f"unknown revocation kind {env.revoked.kind}")
        rev = Revocation(
            kind,
            env.revoked.value,
            env.revoked.not_before,
            env.revoked.expires_at,
            env.revoked.reason,
        )
        return DecodedEvent(
            env.event_id, env.seq, occurred, revocation=rev, actor=env.revoked.actor
        )
    if which == "key_changed":
        state = _PB_TO_KEY_STATE.get(env.key_changed.state, "unknown")
        hint = KeyHint(env.key_changed.kid, env.key_changed.alg, state)
        return DecodedEvent(env.event_id, env.seq, occurred, key=hint)
    if which == "client_changed":
        change = _PB_TO_CLIENT_CHANGE.get(env.client_changed.change)
        if change is not None and env.client_changed.client_id:
            client = ClientChanged(env.client_changed.client_id, change)
            return DecodedEvent(env.event_id, env.seq, occurred, client=client)
    # A newer producer's payload: still advances the sequence, changes nothing here.
    return DecodedEvent(env.event_id, env.seq, occurred)


def heartbeat(last_seq: int, now: float, publisher_id: str) -> bytes:
    ts = Timestamp()
    ts.FromNanoseconds(int(now * 1e9))
    return events_pb2.Heartbeat(
        last_seq=last_seq, sent_at=ts, publisher_id=publisher_id
    ).SerializeToString()


def decode_heartbeat(data: bytes) -> tuple[int, float]:
    """(last_seq, sent_at) of a heartbeat."""
    try:
        hb = events_pb2.Heartbeat.FromString(data)
    except Exception as exc:
        raise UndecodableEvent("not a tokenry.v1.Heartbeat") from exc
    return hb.last_seq, hb.sent_at.ToNanoseconds() / 1e9


# --- revocation snapshots (ListRevocations) ---------------------------------------------------


def snapshot_message(
    seq: int, batch: SnapshotBatch, *, last: bool = False, total: int = 0
) -> revocation_pb2.RevocationSnapshot:
    """One streamed message of a snapshot current to ``seq``."""
    msg = revocation_pb2.RevocationSnapshot(seq=seq, last=last, total=total if last else 0)
    msg.jtis.extend(batch.jtis)
    msg.jti_expires_at.extend(batch.jti_expires_at)
    msg.grant_ids.extend(batch.grant_ids)
    msg.grant_expires_at.extend(batch.grant_expires_at)
    for value, nbf, exp in batch.subjects:
        msg.subjects.add(value=value, not_before=nbf, expires_at=exp)
    for value, nbf, exp in batch.clients:
        msg.clients.add(value=value, not_before=nbf, expires_at=exp)
    return msg


def snapshot_batch(msg: revocation_pb2.RevocationSnapshot) -> SnapshotBatch:
    """The entries of one snapshot message as columns."""
    if len(msg.jtis) != len(msg.jti_expires_at) or len(msg.grant_ids) != len(msg.grant_expires_at):
        raise MalformedSnapshot("snapshot columns differ in length")
    return SnapshotBatch(
        jtis=list(msg.jtis),
        jti_expires_at=list(msg.jti_expires_at),
        grant_ids=list(msg.grant_ids),
        grant_expires_at=list(msg.grant_expires_at),
        subjects=[(w.value, w.not_before, w.expires_at) for w in msg.subjects],
        clients=[(w.value, w.not_before, w.expires_at) for w in msg.clients],
    )


# ``SnapshotError`` named MalformedSnapshot until issue 12 item 9 (the verifier's SnapshotError
# is another thing); the old name resolves for one release.
__getattr__ = renamed(
    __name__, {"SnapshotError": ("tokenry.bus.errors.MalformedSnapshot", MalformedSnapshot)}
)
