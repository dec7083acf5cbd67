"""The introspection port: what the staleness fallback (docs/spec.md §4.4) asks when local state is
stale.

RFC 7662 §2.2: an introspection response says whether the token is ``active`` and, when it is,
carries the token's claims. The verifier only needs that, so the port is one method. An adapter
for the Tokenry introspector service (gRPC, authenticated as a client holding
``tokenry:introspect``) or for any RFC 7662 endpoint implements it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["Introspector"]


class Introspector(Protocol):
    """Asks the authorization server whether a token is active (RFC 7662)."""

    async def introspect(self, token: str) -> Mapping[str, Any] | None:
        """The token's claims if it is active, None if it is not.

        The claims must include the JWT claims the verifier checks (``iss``, ``aud``, ``exp``,
        ``iat``, ``jti``): when the verifier cannot check the token itself (no keys), it
        validates them exactly like a locally verified token's.

        Raises:
            Exception: the question could not be answered (network, authentication, timeout);
                the verifier answers ``introspection_failed`` (UNAVAILABLE), never "active".
        """
        ...
