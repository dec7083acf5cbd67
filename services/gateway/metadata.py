"""The discovery documents: RFC 8414 authorization server metadata and OIDC Discovery 1.0.

They list exactly what this deployment supports (issue 14): the grants of OAuth 2.1 (no
implicit, no password), PKCE with ``S256`` only, the client authentication methods of
:mod:`tokenry.core.clientauth`, and the signing algorithms.
"""

from __future__ import annotations

from typing import Any

from tokenry.core.client_assertion import ALGORITHMS, CLIENT_ASSERTION_TYPE
from tokenry.core.clientauth import BASIC, POST, TOKEN_ENDPOINT_PATH
from tokenry.core.clients import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    ID_TOKEN_ALGS,
    NO_AUTH,
    PRIVATE_KEY_JWT,
    REFRESH_TOKEN,
    TOKEN_EXCHANGE,
)

__all__ = [
    "AUTHORIZE_PATH",
    "INTROSPECT_PATH",
    "JWKS_PATH",
    "LOGOUT_PATH",
    "OAUTH_METADATA_PATH",
    "OIDC_METADATA_PATH",
    "REVOKE_PATH",
    "TOKEN_PATH",
    "USERINFO_PATH",
    "authorization_server_metadata",
    "openid_configuration",
]

TOKEN_PATH = TOKEN_ENDPOINT_PATH
INTROSPECT_PATH = "/oauth2/introspect"
REVOKE_PATH = "/oauth2/revoke"
AUTHORIZE_PATH = "/oauth2/authorize"
JWKS_PATH = "/.well-known/jwks.json"
OAUTH_METADATA_PATH = "/.well-known/oauth-authorization-server"
OIDC_METADATA_PATH = "/.well-known/openid-configuration"
USERINFO_PATH = "/oauth2/userinfo"
LOGOUT_PATH = "/oauth2/logout"

# What a client assertion may be signed with (tokenry.core.client_assertion accepts these).
ASSERTION_ALGS = tuple(sorted(ALGORITHMS))
# Authenticated endpoints (token, introspection, revocation) accept the same methods.
AUTH_METHODS = (BASIC, POST, PRIVATE_KEY_JWT)


def authorization_server_metadata(issuer: str, access_token_alg: str) -> dict[str, Any]:
    """RFC 8414 §2, for ``issuer`` (the gateway's external URL, TOKENRY_ISSUER_URL)."""
    base = issuer.rstrip("/")
    return {
        "issuer": issuer,
        "authorization_endpoint": base + AUTHORIZE_PATH,
        "token_endpoint": base + TOKEN_PATH,
        "jwks_uri": base + JWKS_PATH,
        "introspection_endpoint": base + INTROSPECT_PATH,
        "revocation_endpoint": base + REVOKE_PATH,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            AUTHORIZATION_CODE,
            CLIENT_CREDENTIALS,
            REFRESH_TOKEN,
            TOKEN_EXCHANGE,
        ],
        "code_challenge_methods_supported": ["S256"],
        # A public client (RFC 6749 §2.1) authenticates with "none" at the token endpoint only.
        "token_endpoint_auth_methods_supported": [*AUTH_METHODS, NO_AUTH],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        # RFC 9068 access tokens are signed with the deployment's access-token algorithm.
        "access_token_signing_alg_values_supported": [access_token_alg],
        "authorization_response_iss_parameter_supported": True,  # RFC 9207 §3
        # RFC 8705 §3.3: the gateway takes no client certificate (uvicorn neither asks for one
        # nor puts the peer's in the ASGI scope), so it offers neither tls_client_auth nor
        # certificate-bound tokens, and no mtls_endpoint_aliases (§5); a client registered
        # for either is refused here and served over gRPC mTLS (docs/gateway.md).
        "tls_client_certificate_bound_access_tokens": False,
        "client_assertion_types_supported": [CLIENT_ASSERTION_TYPE],
    }


def openid_configuration(issuer: str, access_token_alg: str) -> dict[str, Any]:
    """OIDC Discovery 1.0 §3: the RFC 8414 document plus the OpenID Provider fields."""
    doc = authorization_server_metadata(issuer, access_token_alg)
    doc.update(
        {
            "userinfo_endpoint": issuer.rstrip("/") + USERINFO_PATH,
            # OIDC RP-Initiated Logout 1.0 §2.1
            "end_session_endpoint": issuer.rstrip("/") + LOGOUT_PATH,
            # OIDC Core §3.1.2.1 prompt values honoured (Initiating User Registration §4.1
            # names this field)
            "prompt_values_supported": ["consent", "login", "none", "select_account"],
            "subject_types_supported": ["public"],
            # RS256 by default (OIDC Core §15.1); a client may ask for ES256.
            "id_token_signing_alg_values_supported": sorted(ID_TOKEN_ALGS),
            "scopes_supported": ["openid"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce"],
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "claims_parameter_supported": False,
        }
    )
    return doc
