"""CORS for single-page apps (Fetch standard, "CORS protocol"), per client.

A client registers the browser origins it runs on (``web_origins``: exact
``scheme://host[:port]`` strings, no wildcard; :func:`tokenry.core.clients.check_web_origin`).
The token, revocation and userinfo endpoints then answer such an origin with
``Access-Control-Allow-Origin: <that origin>`` and ``Vary: Origin``:

- on an actual request, only when the origin is registered by **the client the request is
  about** (the client that authenticates at the token and revocation endpoints, the client the
  access token was issued to at userinfo) — another client's origin reads nothing;
- on a preflight (``OPTIONS``), which carries no body and so names no client, when the origin is
  registered by some client (the actual request is then checked as above).

Never ``Access-Control-Allow-Credentials``: a SPA authenticates with its tokens, not with
cookies, so the gateway's session cookie is never readable cross-origin. Introspection gets no
CORS at all (resource servers call it, never browsers). The JWKS and the discovery documents are
public (``Access-Control-Allow-Origin: *``, no credentials), as Keycloak and Hydra serve them:
they hold nothing a page could not fetch through its own server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from tokenry.core.clients import Client

__all__ = [
    "ALLOWED_HEADERS",
    "PREFLIGHT_MAX_AGE",
    "PUBLIC_HEADERS",
    "allow",
    "headers",
    "preflight",
    "public_preflight",
]

PREFLIGHT_MAX_AGE = "600"
ALLOWED_HEADERS = "authorization, content-type"
#: the JWKS and discovery: readable by any page, never with credentials
PUBLIC_HEADERS = {"access-control-allow-origin": "*"}
_MAX_ORIGIN = 300


def allow(origin: str, client: Client | None) -> list[tuple[bytes, bytes]]:
    """The CORS headers of an actual answer to ``origin`` about ``client`` (none when the
    origin is not one the client registered). ``Vary: Origin`` whenever an origin was sent."""
    return headers(origin, allowed=client is not None and origin in client.web_origins)


def headers(origin: str, *, allowed: bool) -> list[tuple[bytes, bytes]]:
    if not origin:
        return []
    vary = [(b"vary", b"Origin")]
    if not allowed:
        return vary
    return [
        *vary,
        (b"access-control-allow-origin", origin.encode("latin-1")),
        # RFC 6750 §3: a SPA must be able to read the challenge of a refused bearer token.
        (b"access-control-expose-headers", b"WWW-Authenticate"),
    ]


async def preflight(
    request: Request, methods: str, registered: Callable[[str], Awaitable[bool]]
) -> Response:
    """``OPTIONS`` on a per-client endpoint: allowed when some client registered the origin."""
    origin = request.headers.get("origin", "")
    out = {"vary": "Origin", "cache-control": "no-store"}
    if origin and len(origin) <= _MAX_ORIGIN and origin.isascii() and await registered(origin):
        out.update(
            {
                "access-control-allow-origin": origin,
                "access-control-allow-methods": methods,
                "access-control-allow-headers": ALLOWED_HEADERS,
                "access-control-max-age": PREFLIGHT_MAX_AGE,
            }
        )
    return Response(b"", 204, out)


async def public_preflight(_request: Request) -> Response:
    """``OPTIONS`` on the JWKS and discovery documents: any origin, GET only."""
    out = {
        **PUBLIC_HEADERS,
        "access-control-allow-methods": "GET, HEAD",
        "access-control-max-age": PREFLIGHT_MAX_AGE,
    }
    return Response(b"", 204, out)
