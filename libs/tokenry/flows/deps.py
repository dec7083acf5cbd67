"""What the token flows share: the token request, their dependencies, small rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from tokenry.core.client_secrets import Pepper
from tokenry.core.clientauth import AssertionContext, ClientLookup, Presented, ProvenSecrets
from tokenry.core.clients import TOKEN_FORMATS, Client
from tokenry.core.clock import Clock
from tokenry.core.errors import InvalidRequest
from tokenry.core.refresh import DEFAULT_GRACE
from tokenry.flows.minting import Minter
from tokenry.flows.watermarks import Watermarks
from tokenry.store.ports import (
    AccessTokenWriter,
    AuthorizeRequestStorage,
    RevocationLog,
    Transactional,
)


class TokenRequest(NamedTuple):
    """RFC 6749 §4 / RFC 8693 §2.1 token request. (A NamedTuple: one per call on the hot path,
    and a tuple is built in one step where a frozen dataclass sets each field in turn.)"""

    grant_type: str
    scope: str
    audiences: tuple[str, ...]
    credentials: Presented
    code: str = ""
    redirect_uri: str = ""
    code_verifier: str = ""
    refresh_token: str = ""
    subject_token: str = ""
    subject_token_type: str = ""
    actor_token: str = ""
    requested_token_type: str = ""
    token_format: str = ""

    def __repr__(self) -> str:  # never print codes or tokens
        return f"TokenRequest(grant_type={self.grant_type!r}, scope={self.scope!r})"


@dataclass(frozen=True, slots=True)
class IssuerDeps:
    """Everything the flows need, built once by a composition root (the issuer's app.py, the
    gateway's). Each storage field names the one port it is used through
    (:mod:`tokenry.store.ports`); one store object may fill several (fosite's compose)."""

    clients: ClientLookup
    peppers: dict[str, Pepper]
    assertions: AssertionContext
    minter: Minter
    clock: Clock
    watermarks: Watermarks
    # Opaque client-credentials tokens (group-committed in PostgreSQL).
    access_tokens: AccessTokenWriter
    # Login challenges parked by authorize().
    requests: AuthorizeRequestStorage
    # The transaction boundary of the code and refresh grants.
    transactions: Transactional
    # A reused code or refresh token revokes its family (with its event).
    revocations: RevocationLog
    # The derivation key of refresh successors (core.refresh.derivation_key).
    refresh_key: bytes
    refresh_grace: int = DEFAULT_GRACE
    # Secrets already proven against a client's current hash (core.clientauth.ProvenSecrets).
    proven: ProvenSecrets | None = None
    # Raises TemporarilyUnavailable while this issuer may not mint (its clock is off the
    # database's by more than the max skew: servicekit.clockskew).
    mint_gate: Callable[[], None] | None = None

    def __repr__(self) -> str:  # holds keys
        return "IssuerDeps(...)"


def token_format(requested: str, client: Client) -> str:
    """Per request, else per client (docs/spec.md §3)."""
    if not requested:
        return client.token_format
    if requested not in TOKEN_FORMATS:
        raise InvalidRequest("token_format must be jwt or opaque")
    return requested
