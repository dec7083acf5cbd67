"""The keys an issuer signs with: read from PostgreSQL, opened with the KEK ring, cached.

docs/spec.md §5: issuers pick up a newly active key from the key event, with a periodic check as
backup, and never sign with a key that is not active. :class:`ActiveKeys` does both halves:

- :meth:`ActiveKeys.refresh` (the periodic check) reads the active key of each key set, and its
  pending successor, from PostgreSQL. The successor is opened ahead of time, so a switch costs
  no database round trip and no decryption on the token path.
- :meth:`ActiveKeys.on_key_event` (wired to the key events) switches to the successor the moment
  the event says it is active, and drops a key the moment an event says it stopped signing
  (retiring, retired, revoked) — then confirms against PostgreSQL. The rotator publishes the
  activation before the demotion in each transaction, so the switch leaves no gap.

A key seen leaving the active state is never used again, even if a slower, older read of the
database still names it active.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from tokenry.core.errors import TemporarilyUnavailable
from tokenry.core.keylifecycle import KeySet
from tokenry.core.keywrap import Kek, KekRing, KeyUnwrapError
from tokenry.core.signing import SigningKey, load_signing_key
from tokenry.store.keys import KeyRecord, KeyStore

log = logging.getLogger(__name__)

# How many times a refresh re-reads when key events arrive while it reads.
_MAX_REREADS = 3


class ActiveKeys:
    """The active signing key of each wanted key set, decrypted once.

    Args:
        store: where the keys live.
        kek: the KEK, or the ring of KEKs during a KEK change (docs/keys.md).
        alg: the access-token algorithm (key set ``access:<alg>``).
        id_token_algs: ID-token algorithms to hold keys for (key sets ``id:<alg>``).
    """

    def __init__(
        self,
        store: KeyStore,
        kek: Kek | KekRing,
        alg: str,
        *,
        id_token_algs: Sequence[str] = (),
    ) -> None:
        self._store = store
        self._ring = KekRing.of(kek)
        self._access = KeySet("access", alg)
        self._id_default = KeySet("id", id_token_algs[0]) if id_token_algs else None
        self._keysets = (self._access, *(KeySet("id", a) for a in id_token_algs))
        self._active: dict[KeySet, SigningKey] = {}
        self._successor: dict[KeySet, SigningKey] = {}
        self._opened: dict[str, SigningKey] = {}  # kid -> key, so each is decrypted once
        self._ended: set[str] = set()  # kids seen leaving the active state: never again
        self._generation = 0  # bumped by every key event
        self._lock = asyncio.Lock()

    @property
    def keysets(self) -> tuple[KeySet, ...]:
        return self._keysets

    def current(self, use: str = "access", alg: str | None = None) -> SigningKey:
        """The active key for ``use`` (and ``alg``; default: the configured one).

        Raises:
            TemporarilyUnavailable: no active key is known for that key set (yet).
        """
        if alg is not None:
            keyset = KeySet(use, alg)
        elif use == "access":
            keyset = self._access
        elif self._id_default is not None:
            keyset = self._id_default
        else:
            raise TemporarilyUnavailable("no ID-token signing key is configured")
        key = self._active.get(keyset)
        if key is None:
            raise TemporarilyUnavailable(f"no active {keyset} signing key yet")
        return key

    async def on_key_event(self, kid: str, state: str) -> None:
        """A key event (``tokenry.events.keys.<state>``): act on it at once, then confirm.

        Events are hints (docs/spec.md §4.6): the only keys ever used are ones read from PostgreSQL
        and opened with our KEK; an event can only make us switch to the already-loaded successor
        or stop using a key.
        """
        self._generation += 1
        if state == "active":
            for keyset, successor in list(self._successor.items()):
                if successor.kid == kid and kid not in self._ended:
                    old = self._active.get(keyset)
                    if old is not None and old.kid != kid:
                        self._ended.add(old.kid)
                    self._active[keyset] = successor
                    del self._successor[keyset]
                    log.info("signing %s with %s (key event)", keyset, kid)
        elif state in ("retiring", "retired", "revoked"):
            self._ended.add(kid)
            self._opened.pop(kid, None)
            for keyset, key in list(self._active.items()):
                if key.kid == kid:
                    del self._active[keyset]
                    log.warning("stopped signing %s with %s: it is %s", keyset, kid, state)
            for keyset, key in list(self._successor.items()):
                if key.kid == kid:
                    del self._successor[keyset]
        await self.refresh()

    async def refresh(self) -> None:
        """Re-read the active keys and their successors (the periodic check, docs/spec.md §5)."""
        async with self._lock:
            for _ in range(_MAX_REREADS):
                generation = self._generation
                records = await self._store.signing_candidates(self._keysets)
                if generation == self._generation:
                    break
            self._apply(records)

    def _apply(self, records: list[KeyRecord]) -> None:
        active: dict[KeySet, SigningKey] = {}
        successor: dict[KeySet, SigningKey] = {}
        for record in records:
            if record.kid in self._ended:
                continue  # an older read; that key stopped signing
            key = self._open(record)
            if key is None:
                continue
            keyset = KeySet(record.use, record.alg)
            (active if record.state == "active" else successor)[keyset] = key
        for keyset in self._keysets:
            old = self._active.get(keyset)
            new = active.get(keyset)
            if new is None:
                if old is not None:
                    log.warning("no active %s key any more; not signing with %s", keyset, old.kid)
                    self._active.pop(keyset)
            elif old is None or old.kid != new.kid:
                if old is not None:
                    self._ended.add(old.kid)
                self._active[keyset] = new
                log.info("signing %s with %s", keyset, new.kid)
            if keyset in successor:
                self._successor[keyset] = successor[keyset]
            else:
                self._successor.pop(keyset, None)
        keep = {k.kid for k in (*self._active.values(), *self._successor.values())}
        self._opened = {kid: key for kid, key in self._opened.items() if kid in keep}

    def _open(self, record: KeyRecord) -> SigningKey | None:
        known = self._opened.get(record.kid)
        if known is not None:
            return known
        try:
            der = self._ring.open(record.kid, record.kek_id, record.private_key_sealed)
            key = load_signing_key(record.kid, record.alg, der)
        except (KeyUnwrapError, ValueError) as exc:
            log.error("cannot use key %s: %s", record.kid, exc)
            return None
        self._opened[record.kid] = key
        return key
