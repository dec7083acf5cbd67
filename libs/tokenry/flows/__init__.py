"""The issuer's use cases over storage ports: what the gRPC servicer and the HTTP gateway both
run, in process (docs/design.md §1).

- :mod:`~tokenry.flows.token`: the token endpoint (RFC 6749 §3.2), dispatching on the grant;
- :mod:`~tokenry.flows.client_credentials`: RFC 6749 §4.4, the hot path (no database for a JWT);
- :mod:`~tokenry.flows.authorization_code`: RFC 6749 §4.1 with PKCE (RFC 7636), and the front
  channel in Hydra's login model (authorize, complete);
- :mod:`~tokenry.flows.refresh`: RFC 6749 §6 with rotation, reuse detection and the grace
  (OAuth 2.1 §4.3.1, docs/spec.md §3);
- :mod:`~tokenry.flows.token_exchange`: RFC 8693, over
  :mod:`~tokenry.flows.subject_tokens` (the subject token verified, never trusted on its face);
- :mod:`~tokenry.flows.family`: grant families, revoked as one;
- :mod:`~tokenry.flows.minting`: JWT (RFC 9068) and opaque access tokens, OIDC ID tokens;
- :mod:`~tokenry.flows.watermarks`: no token born revoked (docs/spec.md §4).

Storage is reached only through the Protocols of :mod:`tokenry.store.ports`, with an explicit
unit of work; PostgreSQL and :class:`tokenry.store.memory.MemoryStore` implement them alike
(``tests/contract``). This package imports no grpc, protobuf, asyncpg or nats
(``tests/unit/test_flows_imports.py``): transport adapters translate, flows decide.
"""

from __future__ import annotations

from tokenry.flows.authorization_code import AuthorizeOutcome, CodeFlow, Completion
from tokenry.flows.client_credentials import ClientCredentialsFlow
from tokenry.flows.deps import IssuerDeps, TokenRequest, token_format
from tokenry.flows.minting import JWT, OPAQUE, Minter, SigningKeys, TokenResult
from tokenry.flows.refresh import RefreshFlow
from tokenry.flows.subject_tokens import PublishedKeys, SubjectTokenVerifier, VerificationKeys
from tokenry.flows.token import TokenEndpoint, TokenExchange
from tokenry.flows.token_exchange import ExchangeFlow
from tokenry.flows.watermarks import Watermarks

__all__ = [
    "TokenEndpoint",
    "TokenExchange",
    "TokenRequest",
    "TokenResult",
    "IssuerDeps",
    "ClientCredentialsFlow",
    "CodeFlow",
    "AuthorizeOutcome",
    "Completion",
    "RefreshFlow",
    "ExchangeFlow",
    "SubjectTokenVerifier",
    "PublishedKeys",
    "VerificationKeys",
    "Minter",
    "SigningKeys",
    "Watermarks",
    "JWT",
    "OPAQUE",
    "token_format",
]
