"""Subject and client revocation watermarks still in the future, in memory, so the issuance hot
path needs no database round trip: no token is minted that would be born revoked (docs/spec.md §4:
``temporarily_unavailable``, the client retries).

Raised by the event stream (the issuer's listener) and reloaded periodically from
``tokenry.store.ports.WatermarkSource``. (The client registry cache,
:class:`tokenry.core.client_cache.CachedClients`, is shared with the other services.)
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenry.core.errors import TemporarilyUnavailable


class Watermarks:
    """``(kind, value) -> not_before`` for subject/client revocations not yet behind us."""

    def __init__(self) -> None:
        self._subject: dict[str, int] = {}
        self._client: dict[str, int] = {}
        #: True while any mark is held. With none (the usual case) the issuance hot path skips
        #: :meth:`check`, whose call is most of its cost; check() alone stays complete.
        self.held = False

    def raise_to(self, kind: str, value: str, not_before: int) -> None:
        table = self._subject if kind == "subject" else self._client
        if kind not in ("subject", "client"):
            return
        if not_before > table.get(value, 0):
            table[value] = not_before
            self.held = True

    def load(self, marks: Iterable[tuple[str, str, int]], now: float) -> None:
        """Merge a reload from PostgreSQL and forget marks that are behind ``now``."""
        for kind, value, not_before in marks:
            self.raise_to(kind, value, not_before)
        for table in (self._subject, self._client):
            for value in [v for v, nb in table.items() if nb <= now]:
                del table[value]
        self.held = bool(self._subject or self._client)

    def check(self, subject: str, client_id: str, now: float) -> None:
        """Raise ``TemporarilyUnavailable`` if a token minted now would be born revoked.

        A token with ``iat = int(now)`` is revoked when ``iat < not_before`` (docs/spec.md §4).
        """
        iat = int(now)
        if (self._subject and iat < self._subject.get(subject, 0)) or (
            self._client and iat < self._client.get(client_id, 0)
        ):
            raise TemporarilyUnavailable(
                "a revocation of this subject or client is taking effect; retry in a few seconds"
            )
