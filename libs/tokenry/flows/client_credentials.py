"""The client credentials grant (RFC 6749 §4.4): the issuance hot path.

A JWT costs no database round trip and no await beyond the client lookup (docs/design.md §7: the
client registry and the watermarks are in memory, the key object is loaded once); an opaque
token is one group-committed row (``tokenry.store.ports.AccessTokenWriter``).
"""

from __future__ import annotations

from tokenry.core import mtls, opaque
from tokenry.core.clients import Client
from tokenry.core.grants import grant_audiences, grant_scopes
from tokenry.core.ids import new_jti_and_gid
from tokenry.core.tokens import new_access_token
from tokenry.flows.deps import IssuerDeps, TokenRequest, token_format
from tokenry.flows.minting import JWT, TokenResult, opaque_record

__all__ = ["ClientCredentialsFlow"]


class ClientCredentialsFlow:
    __slots__ = ("_d",)

    def __init__(self, deps: IssuerDeps) -> None:
        self._d = deps

    async def issue(self, client: Client, req: TokenRequest) -> TokenResult:
        """RFC 6749 §4.4.2-4.4.3 for an authenticated client allowed this grant."""
        d = self._d
        scopes = grant_scopes(req.scope, client.scopes)
        audiences = grant_audiences(req.audiences, client.audiences)
        fmt = token_format(req.token_format, client)
        now = d.clock.now()
        # RFC 9068 §2.2: for client credentials the subject is the client itself.
        d.watermarks.check(client.client_id, client.client_id, now)
        jti, gid = new_jti_and_gid()
        cnf = mtls.confirmation(client.certificate_bound)
        ttl = client.access_token_ttl
        if fmt == JWT:
            # iat in whole seconds, never rounded up, as core.tokens.new_access_token has it
            # (the watermarks compare against it, docs/spec.md §4).
            issued_at = int(now)
            value = d.minter.sign_templated_access(
                subject=client.client_id,
                client_id=client.client_id,
                audiences=audiences,
                scopes=scopes,
                issued_at=issued_at,
                expires_at=issued_at + ttl,
                jti=jti,
                gid=gid,
                cnf=cnf,
            )
        else:
            token = new_access_token(
                issuer=d.minter.issuer,
                subject=client.client_id,
                client_id=client.client_id,
                audiences=audiences,
                scopes=scopes,
                now=now,
                ttl=ttl,
                jti=jti,
                gid=gid,
                cnf=cnf,
            )
            value = opaque.new_token(opaque.ACCESS)
            await d.access_tokens.write_access_token(opaque_record(token, value))
            ttl = token.expires_at - token.issued_at
        # RFC 6749 §4.4.3: no refresh token for client credentials.
        return TokenResult(
            access_token=value,
            token_type="Bearer",
            expires_in=ttl,
            scope=" ".join(scopes),
        )
