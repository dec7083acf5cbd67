"""Revocation use cases: authorise the caller, record the revocation and its event atomically."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tokenry.bus import codec
from tokenry.bus.codec import Subjects
from tokenry.core.client_secrets import Pepper
from tokenry.core.clientauth import ClientCredentials, ClientLookup, authenticate
from tokenry.core.clients import ADMIN_SCOPE, MAX_ACCESS_TOKEN_TTL
from tokenry.core.clock import Clock
from tokenry.core.errors import InsufficientScope, InvalidRequest
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.store.revocations import RevocationStore

# Leeway on top of the maximum token lifetime: verifiers accept exp up to their clock leeway.
EXPIRY_LEEWAY = 60
MAX_REASON = 200
# jti is base64url in Tokenry's tokens; allow any printable ASCII from other issuers, bounded.
_JTI = re.compile(r"[\x21-\x7e]{1,255}")


@dataclass(frozen=True, slots=True)
class RevokeJti:
    credentials: ClientCredentials
    jti: str
    reason: str
    expires_at: int  # 0 = unknown


class RevocationHandlers:
    def __init__(
        self,
        *,
        clients: ClientLookup,
        peppers: dict[str, Pepper],
        store: RevocationStore,
        subjects: Subjects,
        clock: Clock,
    ) -> None:
        self._clients = clients
        self._peppers = peppers
        self._store = store
        self._subjects = subjects
        self._clock = clock

    async def revoke_jti(self, req: RevokeJti) -> int:
        """Revoke one jti; returns the seq of its event once committed (never waits on NATS)."""
        client = await authenticate(req.credentials, self._clients, self._peppers)
        if ADMIN_SCOPE not in client.scopes:
            raise InsufficientScope(f"revoking by jti needs {ADMIN_SCOPE}")
        if not _JTI.fullmatch(req.jti):
            raise InvalidRequest("jti must be 1-255 printable ASCII characters")
        if len(req.reason) > MAX_REASON:
            raise InvalidRequest(f"reason must be at most {MAX_REASON} characters")
        now = self._clock.now()
        latest = int(now) + MAX_ACCESS_TOKEN_TTL + EXPIRY_LEEWAY
        if req.expires_at < 0:
            raise InvalidRequest("expires_at must be a unix time in seconds, or 0 if unknown")
        # SPEC §4.7: remembered until the token's own exp; the global maximum when unknown.
        # A caller-supplied exp beyond what any token can live is capped, not trusted.
        expires_at = min(req.expires_at, latest) if req.expires_at else latest
        rev = Revocation(RevocationKind.JTI, req.jti, 0, expires_at + EXPIRY_LEEWAY, req.reason)
        event = codec.revocation_event(self._subjects, rev, now)
        return await self._store.revoke(rev, client.client_id, event)
