"""The refresh_token grant (RFC 6749 §6) with rotation, family revocation and the grace rule.

See :mod:`tokenry.core.refresh` for the rules. The presented token is read with ``lock=True``
inside the unit of work and stays locked for the whole decision (PostgreSQL: ``SELECT … FOR
UPDATE``), so concurrent refreshes of one token are serialised by the store: the first rotates,
the others see it spent inside the grace and get the same successor and the same access-token
claims. The winner is decided in the store, never in a process.
"""

from __future__ import annotations

import logging
from typing import Any

from tokenry.core import opaque
from tokenry.core.clients import Client
from tokenry.core.errors import InvalidGrant, InvalidRequest
from tokenry.core.grants import narrow_audiences, narrow_scopes
from tokenry.core.ids import new_jti
from tokenry.core.oidc import OPENID_SCOPE
from tokenry.core.refresh import (
    Outcome,
    RefreshState,
    access_token_of,
    decide,
    successor_of,
)
from tokenry.core.tokens import AccessToken
from tokenry.flows.deps import IssuerDeps, TokenRequest, token_format
from tokenry.flows.family import refresh_record, revoke_family
from tokenry.flows.minting import JWT, TokenResult, opaque_record
from tokenry.store.ports import UnitOfWork
from tokenry.store.records import REFRESH, GrantRecord, OpaqueTokenRecord

log = logging.getLogger(__name__)

__all__ = ["RefreshFlow"]


class RefreshFlow:
    def __init__(self, deps: IssuerDeps) -> None:
        self._d = deps

    async def refresh(self, client: Client, req: TokenRequest) -> TokenResult:
        d = self._d
        if not req.refresh_token:
            raise InvalidRequest("refresh_token is required")
        if opaque.kind_of(req.refresh_token) != opaque.REFRESH:
            raise InvalidGrant("invalid refresh token")
        token_hash = opaque.token_hash(req.refresh_token)
        reuse_gid: str | None = None
        async with d.transactions.transaction() as tx:
            row = await tx.get_token(token_hash, lock=True)
            if row is None or row.kind != REFRESH:
                raise InvalidGrant("invalid refresh token")
            grant = await tx.get_grant(row.gid)
            if grant is None:
                raise InvalidGrant("invalid refresh token")
            successor_used = False
            if row.successor_hash is not None:
                successor = await tx.get_token(row.successor_hash)
                successor_used = successor is None or successor.used_at is not None
            now = d.clock.now()
            state = RefreshState(
                client_id=row.client_id,
                expires_at=min(row.expires_at, grant.expires_at),
                revoked=row.revoked or grant.revoked,
                used_at=row.used_at,
                successor_used=successor_used,
            )
            # The retry grace is for confidential clients only (docs/spec.md §3): a public
            # client's spent token may be a copy, which must never get live tokens.
            grace = 0 if client.is_public else d.refresh_grace
            outcome = decide(state, client_id=client.client_id, now=now, grace=grace)
            if outcome is Outcome.INVALID:
                raise InvalidGrant("the refresh token is expired, revoked or not yours")
            if outcome is Outcome.REPLAY:
                minted_jti = (row.minted or {}).get("jti")
                # No dead tokens (docs/spec.md §4): a retry never gets back an access token whose
                # jti an admin revoked inside the grace (family/subject/client revocations already
                # end the family in their own transaction).
                if isinstance(minted_jti, str) and await tx.revoked_kind(
                    jti=minted_jti, gid=None, subject=None, client_id=None, issued_at=0
                ):
                    raise InvalidGrant("the refreshed access token was revoked")
                return self._replay(row, grant, client, req.refresh_token)
            if outcome is Outcome.ROTATE:
                # docs/spec.md §3: a subject or client revoked since the family began cannot
                # refresh.
                if await tx.revoked_kind(
                    jti=None,
                    gid=grant.gid,
                    subject=grant.subject,
                    client_id=grant.client_id,
                    issued_at=grant.created_at,
                ):
                    raise InvalidGrant("the grant was revoked")
                return await self._rotate(tx, client=client, req=req, row=row, grant=grant, now=now)
            reuse_gid = row.gid
        # OAuth 2.1 §4.3.1: a spent refresh token presented again — revoke the whole family.
        await revoke_family(d, reuse_gid, actor=client.client_id, reason="refresh token reused")
        raise InvalidGrant("the refresh token was already used; the grant is revoked")

    async def _rotate(
        self,
        tx: UnitOfWork,
        *,
        client: Client,
        req: TokenRequest,
        row: OpaqueTokenRecord,
        grant: GrantRecord,
        now: float,
    ) -> TokenResult:
        d = self._d
        scopes = narrow_scopes(req.scope, row.scopes)
        audiences = narrow_audiences(req.audiences, row.audiences)
        fmt = token_format(req.token_format, client)
        d.minter.check_ready(fmt)
        if OPENID_SCOPE in scopes:
            d.minter.check_id_ready(client.id_token_alg)
        d.watermarks.check(grant.subject, client.client_id, now)
        issued_at = int(now)
        minted = {
            "jti": new_jti(),
            "iat": issued_at,
            "exp": issued_at + client.access_token_ttl,
            "scopes": list(scopes),
            "audiences": list(audiences),
            "format": fmt,
        }
        successor = successor_of(d.refresh_key, req.refresh_token)
        successor_row = refresh_record(successor, grant, client, issued_at)
        await tx.mark_spent(
            row.token_hash,
            used_at=issued_at,
            successor_hash=successor_row.token_hash,
            minted=minted,
        )
        rows = [successor_row]
        token = self._access_token(row, minted)
        if fmt == JWT:
            access = d.minter.sign_access(token)
        else:
            access = access_token_of(d.refresh_key, req.refresh_token)
            rows.append(opaque_record(token, access))
        await tx.insert_tokens(rows)
        return TokenResult(
            access_token=access,
            token_type="Bearer",
            expires_in=token.expires_at - token.issued_at,
            scope=" ".join(scopes),
            refresh_token=successor,
            id_token=self._id_token(grant, client, token, access),
        )

    def _id_token(self, grant: GrantRecord, client: Client, token: AccessToken, access: str) -> str:
        """OIDC Core §12.2: with ``openid``, a new ID token: the same iss, sub and aud, a new iat
        (the access token's), the auth_time of the original authentication, and no nonce."""
        if OPENID_SCOPE not in token.scopes:
            return ""
        return self._d.minter.sign_id(
            alg=client.id_token_alg,
            subject=grant.subject,
            client_id=grant.client_id,
            now=token.issued_at,
            ttl=client.id_token_ttl,
            auth_time=grant.auth_time,
            nonce="",
            access_token=access,
        )

    def _replay(
        self, row: OpaqueTokenRecord, grant: GrantRecord, client: Client, spent: str
    ) -> TokenResult:
        """The grace rule: the same successor, the access token with the same jti/iat/exp."""
        d = self._d
        minted = row.minted
        if minted is None:  # a spent row always records what it minted
            raise InvalidGrant("invalid refresh token")
        token = self._access_token(row, minted)
        if minted["format"] == JWT:
            access = d.minter.sign_access(token)
        else:
            access = access_token_of(d.refresh_key, spent)  # its row exists since the rotation
        log.info("refresh retry inside the grace for family %s: same successor", row.gid)
        return TokenResult(
            access_token=access,
            token_type="Bearer",
            expires_in=max(0, token.expires_at - int(d.clock.now())),
            scope=" ".join(token.scopes),
            refresh_token=successor_of(d.refresh_key, spent),
            id_token=self._id_token(grant, client, token, access),
        )

    def _access_token(self, row: OpaqueTokenRecord, minted: dict[str, Any]) -> AccessToken:
        return AccessToken(
            issuer=self._d.minter.issuer,
            subject=row.subject,
            client_id=row.client_id,
            audiences=tuple(minted["audiences"]),
            scopes=tuple(minted["scopes"]),
            issued_at=int(minted["iat"]),
            expires_at=int(minted["exp"]),
            jti=str(minted["jti"]),
            gid=row.gid,
        )
