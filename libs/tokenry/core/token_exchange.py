"""OAuth 2.0 Token Exchange (RFC 8693) for service-to-service calls on behalf of a subject.

The authenticated client is the actor. What it gets (docs/spec.md §3, issue rules):

- the subject token's ``sub`` and ``gid`` (so revoking the family or the subject reaches the
  exchanged token too), and an ``act`` claim naming the client, with any earlier actor nested
  inside it (RFC 8693 §4.1);
- a scope and an audience that can only narrow: scope within the subject token's scope *and*
  the client's allowed scopes, audience within the client's registered audiences
  (RFC 8693 §2.1, RFC 8707 §2);
- an ``exp`` never later than the subject token's (the caller passes ``not_after``);
- only when the client's policy lets it exchange tokens of the subject token's client
  (``token_exchange_from``; "who may exchange for whom").

The same grant turns an opaque access token into a short-lived JWT for internal verification
(the phantom-token pattern); ``PHANTOM_MAX_TTL`` bounds that JWT's life.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from tokenry.core.clients import Client
from tokenry.core.errors import InvalidRequest, InvalidScope, UnauthorizedClient
from tokenry.core.grants import grant_audiences, narrow_scopes
from tokenry.core.tokens import ACCESS_TOKEN_TYPE_URN, JWT_TYPE_URN

SUBJECT_TOKEN_TYPES: Final = frozenset({ACCESS_TOKEN_TYPE_URN, JWT_TYPE_URN})
REQUESTED_TOKEN_TYPES: Final = frozenset({"", ACCESS_TOKEN_TYPE_URN, JWT_TYPE_URN})
MAX_ACT_DEPTH: Final = 5
PHANTOM_MAX_TTL: Final = 300


@dataclass(frozen=True, slots=True)
class ExchangeDecision:
    subject: str
    gid: str
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    act: dict[str, Any]
    not_after: int


def check_request(
    subject_token: str, subject_token_type: str, actor_token: str, requested_token_type: str
) -> None:
    """RFC 8693 §2.1 request parameters."""
    if not subject_token:
        raise InvalidRequest("subject_token is required (RFC 8693 §2.1)")
    if subject_token_type not in SUBJECT_TOKEN_TYPES:
        raise InvalidRequest("subject_token_type must be the access_token or jwt token type URN")
    if actor_token:
        raise InvalidRequest("actor_token is not supported: the authenticated client is the actor")
    if requested_token_type not in REQUESTED_TOKEN_TYPES:
        raise InvalidRequest("requested_token_type must be the access_token or jwt token type")


def _depth(act: dict[str, Any] | None) -> int:
    depth = 0
    while isinstance(act, dict):
        depth += 1
        act = act.get("act")
    return depth


def decide(
    client: Client,
    *,
    subject: str,
    subject_client_id: str,
    subject_scopes: tuple[str, ...],
    subject_gid: str,
    subject_expires_at: int,
    subject_act: dict[str, Any] | None,
    requested_scope: str,
    requested_audiences: tuple[str, ...],
    max_ttl_end: int | None = None,
) -> ExchangeDecision:
    """What an exchange yields, or the OAuth error that refuses it."""
    if not client.may_exchange_from(subject_client_id):
        raise UnauthorizedClient("the client may not exchange tokens issued to that client")
    available = tuple(s for s in subject_scopes if s in client.scopes)
    scopes = narrow_scopes(requested_scope, available)
    if not scopes:
        raise InvalidScope("no scope of the subject token is allowed for this client")
    audiences = grant_audiences(requested_audiences, client.audiences)
    if _depth(subject_act) >= MAX_ACT_DEPTH:
        raise InvalidRequest("delegation chain too long")
    act: dict[str, Any] = {"sub": client.client_id}
    if subject_act:
        act["act"] = subject_act
    not_after = subject_expires_at if max_ttl_end is None else min(subject_expires_at, max_ttl_end)
    return ExchangeDecision(subject, subject_gid, scopes, audiences, act, not_after)
