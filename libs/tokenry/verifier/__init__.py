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
:class:`VerifierLoop`. A non-Tokenry issuer: :func:`start_jwks_verifier`. Metrics:
``VerifierMetrics().observe(runtime.verifier)``. Calling services attach tokens with
:mod:`tokenry.client`; the strict JOSE core is :mod:`tokenry.jose`. See docs/verifier.md.

Public modules: this package, :mod:`.interceptor` (grpc.aio) and :mod:`.sync_interceptor`
(sync grpc) over one shared policy core, and :mod:`.errors`. Everything else is private; the
names are loaded on first use, so importing the package loads neither gRPC nor NATS until a
name that needs them is asked for.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from tokenry.jose.errors import VerificationError, VerifierUnavailableError
    from tokenry.verifier._config import Claims, StalePolicy, VerifierConfig
    from tokenry.verifier._external import JwksVerifierRuntime, start_jwks_verifier
    from tokenry.verifier._feed import FeedSettings
    from tokenry.verifier._introspection import Introspector
    from tokenry.verifier._metrics import VerifierMetrics
    from tokenry.verifier._runtime import VerifierRuntime, start_verifier
    from tokenry.verifier._verifier import Verifier
    from tokenry.verifier.interceptor import (
        AuthInterceptor,
        MethodPolicy,
        current_claims,
        current_claims_or_none,
    )
    from tokenry.verifier.sync_interceptor import SyncAuthInterceptor, VerifierLoop

__all__ = [
    # verifying
    "Claims",
    "StalePolicy",
    "VerificationError",
    "Verifier",
    "VerifierConfig",
    "VerifierRuntime",
    "VerifierUnavailableError",
    "FeedSettings",
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
]

# name → the module that defines it, imported on first use (PEP 562).
_HOMES: Final = {
    "Claims": "tokenry.verifier._config",
    "StalePolicy": "tokenry.verifier._config",
    "Verifier": "tokenry.verifier._verifier",
    "VerifierConfig": "tokenry.verifier._config",
    "VerificationError": "tokenry.jose.errors",
    "VerifierUnavailableError": "tokenry.jose.errors",
    "VerifierRuntime": "tokenry.verifier._runtime",
    "start_verifier": "tokenry.verifier._runtime",
    "FeedSettings": "tokenry.verifier._feed",
    "JwksVerifierRuntime": "tokenry.verifier._external",
    "start_jwks_verifier": "tokenry.verifier._external",
    "Introspector": "tokenry.verifier._introspection",
    "VerifierMetrics": "tokenry.verifier._metrics",
    "AuthInterceptor": "tokenry.verifier.interceptor",
    "MethodPolicy": "tokenry.verifier._policy",
    "current_claims": "tokenry.verifier._policy",
    "current_claims_or_none": "tokenry.verifier._policy",
    "SyncAuthInterceptor": "tokenry.verifier.sync_interceptor",
    "VerifierLoop": "tokenry.verifier.sync_interceptor",
}

# Removed from __all__ (they moved to tokenry.client); importable, with a warning, for one
# release.
_MOVED_TO_CLIENT: Final = frozenset(
    {
        "ClientAuth",
        "ClientSecretBasic",
        "IssuerTokenFetcher",
        "RefreshPolicy",
        "SyncBearerInterceptor",
        "SyncIssuerTokenFetcher",
        "SyncTokenSource",
        "TokenSource",
        "bearer_interceptors",
    }
)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is not None:
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _MOVED_TO_CLIENT:
        warnings.warn(
            f"tokenry.verifier.{name} is deprecated and will be removed in the next release; "
            "import it from tokenry.client",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module("tokenry.client"), name)
    raise AttributeError(f"module 'tokenry.verifier' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
