"""The published JWKS read from PostgreSQL: a ``tokenry.jose.JwksSource`` for the services.

Tokenry's own services verify JWTs against the keys in ``signing_keys`` rather than the event-fed
state (docs/spec.md §4.5): the revocation service for RFC 7009, the issuer for token exchange. They
put one :class:`tokenry.jose.JwksCache` (single-flight, rate-limited unknown-kid refresh, monotonic
TTL) over this source, so a burst of unknown kids costs one query, not one each.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from tokenry.core.renames import renamed

__all__ = ["PublishedKeyReader", "StoreJwksSource"]


class PublishedKeyReader(Protocol):
    """What the source reads (``tokenry.store.keys.KeyStore`` fits)."""

    async def published(self) -> tuple[list[dict[str, Any]], int]:
        """Every published public JWK and the event seq the set is current to."""
        ...


class StoreJwksSource:
    """The published JWK Set (pending, active, retiring keys) and its event seq, per fetch."""

    __slots__ = ("_keys",)

    def __init__(self, keys: PublishedKeyReader) -> None:
        self._keys = keys

    async def fetch(self) -> tuple[str, int]:
        """One read of the published keys (one repeatable-read snapshot)."""
        jwks, seq = await self._keys.published()
        return json.dumps({"keys": jwks}), seq


# ``PublishedKeys`` named this port until issue 12 item 9 (``tokenry.flows.PublishedKeys`` is the
# key cache); the old name resolves for one release.
__getattr__ = renamed(__name__, {"PublishedKeys": ("PublishedKeyReader", PublishedKeyReader)})
