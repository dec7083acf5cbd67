"""Client-registry events: one tokenry.v1.Event envelope, encoded in bus/codec (pure, no sockets)."""

from __future__ import annotations

from tokenry.bus import codec
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.v1 import events_pb2

# What issuers before the one envelope wrote for a client deletion (a separate ClientEvent
# message: fields 1-3 as Event, the change as field 20), event id 0b6f2a8e-…, seq 42 stamped.
_LEGACY_DELETED = bytes.fromhex(
    "0a2430623666326138652d346130652d346637652d396135332d326435653264316337663130102a1a0c0880a4a7"
    "da061080cab5ee01a201090a057376632d311003"
)


def test_round_trip() -> None:
    change = codec.ClientChanged("svc-1", codec.CLIENT_DELETED)
    event = codec.client_event(codec.Subjects("tkr"), change, 1_800_000_000.5)
    assert event.subject == "tkr.events.clients.deleted"
    decoded = codec.decode(event.payload)
    assert decoded.client == codec.ClientChanged("svc-1", codec.CLIENT_DELETED)
    assert decoded.seq == 0 and decoded.event_id == str(event.event_id)


def test_subjects_name_client_changes() -> None:
    subjects = codec.Subjects("tkr")
    assert subjects.client(codec.CLIENT_CREATED) == "tkr.events.clients.created"
    assert subjects.clients == "tkr.events.clients.>"


def test_relay_stamps_the_seq_and_keeps_the_change() -> None:
    change = codec.ClientChanged("svc-1", codec.CLIENT_CREATED)
    event = codec.client_event(codec.Subjects("tkr"), change, 1.0)
    stamped = codec.stamp_seq(event.payload, 42)  # what the relay does to every outbox row
    decoded = codec.decode(stamped)
    assert decoded.client == codec.ClientChanged("svc-1", codec.CLIENT_CREATED)
    assert decoded.seq == 42


def test_a_verifier_sees_an_event_that_only_advances_its_sequence() -> None:
    change = codec.ClientChanged("svc-1", codec.CLIENT_CREATED)
    event = codec.client_event(codec.Subjects("tkr"), change, 1.0)
    decoded = codec.decode(codec.stamp_seq(event.payload, 7))
    assert decoded.seq == 7 and decoded.event_id == str(event.event_id)
    assert decoded.revocation is None and decoded.key is None


def test_rows_written_before_the_one_envelope_still_decode() -> None:
    # Outbox rows and stream messages of the previous envelope keep their meaning.
    decoded = codec.decode(_LEGACY_DELETED)
    assert decoded.client == codec.ClientChanged("svc-1", codec.CLIENT_DELETED)
    assert decoded.seq == 42 and decoded.event_id == "0b6f2a8e-4a0e-4f7e-9a53-2d5e2d1c7f10"
    assert decoded.occurred_at == 1_800_000_000.5
    # And the new encoding is byte for byte the old one (same field numbers).
    env = events_pb2.Event.FromString(_LEGACY_DELETED)
    assert env.SerializeToString() == _LEGACY_DELETED
    assert env.WhichOneof("payload") == "client_changed"


def test_other_events_are_not_client_events() -> None:
    rev = Revocation(RevocationKind.JTI, "j", 0, 10)
    payload = codec.revocation_event(codec.Subjects("tkr"), rev, 1.0).payload
    assert codec.decode(payload).client is None
    unknown = events_pb2.Event(event_id="e", seq=3)
    unknown.client_changed.client_id = "svc-1"  # change UNSPECIFIED: not a change we know
    assert codec.decode(unknown.SerializeToString()).client is None


def test_subjects_are_named_only_in_the_codec() -> None:
    # Client events once built their subjects with f-strings of their own (issue 12 item 4):
    # no f-string outside bus/codec.py spells an event or heartbeat subject.
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    found = []
    for base in (root / "libs" / "tokenry", root / "services"):
        for path in base.rglob("*.py"):
            if "v1" in path.relative_to(root).parts or path.name == "codec.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.JoinedStr):
                    text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                    if ".events." in text or ".heartbeat" in text:
                        found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not found, found


def test_events_watch_shows_client_changes() -> None:
    from tokenry.cli.events import describe, human

    change = codec.ClientChanged("svc-1", codec.CLIENT_CREATED)
    event = codec.client_event(codec.Subjects("tkr"), change, 1_800_000_000.0)
    data = describe(codec.decode(codec.stamp_seq(event.payload, 9)), 12)
    assert data["type"] == "client" and data["client_id"] == "svc-1"
    assert human(data).endswith("client svc-1 created")
