"""Grant families (``gid``): revoking one, and the tokens a new family starts with."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tokenry.core import opaque
from tokenry.core.clients import REFRESH_TOKEN, Client
from tokenry.core.ids import new_jti
from tokenry.core.oidc import OPENID_SCOPE
from tokenry.core.revocations import Revocation, RevocationKind, family_expiry
from tokenry.core.tokens import new_access_token
from tokenry.flows.deps import IssuerDeps
from tokenry.flows.minting import JWT, TokenResult, opaque_record
from tokenry.store.ports import UnitOfWork
from tokenry.store.records import REFRESH, GrantRecord, OpaqueTokenRecord

log = logging.getLogger(__name__)


async def revoke_family(deps: IssuerDeps, gid: str, *, actor: str, reason: str) -> int:
    """Revoke a family everywhere: the grant revocation and its event first (durable, in the
    outbox: running verifiers reject the family's access tokens), then the family's rows here
    (the issuer refuses its refresh tokens). Idempotent, so a retry after a crash converges.
    """
    now = deps.clock.now()
    # The family's JWTs live at most MAX_ACCESS_TOKEN_TTL (docs/spec.md §4.7); its refresh tokens
    # are refused through grants.revoked_at, which outlives the revocation row.
    rev = Revocation(RevocationKind.GRANT, gid, 0, family_expiry(now, int(now), None), reason)
    seq = await deps.revocations.revoke(rev, actor, now)
    async with deps.transactions.transaction() as tx:
        await tx.revoke_family(gid)
    log.warning("revoked grant family %s (%s), event seq %d", gid, reason, seq)
    return seq


@dataclass(frozen=True, slots=True)
class FamilyStart:
    client: Client
    grant: GrantRecord
    scopes: tuple[str, ...]
    fmt: str
    now: float
    #: the access token's audience when a resource narrowed it (RFC 8707 §2.2); None = the grant's
    audiences: tuple[str, ...] | None = None


async def issue_first_tokens(deps: IssuerDeps, tx: UnitOfWork, start: FamilyStart) -> TokenResult:
    """Access token, refresh token (if the client may refresh) and ID token (scope ``openid``)
    of a new family, their rows written in the caller's unit of work."""
    client, grant, now = start.client, start.grant, start.now
    token = new_access_token(
        issuer=deps.minter.issuer,
        subject=grant.subject,
        client_id=client.client_id,
        audiences=grant.audiences if start.audiences is None else start.audiences,
        scopes=start.scopes,
        now=now,
        ttl=client.access_token_ttl,
        jti=new_jti(),
        gid=grant.gid,
    )
    rows: list[OpaqueTokenRecord] = []
    if start.fmt == JWT:
        access = deps.minter.sign_access(token)
    else:
        access = opaque.new_token(opaque.ACCESS)
        rows.append(opaque_record(token, access))
    refresh = ""
    if REFRESH_TOKEN in client.grant_types:
        refresh = opaque.new_token(opaque.REFRESH)
        rows.append(refresh_record(refresh, grant, client, int(now)))
    id_token = ""
    if OPENID_SCOPE in start.scopes:
        id_token = deps.minter.sign_id(
            alg=client.id_token_alg,
            subject=grant.subject,
            client_id=client.client_id,
            now=now,
            ttl=client.id_token_ttl,
            auth_time=grant.auth_time,
            nonce=grant.nonce,
            access_token=access,
        )
    await tx.insert_tokens(rows)
    return TokenResult(
        access_token=access,
        token_type="Bearer",
        expires_in=token.expires_at - token.issued_at,
        scope=" ".join(start.scopes),
        refresh_token=refresh,
        id_token=id_token,
    )


def refresh_record(value: str, grant: GrantRecord, client: Client, now: int) -> OpaqueTokenRecord:
    """A refresh token row: idle lifetime, never beyond the family's absolute lifetime."""
    return OpaqueTokenRecord(
        token_hash=opaque.token_hash(value),
        kind=REFRESH,
        jti=new_jti(),
        gid=grant.gid,
        client_id=client.client_id,
        subject=grant.subject,
        # RFC 6749 §6: a new refresh token has the scope of the one it replaces: the family's.
        scopes=grant.scopes,
        audiences=grant.audiences,
        issued_at=now,
        expires_at=min(now + client.refresh_token_idle_ttl, grant.expires_at),
    )
