"""What each event does to the introspector's caches, from an outbox row or a NATS message
(the same bytes the producers write, encoded by the real codec)."""

from __future__ import annotations

import asyncio
import uuid

from tokenry.bus import codec
from tokenry.bus.codec import KeyHint, Subjects
from tokenry.core.client_cache import CachedClients
from tokenry.core.clients import Client
from tokenry.core.clock import FakeClock
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.jose import JwksCache
from tokenry.services.introspector.cache import PositiveCache
from tokenry.services.introspector.invalidation import CacheInvalidator
from tokenry.store.outbox import OutboxRow

SUBJECTS = Subjects("tk")


class NoClients:
    async def get_client(self, client_id: str) -> Client | None:
        return None


class NoKeys:
    async def fetch(self) -> tuple[str, int]:
        return '{"keys": []}', 0


def setup() -> tuple[FakeClock, PositiveCache, CacheInvalidator, JwksCache]:
    clock = FakeClock()
    cache = PositiveCache(clock)
    jwks = JwksCache(NoKeys(), clock)
    invalidator = CacheInvalidator("tk", cache, CachedClients(NoClients(), clock), jwks)
    return clock, cache, invalidator, jwks


def token(n: int, iat: float, sub: str = "alice") -> dict[str, object]:
    return {
        "jti": f"j{n}",
        "gid": f"g{n}",
        "sub": sub,
        "client_id": "demo",
        "iat": int(iat),
        "exp": iat + 600,
    }


def row(seq: int, subject: str, payload: bytes) -> OutboxRow:
    return OutboxRow(seq, uuid.uuid4(), subject, payload, None)


def revoked(kind: RevocationKind, value: str, not_before: int = 0) -> OutboxRow:
    event = codec.revocation_event(
        SUBJECTS, Revocation(kind, value, not_before, 2_000_000_000), 1_800_000_000.0
    )
    return row(1, event.subject, event.payload)


def test_an_outbox_row_revoking_a_subject_applies_its_watermark() -> None:
    clock, cache, invalidator, _ = setup()
    now = int(clock.now())
    cache.put(b"before", token(1, now - 5))
    cache.put(b"after", token(2, now + 3))
    invalidator.apply([revoked(RevocationKind.SUBJECT, "alice", not_before=now + 2)])
    assert cache.get(b"before") is None
    assert cache.get(b"after") is not None


def test_a_nats_message_and_an_outbox_row_do_the_same() -> None:
    """The relay stamps the seq into the payload it publishes; both decode the same way."""
    clock, cache, invalidator, _ = setup()
    cache.put(b"a", token(1, clock.now()))
    cache.put(b"b", token(2, clock.now()))
    outbox = revoked(RevocationKind.JTI, "j1")
    invalidator.apply([outbox])
    invalidator.event(
        outbox.subject, codec.stamp_seq(revoked(RevocationKind.GRANT, "g2").payload, 7)
    )
    assert cache.get(b"a") is None and cache.get(b"b") is None


async def test_a_new_key_event_refetches_the_key_set() -> None:
    """Key events are hints to refetch (docs/spec.md §4.6): without it, a key published after the
    last periodic fetch made its first tokens introspect as inactive (unknown kid)."""
    clock, _, invalidator, jwks = setup()
    before = jwks.fetches_ok + jwks.fetches_failed
    event = codec.key_event(SUBJECTS, KeyHint("k9", "ES256", "pending"), clock.now())
    invalidator.apply([row(1, event.subject, event.payload)])
    await asyncio.sleep(0)  # the refetch runs on the loop, off the event path
    await asyncio.sleep(0)
    assert jwks.fetches_ok + jwks.fetches_failed == before + 1


async def test_a_revoked_key_is_dropped_at_once_and_its_tokens_forgotten() -> None:
    clock, cache, invalidator, jwks = setup()
    cache.put(b"signed", token(1, clock.now()), kid="k1")
    cache.put(b"other", token(2, clock.now()), kid="k2")
    for state in ("pending", "active", "retiring"):
        event = codec.key_event(SUBJECTS, KeyHint("k1", "ES256", state), clock.now())
        invalidator.apply([row(1, event.subject, event.payload)])
        assert cache.get(b"signed") is not None, state
    event = codec.key_event(SUBJECTS, KeyHint("k1", "ES256", "revoked"), clock.now())
    invalidator.apply([row(2, event.subject, event.payload)])
    assert jwks.is_revoked("k1")
    assert cache.get(b"signed") is None
    assert cache.get(b"other") is not None


def test_client_events_and_garbage_leave_the_answers_alone() -> None:
    clock, cache, invalidator, _ = setup()
    cache.put(b"a", token(1, clock.now()))
    deleted = codec.ClientChanged("demo", codec.CLIENT_DELETED)
    change = codec.client_event(codec.Subjects("tk"), deleted, clock.now())
    invalidator.apply([row(1, change.subject, change.payload), row(2, "tk.events.x", b"\xff\x00")])
    assert cache.get(b"a") is not None


def test_a_reset_forgets_everything() -> None:
    clock, cache, invalidator, _ = setup()
    cache.put(b"a", token(1, clock.now()))
    invalidator.reset()
    assert len(cache) == 0


def test_a_notification_holds_the_cache_until_the_feed_has_caught_up() -> None:
    clock, cache, invalidator, _ = setup()
    cache.put(b"a", token(1, clock.now()))
    invalidator.notified()
    assert cache.get(b"a") is None
    invalidator.caught_up()
    assert cache.get(b"a") is not None
