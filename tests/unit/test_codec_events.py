"""The event and snapshot wire formats as pure functions (no sockets)."""

from __future__ import annotations

import pytest

from tokenry.bus import codec
from tokenry.bus.codec import KeyHint, Subjects
from tokenry.bus.errors import MalformedSnapshot
from tokenry.core.revocations import Revocation, RevocationKind, SnapshotBatch
from tokenry.v1 import events_pb2, revocation_pb2

SUBJECTS = Subjects("tk")


@pytest.mark.parametrize("kind", list(RevocationKind))
def test_revocation_event_roundtrip_with_seq_and_actor(kind: RevocationKind) -> None:
    rev = Revocation(kind, "value-1", 17, 99, "lost laptop")
    event = codec.revocation_event(SUBJECTS, rev, 1_700_000_000.5, "00-trace", actor="admin")
    assert event.subject == f"tk.events.revocation.{kind.value}"
    assert event.traceparent == "00-trace"
    decoded = codec.decode(codec.stamp_seq(event.payload, 42))
    assert decoded.seq == 42
    assert decoded.event_id == str(event.event_id)
    assert decoded.revocation == rev
    assert decoded.actor == "admin"
    assert decoded.occurred_at == pytest.approx(1_700_000_000.5)
    assert codec.kind_to_pb(kind) != events_pb2.REVOCATION_KIND_UNSPECIFIED
    assert codec.kind_to_pb(None) == events_pb2.REVOCATION_KIND_UNSPECIFIED


def test_key_event_roundtrip() -> None:
    event = codec.key_event(SUBJECTS, KeyHint("k1", "ES256", "revoked"), 1.0)
    assert event.subject == "tk.events.keys.revoked"
    decoded = codec.decode(codec.stamp_seq(event.payload, 3))
    assert decoded.key == KeyHint("k1", "ES256", "revoked") and decoded.revocation is None


def test_garbage_is_undecodable() -> None:
    with pytest.raises(codec.UndecodableEvent):
        codec.decode(b"\xff\xff\xff")
    with pytest.raises(codec.UndecodableEvent):
        codec.decode_heartbeat(b"\xff\xff\xff")


def test_unknown_revocation_kind_is_undecodable() -> None:
    env = events_pb2.Event(seq=1, revoked=events_pb2.Revoked(kind=77, value="x"))
    with pytest.raises(codec.UndecodableEvent):
        codec.decode(env.SerializeToString())


def test_an_event_of_a_newer_producer_still_advances_the_sequence() -> None:
    decoded = codec.decode(events_pb2.Event(event_id="e", seq=9).SerializeToString())
    assert decoded.seq == 9 and decoded.revocation is None and decoded.key is None


def test_heartbeat_roundtrip() -> None:
    head, sent = codec.decode_heartbeat(codec.heartbeat(1234, 1_700_000_000.25, "relay-1"))
    assert head == 1234 and sent == pytest.approx(1_700_000_000.25)


def test_snapshot_message_roundtrip() -> None:
    batch = SnapshotBatch.empty()
    for i in range(5):
        batch.add("jti", f"j{i}", 0, 100 + i)
    batch.add("grant", "g", 0, 7)
    batch.add("subject", "alice", 3, 8)
    batch.add("client", "svc", 4, 9)
    msg = codec.snapshot_message(77, batch, last=True, total=8)
    wire = revocation_pb2.RevocationSnapshot.FromString(msg.SerializeToString())
    assert wire.seq == 77 and wire.last and wire.total == 8
    assert codec.snapshot_batch(wire) == batch
    # total is only meaningful on the last message
    assert codec.snapshot_message(77, batch).total == 0


def test_snapshot_with_ragged_columns_is_refused() -> None:
    msg = revocation_pb2.RevocationSnapshot(seq=1, jtis=["a", "b"], jti_expires_at=[1])
    with pytest.raises(MalformedSnapshot):
        codec.snapshot_batch(msg)
