"""What the issuer's grants share: the token request, the dependencies, small rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from tokenry.bus.codec import Subjects
from tokenry.core.client_secrets import Pepper
from tokenry.core.clientauth import AssertionContext, ClientLookup, Presented, ProvenSecrets
from tokenry.core.clients import TOKEN_FORMATS, Client
from tokenry.core.clock import Clock
from tokenry.core.errors import InvalidRequest
from tokenry.core.refresh import DEFAULT_GRACE
from tokenry.services.issuer.caches import Watermarks
from tokenry.services.issuer.minting import Minter
from tokenry.store.auth_codes import AuthCodeStore
from tokenry.store.grants import GrantStore
from tokenry.store.opaque_tokens import OpaqueTokenRecord
from tokenry.store.revocation_checks import RevocationChecks
from tokenry.store.revocations import RevocationStore


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


class OpaqueWriter(Protocol):
    async def write(self, record: OpaqueTokenRecord) -> None:
        """Returns once the row is committed."""
        ...


@dataclass(frozen=True, slots=True)
class IssuerDeps:
    """Everything the grants need, built once by app.py."""

    clients: ClientLookup
    peppers: dict[str, Pepper]
    assertions: AssertionContext
    minter: Minter
    clock: Clock
    watermarks: Watermarks
    opaque_writer: OpaqueWriter
    grants: GrantStore
    codes: AuthCodeStore
    revocations: RevocationStore
    checks: RevocationChecks
    subjects: Subjects
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
    """Per request, else per client (SPEC §3)."""
    if not requested:
        return client.token_format
    if requested not in TOKEN_FORMATS:
        raise InvalidRequest("token_format must be jwt or opaque")
    return requested
