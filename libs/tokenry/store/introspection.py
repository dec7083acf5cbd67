"""PostgreSQL adapters of the introspection ports (:mod:`tokenry.flows.introspection`), shared
by the introspector and the HTTP gateway."""

from __future__ import annotations

from tokenry.core.renames import renamed
from tokenry.flows.introspection import OpaqueRecord
from tokenry.store import opaque_tokens
from tokenry.store.revocation_checks import RevocationChecks

__all__ = ["StoreOpaqueRecords", "StoreRevocationCheck"]


class StoreOpaqueRecords:
    """OpaqueRecords port over the issuer's ``opaque_tokens`` table (lookup by SHA-256)."""

    def __init__(self, reader: opaque_tokens.IntrospectionReader, issuer_url: str) -> None:
        self._reader = reader
        self._issuer = issuer_url

    async def find(self, digest: bytes) -> OpaqueRecord | None:
        row = await self._reader.get(digest)
        if row is None:
            return None
        return OpaqueRecord(
            kind=row.kind,
            jti=row.jti,
            gid=row.gid,
            client_id=row.client_id,
            subject=row.subject,
            scope=" ".join(row.scopes),
            # A refresh token is for the client that holds it (RFC 6749 §1.5).
            audiences=row.audiences if row.kind == "access" else (row.client_id,),
            issuer=self._issuer,
            issued_at=row.issued_at,
            expires_at=row.expires_at,
            # Revoked by its row or by any revocation rule (one query); a spent refresh token
            # is dead too, even inside the issuer's retry grace.
            revoked=row.revoked or row.used_at is not None,
            act=row.act,
        )


class StoreRevocationCheck:
    """RevocationCheck port: PostgreSQL, never the event-fed state (docs/spec.md §4.5)."""

    def __init__(self, checks: RevocationChecks) -> None:
        self._checks = checks

    async def revoked(
        self, jti: str, gid: str | None, sub: str | None, client_id: str | None, iat: float
    ) -> bool:
        kind = await self._checks.revoked_kind(
            jti=jti, gid=gid, subject=sub, client_id=client_id, issued_at=int(iat)
        )
        return kind is not None


# ``StoreOpaqueTokens`` until issue 12 item 9 (``store.presented_tokens.StoreOpaqueTokens`` is the
# revocation side's); the old name resolves for one release.
__getattr__ = renamed(__name__, {"StoreOpaqueTokens": ("StoreOpaqueRecords", StoreOpaqueRecords)})
