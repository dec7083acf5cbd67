"""The active signing key for an issuer: read from PostgreSQL, opened with the KEK, cached."""

from __future__ import annotations

import logging

from tokenry.core.errors import TemporarilyUnavailable
from tokenry.core.keywrap import Kek, open_sealed
from tokenry.core.signing import SigningKey, private_key_from_der
from tokenry.store.keys import KeyStore

log = logging.getLogger(__name__)


class ActiveKeys:
    """The active access-token key, decrypted once and re-checked periodically.

    The issuer never signs with a key that is not active in the database (SPEC §5).
    """

    def __init__(self, store: KeyStore, kek: Kek, alg: str) -> None:
        self._store = store
        self._kek = kek
        self._alg = alg
        self._key: SigningKey | None = None

    def current(self) -> SigningKey:
        if self._key is None:
            raise TemporarilyUnavailable("no active signing key yet")
        return self._key

    async def refresh(self) -> None:
        record = await self._store.active("access", self._alg)
        if record is None:
            self._key = None
            return
        if self._key is not None and self._key.kid == record.kid:
            return
        if record.kek_id != self._kek.id:
            log.error("active key %s is sealed under KEK %s, not ours", record.kid, record.kek_id)
            self._key = None
            return
        der = open_sealed(self._kek, record.kid, record.private_key_sealed)
        self._key = SigningKey(record.kid, record.alg, private_key_from_der(der))
        log.info("signing with key %s (%s)", record.kid, record.alg)
