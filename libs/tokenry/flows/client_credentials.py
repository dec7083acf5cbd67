"""The client credentials grant (RFC 6749 §4.4): the issuance hot path.

A JWT costs no database round trip and no await beyond the client lookup (docs/design.md §7: the
client registry and the watermarks are in memory, the key object is loaded once); an opaque
token is one group-committed row (``tokenry.store.ports.AccessTokenWriter``).
"""

from __future__ import annotations

from typing import TypeAlias

from tokenry.core import mtls, opaque
from tokenry.core.clients import Client
from tokenry.core.grants import grant_audiences, grant_scopes
from tokenry.core.ids import new_jti_and_gid
from tokenry.core.jws import ClaimsTemplate
from tokenry.core.tokens import ACCESS_TOKEN_TYPE_URN, new_access_token
from tokenry.flows.deps import IssuerDeps, TokenRequest, token_format
from tokenry.flows.minting import JWT, TokenResult, opaque_record

__all__ = ["ClientCredentialsFlow"]

#: Distinct (client, scope, audiences, token_format) requests whose grant is remembered.
MAX_SHAPES = 4096

# (client, scopes, audiences, format, scope text, claims template or None)
_Shape: TypeAlias = tuple[Client, tuple[str, ...], tuple[str, ...], str, str, ClaimsTemplate | None]
_ShapeKey: TypeAlias = tuple[int, str, tuple[str, ...], str]

_new_result = tuple.__new__


class ClientCredentialsFlow:
    __slots__ = ("_d", "_shapes")

    def __init__(self, deps: IssuerDeps) -> None:
        self._d = deps
        # What a request grants is a pure function of the client and the request's scope,
        # audiences and token_format (RFC 6749 §3.3, RFC 8707 §2, docs/spec.md §3), so it is
        # worked out once per such request. Keyed on the client object's id: the entry holds
        # that (immutable) object, so the id cannot be reused while the entry lives, and a
        # client the registry re-reads (changed or not) is another object, hence a new entry.
        # Refusals are not remembered. Bounded: cleared when full.
        self._shapes: dict[_ShapeKey, _Shape] = {}

    def _shape(self, key: _ShapeKey, client: Client, req: TokenRequest) -> _Shape:
        scopes = grant_scopes(req.scope, client.scopes)
        audiences = grant_audiences(req.audiences, client.audiences)
        fmt = token_format(req.token_format, client)
        template = None
        if fmt == JWT and not client.certificate_bound:
            # RFC 9068 §2.2: for client credentials the subject is the client itself. (A bound
            # client's cnf is its certificate of the moment: templated per token instead.)
            template = self._d.minter.access_template(
                client.client_id, client.client_id, audiences, scopes, None
            )
        shape = (client, scopes, audiences, fmt, " ".join(scopes), template)
        if len(self._shapes) >= MAX_SHAPES:
            self._shapes.clear()
        self._shapes[key] = shape
        return shape

    async def issue(self, client: Client, req: TokenRequest) -> TokenResult:
        """RFC 6749 §4.4.2-4.4.3 for an authenticated client allowed this grant."""
        d = self._d
        key = (id(client), req.scope, req.audiences, req.token_format)
        shape = self._shapes.get(key)
        if shape is None or shape[0] is not client:
            shape = self._shape(key, client, req)
        _, scopes, audiences, fmt, scope, template = shape
        now = d.clock.now()
        client_id = client.client_id
        watermarks = d.watermarks
        if watermarks.held:
            # RFC 9068 §2.2: for client credentials the subject is the client itself.
            watermarks.check(client_id, client_id, now)
        jti, gid = new_jti_and_gid()
        ttl = client.access_token_ttl
        if template is not None:
            # iat in whole seconds, never rounded up, as core.tokens.new_access_token has it
            # (the watermarks compare against it, docs/spec.md §4).
            issued_at = int(now)
            value = d.minter.sign_from_template(template, issued_at, issued_at + ttl, jti, gid)
        else:
            cnf = mtls.confirmation(client.certificate_bound)
            if fmt == JWT:
                issued_at = int(now)
                value = d.minter.sign_templated_access(
                    subject=client_id,
                    client_id=client_id,
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
                    subject=client_id,
                    client_id=client_id,
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
        # RFC 6749 §4.4.3: no refresh token for client credentials. (The tuple itself: a
        # NamedTuple's generated __new__ is one more Python frame per token.)
        return _new_result(
            TokenResult, (value, "Bearer", ttl, scope, ACCESS_TOKEN_TYPE_URN, "", "")
        )
