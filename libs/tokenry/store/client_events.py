"""The wire format of client-registry events, as pure functions (no sockets).

Subject ``<prefix>.events.clients.<change>``; payload a ``tokenry.v1.ClientEvent``, which is
wire-compatible with the ``tokenry.v1.Event`` envelope (same fields 1-3, the change as field
20). So the relay can stamp its seq like any event (``bus.codec.stamp_seq`` keeps unknown
fields) and a verifier decoding it as an Event just advances its sequence.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from tokenry.core.events import OutboxEvent
from tokenry.v1 import clients_pb2

CREATED: Final = "created"
UPDATED: Final = "updated"
DELETED: Final = "deleted"
_TO_PB: Final = {
    CREATED: clients_pb2.CLIENT_CHANGE_CREATED,
    UPDATED: clients_pb2.CLIENT_CHANGE_UPDATED,
    DELETED: clients_pb2.CLIENT_CHANGE_DELETED,
}
_FROM_PB: Final = {v: k for k, v in _TO_PB.items()}


@dataclass(frozen=True, slots=True)
class ClientChanged:
    client_id: str
    change: str
    seq: int = 0


def subject(prefix: str, change: str) -> str:
    """``prefix`` is the deployment's subject prefix (``Subjects.prefix``)."""
    return f"{prefix}.events.clients.{change}"


def wildcard(prefix: str) -> str:
    return f"{prefix}.events.clients.>"


def client_event(prefix: str, client_id: str, change: str, now: float) -> OutboxEvent:
    event_id = uuid.uuid4()
    ts = Timestamp()
    ts.FromNanoseconds(int(now * 1e9))
    env = clients_pb2.ClientEvent(
        event_id=str(event_id),
        occurred_at=ts,
        client_changed=clients_pb2.ClientChanged(client_id=client_id, change=_TO_PB[change]),
    )
    return OutboxEvent(event_id, subject(prefix, change), env.SerializeToString())


def decode_client_event(data: bytes) -> ClientChanged | None:
    """The change an event carries, or None when it is not a client event."""
    try:
        env = clients_pb2.ClientEvent.FromString(data)
    except Exception:  # protobuf raises DecodeError and friends
        return None
    if not env.HasField("client_changed"):
        return None
    change = _FROM_PB.get(env.client_changed.change)
    if change is None or not env.client_changed.client_id:
        return None
    return ClientChanged(env.client_changed.client_id, change, env.seq)
