"""Who may read the control plane (issue 13 item 3; docs/spec.md §2, §3 Transport).

``ListRevocations`` and ``GetHead`` (revocation service) and ``GetJwks`` (key rotator) tell a
verifier what is revoked and which keys sign: they are readable by authenticated verifiers
only, in one of two ways:

- an mTLS client certificate (chain verified by the listener against its CA bundle) with a
  SAN URI matching one of ``TOKENRY_VERIFIER_ALLOWED_IDS`` — SPIFFE ID patterns separated by
  commas or spaces, where ``*`` matches within one path segment
  (``spiffe://prod.example/ns/*/sa/verifier``); the decision is cached by the certificate's
  bytes, never by peer address;
- client authentication (``client_secret_basic`` in ``authorization``, or ``private_key_jwt``
  in the ``client-assertion-type`` / ``client-assertion`` metadata) of a client holding
  ``tokenry:verifier``, a scope only an admin can grant.

``TOKENRY_VERIFIER_AUTH``: ``required`` (the default outside dev mode) or ``optional`` (the
default in dev mode: anonymous reads pass, presented credentials are still checked).

Why not a bearer token: a verifier must bootstrap while the issuer is down, and the key
rotator would have to verify tokens signed with the keys it is about to serve. Client
authentication needs neither.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from cryptography import x509

from tokenry.core.clientauth import Presented
from tokenry.core.clients import VERIFIER_SCOPE, Client
from tokenry.core.errors import InsufficientScope, InvalidClient
from tokenry.servicekit import variables as v
from tokenry.servicekit.grpcmeta import caller_credentials, metadata_value
from tokenry.servicekit.tls import peer_certificate_pem

__all__ = ["ALLOWED_IDS", "VERIFIER_AUTH", "VerifierAccess", "compile_id_patterns"]

ALLOWED_IDS: Final = v.VERIFIER_ALLOWED_IDS.name
VERIFIER_AUTH: Final = v.VERIFIER_AUTH.name
_CACHE_SIZE: Final = 1024

Authenticate = Callable[[Presented], Awaitable[Client]]


def compile_id_patterns(text: str) -> re.Pattern[str] | None:
    """One regex for the allowed SPIFFE ID patterns, or None when there are none.

    Raises:
        ValueError: a pattern that is not a ``spiffe://`` URI.
    """
    try:
        v.spiffe_patterns(text)  # the one rule, also checked at start-up (servicekit.variables)
    except ValueError as exc:
        raise ValueError(f"{ALLOWED_IDS} {exc}") from None
    parts = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    if not parts:
        return None
    alternatives = ("[^/]*".join(re.escape(piece) for piece in p.split("*")) for p in parts)
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


def _san_uris(pem: bytes) -> list[str]:
    try:
        cert = x509.load_pem_x509_certificate(pem)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return []
    return [str(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]


class VerifierAccess:
    """The check the control-plane read RPCs run first."""

    __slots__ = ("_allowed", "_by_cert", "_required")

    def __init__(self, allowed: re.Pattern[str] | None, *, required: bool) -> None:
        self._allowed = allowed
        self._required = required
        self._by_cert: dict[bytes, bool] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, dev: bool) -> VerifierAccess:
        """Raises ValueError on a bad pattern or a bad ``TOKENRY_VERIFIER_AUTH``."""
        mode = env.get(VERIFIER_AUTH, "").strip().lower() or ("optional" if dev else "required")
        if mode not in {"required", "optional"}:
            raise ValueError(f"{VERIFIER_AUTH} must be required or optional, not {mode!r}")
        return cls(compile_id_patterns(env.get(ALLOWED_IDS, "")), required=mode == "required")

    def certificate_allowed(self, pem: bytes) -> bool:
        """Whether this (verified) client certificate names an allowed verifier."""
        known = self._by_cert.get(pem)
        if known is None:
            allowed = self._allowed
            known = allowed is not None and any(allowed.fullmatch(u) for u in _san_uris(pem))
            if len(self._by_cert) >= _CACHE_SIZE:
                self._by_cert.clear()
            self._by_cert[pem] = known
        return known

    async def check(self, context: Any, authenticate: Authenticate) -> Client | None:
        """Let the call through, or raise.

        Returns:
            The authenticated client, or None for a certificate (or an anonymous optional) read.

        Raises:
            InvalidClient: no acceptable certificate and no (valid) client credentials.
            InsufficientScope: an authenticated client without ``tokenry:verifier``.
        """
        pem = peer_certificate_pem(context)
        if pem is not None and self.certificate_allowed(pem):
            return None
        presented = metadata_value(context, "authorization") or metadata_value(
            context, "client-assertion"
        )
        if not presented:
            if not self._required:
                return None
            raise InvalidClient(
                "the control plane is readable by authenticated verifiers only: present an"
                " allowed client certificate or the credentials of a client holding"
                f" {VERIFIER_SCOPE}"
            )
        client = await authenticate(caller_credentials(context))
        if VERIFIER_SCOPE not in client.scopes:
            raise InsufficientScope(f"reading the control plane needs {VERIFIER_SCOPE}")
        return client
