"""RFC 7662 token introspection: who may learn what, as pure functions.

RFC 7662 §4: the server must not reveal a token's content to a caller the token is not for.
Tokenry's rules (docs/spec.md §3): the caller holds ``tokenry:introspect`` (or is an admin); it gets
a positive answer only for a token whose audience includes it — a resource server's client id is
its audience identifier — or when it is an admin. (A client's registered audiences are where it
may *send* tokens, not what it may read, so they do not count.) Everything else — unknown,
expired, revoked, malformed, not for this caller — is the same ``{"active": false}``, nothing
more (§2.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenry.core.clients import ADMIN_SCOPE, INTROSPECT_SCOPE, Client
from tokenry.core.errors import InsufficientScope

ACCESS_TOKEN_HINT = "access_token"
REFRESH_TOKEN_HINT = "refresh_token"


@dataclass(frozen=True, slots=True)
class Introspection:
    """The answer; ``INACTIVE`` is the only negative one."""

    active: bool
    scope: str = ""
    client_id: str = ""
    token_type: str = ""
    exp: int = 0
    iat: int = 0
    nbf: int = 0
    sub: str = ""
    aud: tuple[str, ...] = ()
    iss: str = ""
    jti: str = ""
    act: Mapping[str, Any] | None = None
    cnf: Mapping[str, Any] | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        """The RFC 7662 §2.2 JSON body: only the members that are set."""
        if not self.active:
            return {"active": False}
        body: dict[str, Any] = {"active": True, "token_type": self.token_type}
        for name in ("scope", "client_id", "sub", "iss", "jti"):
            value = getattr(self, name)
            if value:
                body[name] = value
        for name in ("exp", "iat", "nbf"):
            value = getattr(self, name)
            if value:
                body[name] = value
        if self.aud:
            body["aud"] = self.aud[0] if len(self.aud) == 1 else list(self.aud)
        if self.act is not None:
            body["act"] = dict(self.act)
        if self.cnf is not None:
            body["cnf"] = dict(self.cnf)
        return body


INACTIVE = Introspection(active=False)


def require_introspect_scope(caller: Client) -> None:
    if INTROSPECT_SCOPE not in caller.scopes and ADMIN_SCOPE not in caller.scopes:
        raise InsufficientScope(f"introspection needs the {INTROSPECT_SCOPE} scope")


def audiences_of(claims: Mapping[str, Any]) -> tuple[str, ...]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return (aud,)
    if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        return tuple(aud)
    return ()


def may_see(caller: Client, audiences: tuple[str, ...]) -> bool:
    """RFC 7662 §4: an admin sees everything; others only tokens addressed to them."""
    if ADMIN_SCOPE in caller.scopes:
        return True
    return caller.client_id in audiences


def from_claims(claims: Mapping[str, Any]) -> Introspection:
    """A positive answer from verified, unrevoked, unexpired claims."""

    def number(name: str) -> int:
        value = claims.get(name)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0

    def text(name: str) -> str:
        value = claims.get(name)
        return value if isinstance(value, str) else ""

    act = claims.get("act")
    cnf = claims.get("cnf")
    return Introspection(
        active=True,
        scope=text("scope"),
        client_id=text("client_id"),
        token_type="Bearer",  # docs/spec.md §3: token_type in a positive answer is Bearer
        exp=number("exp"),
        iat=number("iat"),
        nbf=number("nbf"),
        sub=text("sub"),
        aud=audiences_of(claims),
        iss=text("iss"),
        jti=text("jti"),
        act=act if isinstance(act, dict) else None,
        cnf=cnf if isinstance(cnf, dict) else None,
    )
