"""Client-registry events: wire-compatible with the tokenry.v1.Event envelope (pure, no sockets)."""

from __future__ import annotations

from tokenry.bus import codec
from tokenry.store import client_events


def test_round_trip() -> None:
    event = client_events.client_event("tkr", "svc-1", client_events.DELETED, 1_800_000_000.5)
    assert event.subject == "tkr.events.clients.deleted"
    decoded = client_events.decode_client_event(event.payload)
    assert decoded == client_events.ClientChanged("svc-1", client_events.DELETED, 0)


def test_relay_stamps_the_seq_and_keeps_the_change() -> None:
    event = client_events.client_event("tkr", "svc-1", client_events.CREATED, 1.0)
    stamped = codec.stamp_seq(event.payload, 42)  # what the relay does to every outbox row
    assert client_events.decode_client_event(stamped) == client_events.ClientChanged(
        "svc-1", client_events.CREATED, 42
    )


def test_a_verifier_sees_an_event_that_only_advances_its_sequence() -> None:
    event = client_events.client_event("tkr", "svc-1", client_events.CREATED, 1.0)
    decoded = codec.decode(codec.stamp_seq(event.payload, 7))
    assert decoded.seq == 7 and decoded.event_id == str(event.event_id)
    assert decoded.revocation is None and decoded.key is None


def test_other_events_are_not_client_events() -> None:
    from tokenry.core.revocations import Revocation, RevocationKind

    rev = Revocation(RevocationKind.JTI, "j", 0, 10)
    payload = codec.revocation_event(codec.Subjects("tkr"), rev, 1.0).payload
    assert client_events.decode_client_event(payload) is None
    assert client_events.decode_client_event(b"\xff\xff garbage") is None
