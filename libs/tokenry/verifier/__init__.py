"""The resource-server library: verify Tokenry access tokens locally, in a few lines.

Server side (grpc.aio)::

    runtime = await start_verifier(issuer=ISS, audience="demo-api",
                                   keyrotator_addr="127.0.0.1:50054",
                                   revocation_addr="127.0.0.1:50053", nats_url=NATS)
    server = grpc.aio.server(interceptors=[AuthInterceptor(runtime.verifier, {
        "/demo.Greeter/*": MethodPolicy(scopes={"demo.read"}),
    })])
    ...
    claims = current_claims()  # inside a handler

Sync servers use :class:`SyncAuthInterceptor` with the verifier running on a
:class:`VerifierLoop`; calling services attach tokens with :func:`bearer_interceptors` (aio) or
:class:`SyncBearerInterceptor`. A non-Tokenry issuer: :func:`start_jwks_verifier`. Metrics:
``VerifierMetrics().observe(runtime.verifier)``. See docs/verifier.md.
"""

from tokenry.verifier.client import (
    ClientAuth,
    ClientSecretBasic,
    IssuerTokenFetcher,
    RefreshPolicy,
    SyncBearerInterceptor,
    SyncIssuerTokenFetcher,
    SyncTokenSource,
    TokenSource,
    bearer_interceptors,
)
from tokenry.verifier.errors import VerificationError, VerifierUnavailableError
from tokenry.verifier.external import JwksVerifierRuntime, start_jwks_verifier
from tokenry.verifier.interceptor import (
    AuthInterceptor,
    MethodPolicy,
    current_claims,
    current_claims_or_none,
)
from tokenry.verifier.introspection import Introspector
from tokenry.verifier.metrics import VerifierMetrics
from tokenry.verifier.runtime import VerifierRuntime, start_verifier
from tokenry.verifier.sync_interceptor import SyncAuthInterceptor, VerifierLoop
from tokenry.verifier.verifier import Claims, StalePolicy, Verifier, VerifierConfig

__all__ = [
    # verifying
    "Claims",
    "StalePolicy",
    "VerificationError",
    "Verifier",
    "VerifierConfig",
    "VerifierRuntime",
    "VerifierUnavailableError",
    "start_verifier",
    "JwksVerifierRuntime",
    "start_jwks_verifier",
    "Introspector",
    "VerifierMetrics",
    # server interceptors
    "AuthInterceptor",
    "MethodPolicy",
    "SyncAuthInterceptor",
    "VerifierLoop",
    "current_claims",
    "current_claims_or_none",
    # client side
    "ClientAuth",
    "ClientSecretBasic",
    "IssuerTokenFetcher",
    "RefreshPolicy",
    "SyncBearerInterceptor",
    "SyncIssuerTokenFetcher",
    "SyncTokenSource",
    "TokenSource",
    "bearer_interceptors",
]
