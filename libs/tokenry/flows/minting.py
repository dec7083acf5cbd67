"""Minting: JWT (RFC 9068) or opaque access tokens, refresh tokens and OIDC ID tokens.

Signing uses the key objects loaded once (docs/design.md §7); an opaque token leaves only its
SHA-256 behind (docs/spec.md §3). An access token without ``act`` (client credentials) is
signed from a claims template: the members fixed for one (subject, client, audiences, scopes,
cnf) encoded once, only ``exp``/``iat``/``jti``/``gid`` per token (core.jws.ClaimsTemplate).
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple, Protocol, TypeAlias

from tokenry.core import opaque
from tokenry.core.jws import ClaimsTemplate, JwsSigner, json_string
from tokenry.core.oidc import ID_TOKEN_TYP, new_id_token
from tokenry.core.signing import ACCESS_TOKEN_TYP, SigningKey
from tokenry.core.tokens import ACCESS_TOKEN_TYPE_URN, AccessToken, new_access_token
from tokenry.store.records import ACCESS, OpaqueTokenRecord

JWT = "jwt"
OPAQUE = "opaque"
MAX_SIGNERS = 16
MAX_TEMPLATES = 4096  # distinct (subject, client, audiences, scopes, cnf) kept per Minter
#: The members of a templated access token's claims that change from token to token.
_PER_TOKEN: Final = ("exp", "iat", "jti", "gid")

TemplateKey: TypeAlias = tuple[
    str, str, tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...] | None
]


class SigningKeys(Protocol):
    """``tokenry.store.active_key.ActiveKeys``: the active key per (use, alg)."""

    def current(self, use: str = "access", alg: str | None = None) -> SigningKey:
        """The active key; raises TemporarilyUnavailable when there is none."""
        ...


class TokenResult(NamedTuple):
    """RFC 6749 §5.1 (+ refresh_token, id_token)."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str
    issued_token_type: str = ACCESS_TOKEN_TYPE_URN
    refresh_token: str = ""
    id_token: str = ""

    def __repr__(self) -> str:  # never print a token
        return f"TokenResult(expires_in={self.expires_in}, scope={self.scope!r})"


def opaque_record(token: AccessToken, value: str) -> OpaqueTokenRecord:
    return OpaqueTokenRecord(
        token_hash=opaque.token_hash(value),
        kind=ACCESS,
        jti=token.jti,
        gid=token.gid,
        client_id=token.client_id,
        subject=token.subject,
        scopes=token.scopes,
        audiences=token.audiences,
        issued_at=token.issued_at,
        expires_at=token.expires_at,
        act=token.act,
    )


class Minter:
    def __init__(self, *, issuer: str, keys: SigningKeys) -> None:
        self._issuer = issuer
        self._keys = keys
        # One lean signer per (key object, typ): header encoded once (core.jws). Keyed on the
        # SigningKey object itself, so a rotated or re-read key never reuses another's signer.
        self._signers: dict[tuple[int, str], tuple[SigningKey, JwsSigner]] = {}
        # A template is a pure function of its key (this Minter's issuer is fixed), so nothing
        # can make one stale: a client whose scopes, audiences or binding change asks for
        # another key. Bounded: cleared when full.
        self._templates: dict[TemplateKey, ClaimsTemplate] = {}
        # The access-token signer last used, and its key (sign_from_template: no tuple built
        # and hashed per token while the key stays the same).
        self._access_signer: tuple[SigningKey, JwsSigner] | None = None

    def _signer(self, key: SigningKey, typ: str) -> JwsSigner:
        slot = (id(key), typ)
        held = self._signers.get(slot)
        if held is None or held[0] is not key:
            if len(self._signers) >= MAX_SIGNERS:
                self._signers.clear()
            held = (key, JwsSigner(key, typ))
            self._signers[slot] = held
        return held[1]

    def _sign(self, key: SigningKey, typ: str, claims: dict[str, Any]) -> str:
        return self._signer(key, typ).sign(claims)

    @property
    def issuer(self) -> str:
        return self._issuer

    def check_ready(self, fmt: str) -> None:
        """Fail before any write when the key a JWT needs is missing."""
        if fmt == JWT:
            self._keys.current()

    def sign_access(self, token: AccessToken) -> str:
        return self._sign(self._keys.current(), ACCESS_TOKEN_TYP, token.claims())

    def sign_templated_access(
        self,
        *,
        subject: str,
        client_id: str,
        audiences: tuple[str, ...],
        scopes: tuple[str, ...],
        issued_at: int,
        expires_at: int,
        jti: str,
        gid: str,
        cnf: dict[str, str] | None,
    ) -> str:
        """The JWT :meth:`sign_access` makes of the same token (one without ``act``): the same
        claims (RFC 9068 §2.2), the fixed members first."""
        template = self.access_template(subject, client_id, audiences, scopes, cnf)
        # The members of _PER_TOKEN, in its order (an f-string: no format to parse per token).
        jti_json, gid_json = json_string(jti), json_string(gid)
        rest = f'"exp":{expires_at},"iat":{issued_at},"jti":{jti_json},"gid":{gid_json}}}'
        signer = self._signer(self._keys.current(), ACCESS_TOKEN_TYP)
        return signer.sign_templated(template, rest.encode())

    def sign_from_template(
        self, template: ClaimsTemplate, issued_at: int, expires_at: int, jti: str, gid: str
    ) -> str:
        """:meth:`sign_templated_access` for a template :meth:`access_template` made, with a
        ``jti`` and ``gid`` of :func:`tokenry.core.ids.new_jti_and_gid`: base64url, so their
        JSON is the text between quotes (nothing to escape, RFC 8259 §7)."""
        key = self._keys.current()
        held = self._access_signer
        if held is None or held[0] is not key:
            held = self._access_signer = (key, self._signer(key, ACCESS_TOKEN_TYP))
        # exp and iat change once a second: the template extended with them serves every token
        # of that second, and only jti and gid are encoded per token (_PER_TOKEN's order kept).
        timed = template.timed
        if timed is None or timed[0] != issued_at or timed[1] != expires_at:
            extended = template.extended(f'"exp":{expires_at},"iat":{issued_at},'.encode())
            timed = template.timed = (issued_at, expires_at, extended)
        rest = f'"jti":"{jti}","gid":"{gid}"}}'
        return held[1].sign_templated(timed[2], rest.encode())

    def access_template(
        self,
        subject: str,
        client_id: str,
        audiences: tuple[str, ...],
        scopes: tuple[str, ...],
        cnf: dict[str, str] | None,
    ) -> ClaimsTemplate:
        """The fixed members of an access token's claims (all but ``_PER_TOKEN``)."""
        slot: TemplateKey = (
            subject,
            client_id,
            audiences,
            scopes,
            None if cnf is None else tuple(cnf.items()),
        )
        template = self._templates.get(slot)
        if template is None:
            template = self._template(slot, cnf)
        return template

    def _template(self, slot: TemplateKey, cnf: dict[str, str] | None) -> ClaimsTemplate:
        subject, client_id, audiences, scopes, _ = slot
        # The claims of core.tokens.AccessToken (one definition of RFC 9068 §2.2), less the
        # members that change per token.
        claims = new_access_token(
            issuer=self._issuer,
            subject=subject,
            client_id=client_id,
            audiences=audiences,
            scopes=scopes,
            now=0,
            ttl=0,
            jti="",
            gid="",
            cnf=cnf,
        ).claims()
        template = ClaimsTemplate({k: v for k, v in claims.items() if k not in _PER_TOKEN})
        if len(self._templates) >= MAX_TEMPLATES:
            self._templates.clear()
        self._templates[slot] = template
        return template

    def sign_id(
        self,
        *,
        alg: str,
        subject: str,
        client_id: str,
        now: float,
        ttl: int,
        auth_time: int,
        nonce: str,
        access_token: str,
    ) -> str:
        token = new_id_token(
            issuer=self._issuer,
            subject=subject,
            client_id=client_id,
            now=now,
            ttl=ttl,
            auth_time=auth_time,
            nonce=nonce,
            access_token=access_token,
        )
        return self._sign(self._keys.current("id", alg), ID_TOKEN_TYP, token.claims())

    def check_id_ready(self, alg: str) -> None:
        """ID tokens are signed with keys of use ``id`` (RS256 by default, OIDC Core §15.1)."""
        self._keys.current("id", alg)
