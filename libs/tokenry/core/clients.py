"""The client registry's domain model (RFC 6749 §2, RFC 7591 §2 field names).

A :class:`Client` is plain data; :func:`validate_registration` holds every rule a new
registration must meet (lifetimes under the global maxima of docs/spec.md §2, exact redirect URIs,
consistent type/authentication method, who may hold the ``tokenry:*`` scopes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import urlsplit

from tokenry.core.client_secrets import Pepper, hash_secret
from tokenry.core.errors import InsufficientScope, InvalidRequest
from tokenry.core.grants import parse_scope

ADMIN_SCOPE: Final = "tokenry:admin"
INTROSPECT_SCOPE: Final = "tokenry:introspect"
# May call CompleteAuthorization: asserts who the user is for the front channel (the gateway's
# login app). As powerful as it sounds, so it is reserved like the others.
LOGIN_SCOPE: Final = "tokenry:login"
#: Reads the control plane (ListRevocations, GetHead, GetJwks, the event stream; docs/spec.md §2).
VERIFIER_SCOPE: Final = "tokenry:verifier"
RESERVED_SCOPES: Final = frozenset({ADMIN_SCOPE, INTROSPECT_SCOPE, LOGIN_SCOPE, VERIFIER_SCOPE})
RESERVED_PREFIX: Final = "tokenry:"

# Grant types (RFC 6749 §4, RFC 8693 §2.1). No implicit, no password grant, ever (OAuth 2.1).
CLIENT_CREDENTIALS: Final = "client_credentials"
AUTHORIZATION_CODE: Final = "authorization_code"
REFRESH_TOKEN: Final = "refresh_token"
TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
GRANT_TYPES: Final = frozenset(
    {CLIENT_CREDENTIALS, AUTHORIZATION_CODE, REFRESH_TOKEN, TOKEN_EXCHANGE}
)

# Client types (RFC 6749 §2.1) and token endpoint authentication methods (RFC 7591 §2).
CONFIDENTIAL: Final = "confidential"
PUBLIC: Final = "public"
SECRET_BASIC: Final = "client_secret_basic"
SECRET_POST: Final = "client_secret_post"
PRIVATE_KEY_JWT: Final = "private_key_jwt"
NO_AUTH: Final = "none"
#: RFC 8705 §2.1: mutual-TLS client authentication (PKI method).
TLS_CLIENT_AUTH: Final = "tls_client_auth"
SECRET_METHODS: Final = frozenset({SECRET_BASIC, SECRET_POST})
AUTH_METHODS: Final = frozenset(
    {SECRET_BASIC, SECRET_POST, PRIVATE_KEY_JWT, NO_AUTH, TLS_CLIENT_AUTH}
)

TOKEN_FORMATS: Final = frozenset({"jwt", "opaque"})
ID_TOKEN_ALGS: Final = frozenset({"RS256", "ES256"})

# Global maxima (docs/spec.md §2); per-client lifetimes may only be shorter. The defaults are its
# own.
MAX_ACCESS_TOKEN_TTL: Final = 3600
DEFAULT_ACCESS_TOKEN_TTL: Final = 600
DEFAULT_ID_TOKEN_TTL: Final = 600
MAX_ID_TOKEN_TTL: Final = 3600
AUTH_CODE_TTL: Final = 60
DEFAULT_REFRESH_IDLE_TTL: Final = 7 * 86400
DEFAULT_REFRESH_ABSOLUTE_TTL: Final = 30 * 86400
MAX_REFRESH_IDLE_TTL: Final = DEFAULT_REFRESH_IDLE_TTL
MAX_REFRESH_ABSOLUTE_TTL: Final = DEFAULT_REFRESH_ABSOLUTE_TTL

ANY_CLIENT: Final = "*"
MAX_REDIRECT_URIS: Final = 16
MAX_URI_LENGTH: Final = 2000
_CLIENT_ID: Final = re.compile(r"[A-Za-z0-9._~:@-]{1,255}")
_AUDIENCE: Final = re.compile(r"[\x21-\x7e]{1,255}")
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    secret_hash: str | None
    pepper_id: str | None
    grant_types: frozenset[str]
    scopes: frozenset[str]
    audiences: tuple[str, ...]
    token_format: str = "jwt"
    access_token_ttl: int = DEFAULT_ACCESS_TOKEN_TTL
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    client_type: str = CONFIDENTIAL
    auth_method: str = SECRET_BASIC
    # The client's JWK Set as JSON text (private_key_jwt, RFC 7523 §2.2); None otherwise.
    jwks_json: str | None = None
    redirect_uris: tuple[str, ...] = ()
    id_token_ttl: int = DEFAULT_ID_TOKEN_TTL
    id_token_alg: str = "RS256"
    refresh_token_idle_ttl: int = DEFAULT_REFRESH_IDLE_TTL
    refresh_token_absolute_ttl: int = DEFAULT_REFRESH_ABSOLUTE_TTL
    # RFC 8693 policy: whose tokens this client may exchange (client ids, or "*").
    token_exchange_from: frozenset[str] = frozenset()
    # RFC 8705 §2.1.2: the one identifier a tls_client_auth client's certificate must carry.
    tls_client_auth_san_uri: str = ""
    tls_client_auth_subject_dn: str = ""
    tls_client_auth_san_dns: str = ""
    # RFC 8705 §3.4 tls_client_certificate_bound_access_tokens: tokens carry cnf.x5t#S256.
    certificate_bound: bool = False
    # The browser origins ("https://app.example", exact) the gateway answers CORS for on its
    # token, revocation and userinfo endpoints (docs/gateway.md): single-page apps.
    web_origins: tuple[str, ...] = ()
    # Consent is skipped (login is not): the operator vouches for the client (docs/gateway.md).
    first_party: bool = False
    # OIDC RP-Initiated Logout 1.0 §3: where /oauth2/logout may send the browser back (exact).
    post_logout_redirect_uris: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes

    @property
    def is_public(self) -> bool:
        return self.client_type == PUBLIC

    def may_exchange_from(self, client_id: str) -> bool:
        return ANY_CLIENT in self.token_exchange_from or client_id in self.token_exchange_from

    def __post_init__(self) -> None:
        if not 0 < self.access_token_ttl <= MAX_ACCESS_TOKEN_TTL:
            raise ValueError(
                f"access_token_ttl must be in 1..{MAX_ACCESS_TOKEN_TTL} seconds (docs/spec.md §2)"
            )

    def __repr__(self) -> str:  # the hash is not the secret, but it stays out of logs anyway
        return f"Client(client_id={self.client_id!r}, type={self.client_type!r})"


def secret_client(
    client_id: str,
    secret: str,
    pepper: Pepper,
    *,
    scopes: Iterable[str],
    audiences: tuple[str, ...] = (),
    grant_types: Iterable[str] = (CLIENT_CREDENTIALS,),
    **fields: Any,
) -> Client:
    """A confidential client that authenticates with ``secret`` (RFC 6749 §2.3.1), by default
    for the client credentials grant; ``fields`` are any other :class:`Client` fields.

    Only the peppered hash is kept, with the id of the pepper that made it (docs/spec.md §3).
    Not validated: :func:`validate_registration` is the caller's, as for any registration.
    """
    return Client(
        client_id=client_id,
        secret_hash=hash_secret(pepper, secret),
        pepper_id=pepper.id,
        grant_types=frozenset(grant_types),
        scopes=frozenset(scopes),
        audiences=audiences,
        **fields,
    )


def private_key_jwt_client(
    client_id: str,
    jwks_json: str,
    *,
    scopes: Iterable[str],
    audiences: tuple[str, ...] = (),
    grant_types: Iterable[str] = (CLIENT_CREDENTIALS,),
    **fields: Any,
) -> Client:
    """A confidential client that authenticates with a JWT signed by a key of its JWK Set
    ``jwks_json`` (private_key_jwt, RFC 7523 §2.2), no secret; by default for the client
    credentials grant. ``fields`` are any other :class:`Client` fields; not validated."""
    return Client(
        client_id=client_id,
        secret_hash=None,
        pepper_id=None,
        grant_types=frozenset(grant_types),
        scopes=frozenset(scopes),
        audiences=audiences,
        auth_method=PRIVATE_KEY_JWT,
        jwks_json=jwks_json,
        **fields,
    )


def with_secret(client: Client, secret: str, pepper: Pepper) -> Client:
    """``client`` authenticating with ``secret`` from now on: its peppered hash and the pepper's
    id, replaced together (docs/spec.md §3)."""
    return replace(client, secret_hash=hash_secret(pepper, secret), pepper_id=pepper.id)


def _check_ttl(name: str, value: int, maximum: int) -> None:
    if not 0 < value <= maximum:
        raise InvalidRequest(f"{name} must be 1..{maximum} seconds (docs/spec.md §2)")


def check_redirect_uri(uri: str) -> None:
    """A registrable redirect URI (RFC 6749 §3.1.2, OAuth 2.1 §2.3.1, RFC 8252 §7).

    Absolute, no fragment; https, or http only on a loopback host; or a private-use scheme
    (``com.example.app:/cb``) for native apps. Matching is then by exact string comparison.
    """
    if not uri or len(uri) > MAX_URI_LENGTH or any(c.isspace() for c in uri):
        raise InvalidRequest("redirect URI must be a non-empty URI without spaces")
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise InvalidRequest("redirect URI is not a valid URI") from None
    if not parts.scheme:
        raise InvalidRequest("redirect URI must be absolute (RFC 6749 §3.1.2)")
    if "#" in uri:
        raise InvalidRequest("redirect URI must not have a fragment (RFC 6749 §3.1.2)")
    scheme = parts.scheme.lower()
    if scheme == "https":
        if not parts.hostname:
            raise InvalidRequest("https redirect URI needs a host")
        return
    if scheme == "http":
        if (parts.hostname or "") not in _LOOPBACK_HOSTS:
            raise InvalidRequest("http redirect URIs are allowed only on loopback (RFC 8252 §7.3)")
        return
    if scheme in ("javascript", "data", "file", "vbscript"):
        raise InvalidRequest(f"redirect URI scheme {scheme!r} is not allowed")
    if "." not in scheme:
        # RFC 8252 §7.1: private-use schemes are reverse domain names.
        raise InvalidRequest("a private-use redirect scheme must be a reverse domain name")


def check_web_origin(origin: str) -> None:
    """A CORS origin as a browser sends it (RFC 6454 §6.2): ``scheme://host[:port]``, lower
    case, no path, no wildcard; https, or http only on a loopback host (as redirect URIs)."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        raise InvalidRequest("a web origin must be scheme://host[:port]") from None
    host = parts.hostname or ""
    shaped = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    if "[" in parts.netloc:
        shaped = f"{parts.scheme}://[{host}]" + (f":{port}" if port is not None else "")
    if (
        not host
        or "*" in origin
        or origin != shaped
        or origin.lower() != origin
        or parts.scheme not in ("https", "http")
    ):
        raise InvalidRequest(
            "a web origin is exactly scheme://host[:port] in lower case (no path, no wildcard)"
        )
    if parts.scheme == "http" and host not in _LOOPBACK_HOSTS:
        raise InvalidRequest("http web origins are allowed only on loopback")
    if (parts.scheme, port) in (("https", 443), ("http", 80)):
        raise InvalidRequest("a web origin omits its scheme's default port, as browsers send it")


def check_jwks(jwks_json: str) -> dict[str, Any]:
    """A client JWK Set for private_key_jwt: public keys with ``kid`` and a pinned ``alg``."""
    try:
        doc = json.loads(jwks_json)
    except ValueError:
        raise InvalidRequest("jwks is not valid JSON") from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not keys or len(keys) > 10:
        raise InvalidRequest("jwks must be a JWK Set with 1 to 10 keys")
    kids = set()
    for jwk in keys:
        if not isinstance(jwk, dict):
            raise InvalidRequest("each JWK must be a JSON object")
        if {"d", "p", "q", "dp", "dq", "qi", "k"} & set(jwk):
            raise InvalidRequest("jwks must hold public keys only")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or kid in kids:
            raise InvalidRequest("every JWK needs a unique kid")
        kids.add(kid)
        if jwk.get("alg") not in ("ES256", "EdDSA", "PS256", "RS256"):
            raise InvalidRequest("every JWK needs alg ES256, EdDSA, PS256 or RS256 (RFC 8725 §3.1)")
    result: dict[str, Any] = doc
    return result


def _check_type_and_method(client: Client, reserved: set[str]) -> None:
    if client.client_type not in (CONFIDENTIAL, PUBLIC):
        raise InvalidRequest("client_type must be confidential or public")
    if client.auth_method not in AUTH_METHODS:
        raise InvalidRequest(f"token_endpoint_auth_method must be one of {sorted(AUTH_METHODS)}")
    if client.is_public:
        if client.auth_method != NO_AUTH:
            raise InvalidRequest("a public client authenticates with method none")
        if client.grant_types & {CLIENT_CREDENTIALS, TOKEN_EXCHANGE}:
            # RFC 6749 §4.4: "MUST only be used by confidential clients".
            raise InvalidRequest(
                "a public client may use authorization_code and refresh_token only"
            )
        if reserved:
            raise InvalidRequest("a public client cannot hold tokenry:* scopes")
    elif client.auth_method == NO_AUTH:
        raise InvalidRequest("a confidential client must authenticate")
    if client.auth_method == PRIVATE_KEY_JWT:
        if not client.jwks_json:
            raise InvalidRequest("private_key_jwt needs the client's jwks")
        check_jwks(client.jwks_json)
    elif client.jwks_json:
        raise InvalidRequest("jwks is only for private_key_jwt clients")


def _check_mtls(client: Client) -> None:
    """RFC 8705 registration rules."""
    identities = [
        v
        for v in (
            client.tls_client_auth_san_uri,
            client.tls_client_auth_subject_dn,
            client.tls_client_auth_san_dns,
        )
        if v
    ]
    if client.auth_method == TLS_CLIENT_AUTH:
        # RFC 8705 §2.1.2: exactly one of the identifiers.
        if len(identities) != 1 or client.secret_hash is not None:
            raise InvalidRequest(
                "tls_client_auth needs exactly one of tls_client_auth_san_uri,"
                " tls_client_auth_subject_dn, tls_client_auth_san_dns, and no secret"
            )
    elif identities:
        raise InvalidRequest("tls_client_auth_* identifiers are only for tls_client_auth")
    if client.certificate_bound and client.token_format != "jwt":
        raise InvalidRequest("certificate-bound tokens are JWTs (token_format jwt)")


def _check_lifetimes(client: Client) -> None:
    if client.token_format not in TOKEN_FORMATS:
        raise InvalidRequest("token_format must be jwt or opaque")
    if client.id_token_alg not in ID_TOKEN_ALGS:
        raise InvalidRequest("id_token_alg must be RS256 or ES256")
    _check_ttl("access_token_ttl", client.access_token_ttl, MAX_ACCESS_TOKEN_TTL)
    _check_ttl("id_token_ttl", client.id_token_ttl, MAX_ID_TOKEN_TTL)
    _check_ttl("refresh_token_idle_ttl", client.refresh_token_idle_ttl, MAX_REFRESH_IDLE_TTL)
    _check_ttl(
        "refresh_token_absolute_ttl", client.refresh_token_absolute_ttl, MAX_REFRESH_ABSOLUTE_TTL
    )
    if client.refresh_token_idle_ttl > client.refresh_token_absolute_ttl:
        raise InvalidRequest("refresh_token_idle_ttl cannot exceed refresh_token_absolute_ttl")


def _check_targets(client: Client) -> None:
    if AUTHORIZATION_CODE in client.grant_types and not client.redirect_uris:
        raise InvalidRequest("authorization_code needs at least one redirect URI")
    if len(client.redirect_uris) > MAX_REDIRECT_URIS:
        raise InvalidRequest(f"at most {MAX_REDIRECT_URIS} redirect URIs")
    for uri in client.redirect_uris:
        check_redirect_uri(uri)
    if len(client.audiences) > 16 or not all(_AUDIENCE.fullmatch(a) for a in client.audiences):
        raise InvalidRequest("audiences must be up to 16 printable ASCII identifiers")
    if client.token_exchange_from and TOKEN_EXCHANGE not in client.grant_types:
        raise InvalidRequest("token_exchange_from needs the token-exchange grant")
    _check_browser(client)


def _check_browser(client: Client) -> None:
    """Web origins, first-party and post-logout URIs (docs/gateway.md)."""
    if len(client.web_origins) > MAX_REDIRECT_URIS:
        raise InvalidRequest(f"at most {MAX_REDIRECT_URIS} web origins")
    for origin in client.web_origins:
        check_web_origin(origin)
    if len(client.post_logout_redirect_uris) > MAX_REDIRECT_URIS:
        raise InvalidRequest(f"at most {MAX_REDIRECT_URIS} post-logout redirect URIs")
    for uri in client.post_logout_redirect_uris:
        check_redirect_uri(uri)
    if client.first_party:
        if AUTHORIZATION_CODE not in client.grant_types:
            raise InvalidRequest("first_party is for clients of the authorization code grant")
        # RFC 8252 §8.6: no consent skipped for a client whose identity cannot be assured. A
        # public client is identified only by where its codes go: https URIs only (a custom
        # scheme or a loopback port can be claimed by another app).
        if client.is_public and not all(u.startswith("https://") for u in client.redirect_uris):
            raise InvalidRequest(
                "a public first-party client needs https redirect URIs only (RFC 8252 §8.6)"
            )


def validate_registration(client: Client, *, registrar_is_admin: bool) -> None:
    """Every rule a new registration must meet.

    Raises:
        InvalidRequest: an inconsistent or out-of-range field (the message names it).
        InvalidScope: a scope that is not an RFC 6749 §3.3 scope token.
        InsufficientScope: a ``tokenry:*`` scope given by a caller that is not an admin.
    """
    if not _CLIENT_ID.fullmatch(client.client_id):
        raise InvalidRequest("client_id must be 1-255 characters of A-Z a-z 0-9 . _ ~ : @ -")
    parse_scope(" ".join(sorted(client.scopes)))
    reserved = {s for s in client.scopes if s.startswith(RESERVED_PREFIX)}
    if reserved and not registrar_is_admin:
        raise InsufficientScope(f"only an admin can grant {', '.join(sorted(reserved))}")
    unknown_reserved = reserved - RESERVED_SCOPES
    if unknown_reserved:
        raise InvalidRequest(f"unknown reserved scope {sorted(unknown_reserved)[0]!r}")
    unknown = client.grant_types - GRANT_TYPES
    if unknown:
        # OAuth 2.1 §10: no implicit, no password grant.
        raise InvalidRequest(f"unsupported grant type {sorted(unknown)[0]!r}")
    if not client.grant_types:
        raise InvalidRequest("a client needs at least one grant type")
    _check_type_and_method(client, reserved)
    _check_mtls(client)
    _check_lifetimes(client)
    _check_targets(client)
    if len(client.description) > 500:
        raise InvalidRequest("description must be at most 500 characters")
