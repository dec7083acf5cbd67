"""The resource-server library: verify Tokenry access tokens locally, in a few lines.

runtime = await start_verifier(issuer=ISS, audience="demo-api",
                               keyrotator_addr="127.0.0.1:50054", nats_url=NATS)
server = grpc.aio.server(interceptors=[AuthInterceptor(runtime.verifier)])
...
claims = current_claims()  # inside a handler
"""

from tokenry.verifier.errors import VerificationError
from tokenry.verifier.interceptor import AuthInterceptor, MethodPolicy, current_claims
from tokenry.verifier.runtime import VerifierRuntime, start_verifier
from tokenry.verifier.verifier import Claims, Verifier, VerifierConfig

__all__ = [
    "AuthInterceptor",
    "Claims",
    "MethodPolicy",
    "VerificationError",
    "Verifier",
    "VerifierConfig",
    "VerifierRuntime",
    "current_claims",
    "start_verifier",
]
