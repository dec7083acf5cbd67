"""An event ready for the outbox: encoded by the bus codec, stored by the producer's transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """``payload`` is the encoded envelope without its seq (assigned at commit)."""

    event_id: uuid.UUID
    subject: str
    payload: bytes
    traceparent: str | None = None
