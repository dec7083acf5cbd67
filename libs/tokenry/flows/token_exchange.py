"""The token exchange grant (RFC 8693), including the phantom-token pattern.

The rules are pure (:mod:`tokenry.core.token_exchange`); this module verifies the subject token
(:mod:`tokenry.flows.subject_tokens`) and mints the JWT. The exchanged token is always
a JWT: it is what internal services verify locally.
"""

from __future__ import annotations

from tokenry.core import opaque
from tokenry.core.clients import Client
from tokenry.core.errors import InvalidGrant, InvalidRequest
from tokenry.core.ids import new_jti
from tokenry.core.token_exchange import PHANTOM_MAX_TTL, check_request, decide
from tokenry.core.tokens import ACCESS_TOKEN_TYPE_URN, new_access_token
from tokenry.flows.deps import IssuerDeps, TokenRequest
from tokenry.flows.minting import JWT, TokenResult
from tokenry.flows.subject_tokens import SubjectTokenVerifier

__all__ = ["ExchangeFlow"]


class ExchangeFlow:
    def __init__(self, deps: IssuerDeps, subject_tokens: SubjectTokenVerifier) -> None:
        self._d = deps
        self._subject_tokens = subject_tokens

    async def exchange(self, client: Client, req: TokenRequest) -> TokenResult:
        d = self._d
        check_request(
            req.subject_token, req.subject_token_type, req.actor_token, req.requested_token_type
        )
        if req.token_format not in ("", JWT):
            raise InvalidRequest("token exchange issues JWT access tokens only")
        d.minter.check_ready(JWT)
        subject = await self._subject_tokens.verify(req.subject_token, client)
        now = d.clock.now()
        phantom = opaque.looks_opaque(req.subject_token)
        decision = decide(
            client,
            subject=subject.subject,
            subject_client_id=subject.client_id,
            subject_scopes=subject.scopes,
            subject_gid=subject.gid,
            subject_expires_at=subject.expires_at,
            subject_act=subject.act,
            requested_scope=req.scope,
            requested_audiences=req.audiences,
            # The phantom JWT is short-lived: the opaque token stays the revocable handle.
            max_ttl_end=int(now) + PHANTOM_MAX_TTL if phantom else None,
        )
        if decision.not_after <= int(now):
            raise InvalidGrant("subject_token has expired")
        d.watermarks.check(decision.subject, client.client_id, now)
        token = new_access_token(
            issuer=d.minter.issuer,
            subject=decision.subject,
            client_id=client.client_id,
            audiences=decision.audiences,
            scopes=decision.scopes,
            now=now,
            ttl=client.access_token_ttl,
            jti=new_jti(),
            gid=decision.gid,
            act=decision.act,
            # RFC 8693 §2.2: never outlives the subject token.
            not_after=decision.not_after,
        )
        return TokenResult(
            access_token=d.minter.sign_access(token),
            token_type="Bearer",
            expires_in=max(0, token.expires_at - token.issued_at),
            scope=" ".join(decision.scopes),
            issued_token_type=req.requested_token_type or ACCESS_TOKEN_TYPE_URN,
        )
