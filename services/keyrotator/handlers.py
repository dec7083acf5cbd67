"""Key rotator use cases over the store ports."""

from __future__ import annotations

import json
import logging

from tokenry.bus import codec
from tokenry.bus.codec import KeyHint, Subjects
from tokenry.core.clock import Clock
from tokenry.core.keywrap import Kek, seal
from tokenry.core.signing import generate_private_key, private_key_to_der, public_jwk
from tokenry.store.keys import KeyRecord, KeyStore

log = logging.getLogger(__name__)


class KeyRotatorHandlers:
    def __init__(
        self, *, keys: KeyStore, kek: Kek, subjects: Subjects, clock: Clock, alg: str
    ) -> None:
        self._keys = keys
        self._kek = kek
        self._subjects = subjects
        self._clock = clock
        self._alg = alg

    async def ensure_active_key(self, use: str = "access") -> str:
        """Create and activate a key for ``use`` if none is active; returns the active kid."""
        current = await self._keys.active(use, self._alg)
        if current is not None:
            return current.kid
        private = generate_private_key(self._alg)
        jwk = public_jwk(private, self._alg)
        kid = str(jwk["kid"])
        record = KeyRecord(
            kid=kid,
            alg=self._alg,
            use=use,
            state="active",
            public_jwk=jwk,
            private_key_sealed=seal(self._kek, kid, private_key_to_der(private)),
            kek_id=self._kek.id,
        )
        event = codec.key_event(
            self._subjects, KeyHint(kid, self._alg, "active"), self._clock.now()
        )
        if await self._keys.insert_active(record, event):
            log.info("created active %s key %s for %s tokens", self._alg, kid, use)
            return kid
        # Another replica won the race; use its key.
        winner = await self._keys.active(use, self._alg)
        if winner is None:
            raise RuntimeError("no active key after a lost creation race")
        return winner.kid

    async def jwks(self) -> tuple[str, int]:
        """The JWK Set (RFC 7517 §5) and the event seq it is current to."""
        keys, seq = await self._keys.published()
        return json.dumps({"keys": keys}, separators=(",", ":")), seq
