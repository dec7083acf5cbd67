"""HTTP <-> :mod:`tokenry.flows` only: the gateway's endpoints hold no token logic of their own.

Every endpoint parses its form with the standard library's ``urllib.parse.parse_qsl`` (strict:
a malformed pair is a 400), refuses a parameter given twice (RFC 6749 §3.1, §3.2), refuses a
bearer token in the query string (RFC 6750 §2.3 is not offered: docs/spec.md §3), and answers errors
as RFC 6749 §5.2 JSON. The use cases run in this process (no network hop).

Size: one adapter per endpoint, each a few lines, plus the form and client-authentication
parsing they share and the fast path for the three POST endpoints; split by endpoint, the
shared parsing would be imported back into each.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokenry.core.clientauth import (
    BasicHeader,
    ClientLookup,
    credentials_from,
    parse_basic,
    peer_from,
    request_peer,
)
from tokenry.core.errors import (
    InsufficientScope,
    InvalidClient,
    InvalidRequest,
    NotFound,
    OAuthError,
    ServerError,
    TemporarilyUnavailable,
)
from tokenry.core.introspection import Introspection
from tokenry.flows import TokenEndpoint, TokenRequest, TokenResult
from tokenry.flows.introspection import IntrospectionFlow, IntrospectRequest
from tokenry.flows.revocation import RevocationFlow, RevokeCommand, Target
from tokenry.jose import JwksCache
from tokenry.services.gateway import cors
from tokenry.services.gateway import metadata as m
from tokenry.services.gateway.sessions import LoginSessions

log = logging.getLogger(__name__)

__all__ = ["ApiHolder", "Call", "FastPath", "GatewayApi", "Jwks", "Routes", "peer_of"]

#: Largest form body accepted (a client assertion or a token is at most 8 KiB).
MAX_BODY = 64 * 1024
MAX_FIELDS = 32
FORM = "application/x-www-form-urlencoded"
# Parameters that may repeat: RFC 8707 §2 resource indicators, RFC 8693 §2.1 audiences.
_REPEATABLE = frozenset({"resource", "audience"})
_NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
_JSON = "application/json"
_INACTIVE_BODY = b'{"active":false}'


@dataclass(slots=True)
class Jwks:
    """The published keys as served: the document, its ETag, and the max-age HTTP caches get."""

    body: bytes = b'{"keys":[]}'
    etag: str = '"empty"'
    max_age: int = 300

    def update(self, keys: list[dict[str, Any]]) -> None:
        # Public members only (RFC 7517 §4): the key store holds public JWKs, and this filter
        # keeps a private member out even if one ever got there.
        public = [{k: v for k, v in key.items() if k not in _PRIVATE_MEMBERS} for key in keys]
        body = json.dumps({"keys": public}, separators=(",", ":"), sort_keys=True).encode()
        self.body = body
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


@dataclass(slots=True)
class GatewayApi:
    """What the routes run, built by the composition root (app.py) once PostgreSQL is up."""

    token: TokenEndpoint
    introspection: IntrospectionFlow
    revocation: RevocationFlow
    jwks: Jwks
    oauth_metadata: bytes
    oidc_metadata: bytes
    #: exception types meaning "PostgreSQL is unreachable": 503, retry (docs/spec.md §7)
    unavailable: tuple[type[BaseException], ...] = ()
    #: the client registry (names on the login and consent pages, CORS origins)
    clients: ClientLookup | None = None
    #: whether some client registered this web origin (CORS preflights, services/gateway/cors.py)
    registered_origin: Callable[[str], Awaitable[bool]] | None = None
    #: the login sessions (prompt, max_age, logout: services/gateway/sessions.py)
    sessions: LoginSessions | None = None
    #: the published verification keys (logout's id_token_hint)
    keys: JwksCache | None = None
    issuer: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class ApiHolder:
    """Set by the lifespan; until then every endpoint answers 503."""

    def __init__(self) -> None:
        self.api: GatewayApi | None = None

    def get(self) -> GatewayApi:
        if self.api is None:
            raise TemporarilyUnavailable("the gateway is starting")
        return self.api


# --- errors ------------------------------------------------------------------------------


def _status(exc: OAuthError) -> int:
    if isinstance(exc, InvalidClient):
        return 401
    if isinstance(exc, InsufficientScope):
        return 403
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, TemporarilyUnavailable):
        return 503
    if isinstance(exc, ServerError):
        return 500
    return 400


def error_response(exc: OAuthError) -> Response:
    """RFC 6749 §5.2 JSON; 401 with ``WWW-Authenticate`` for a failed client authentication."""
    status = _status(exc)
    headers = dict(_NO_STORE)
    if status == 401:
        headers["www-authenticate"] = 'Basic realm="tokenry", charset="UTF-8"'
        # A failure the limiter held back carries its retry hint (issue 13 item 8).
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int) and retry_after > 0:
            headers["retry-after"] = str(retry_after)
    elif status == 503:
        headers["retry-after"] = "1"
    body = {"error": exc.error, "error_description": exc.description}
    return Response(json.dumps(body).encode(), status, headers, media_type=_JSON)


Endpoint = Callable[[Request], Awaitable[Response]]


def guarded(holder: ApiHolder, endpoint: Endpoint) -> Endpoint:
    """OAuth errors as JSON, PostgreSQL outages as 503, anything else as a bare 500 (never a
    stack trace, never a secret: docs/spec.md §7)."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as exc:
            return _error(holder, exc)

    return run


def _error(holder: ApiHolder, exc: Exception) -> Response:
    if isinstance(exc, OAuthError):
        return error_response(exc)
    api = holder.api
    if api is not None and isinstance(exc, api.unavailable):
        return error_response(TemporarilyUnavailable("storage is unavailable; retry"))
    log.exception("gateway: unexpected %s", type(exc).__name__)
    return error_response(ServerError("internal error"))


def _ok_headers(length: int) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"cache-control", b"no-store"),
        (b"pragma", b"no-cache"),
        (b"content-length", str(length).encode()),
    ]
    if length:  # RFC 7009's success is an empty body: no content type
        headers.append((b"content-type", b"application/json"))
    return headers


# --- request parsing ---------------------------------------------------------------------


def refuse_query_token(request: Request) -> None:
    """docs/spec.md §3: bearer tokens are accepted only in the Authorization header, never in a
    URI."""
    _refuse_query_token(request.scope.get("query_string", b""))


class Call(NamedTuple):
    """What the form endpoints read from an HTTP request (Starlette's or the raw ASGI scope's)."""

    query: bytes
    content_type: str
    content_length: str | None
    authorization: str | None
    body: bytes
    #: the client's address for the failure limiter (:func:`peer_of`)
    peer: str = ""


def peer_of(scope: Any, proxy_header: bytes = b"") -> str:
    """The address the failure limiters key on (issue 13 item 8): the TCP peer from the ASGI
    scope, or, only when ``TOKENRY_TRUSTED_PROXY_HEADER`` names a header (``proxy_header``,
    lower case), the address the trusted proxy appended to it (the rightmost entry:
    :func:`tokenry.core.clientauth.peer_from`). Without the setting any such header is ignored,
    so a client cannot choose its own key."""
    client = scope.get("client")
    transport = str(client[0]) if client else ""
    forwarded = None
    if proxy_header:
        values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == proxy_header]
        forwarded = ",".join(values) if values else None
    return peer_from(transport, forwarded, trusted=bool(proxy_header))


async def read_call(request: Request) -> Call:
    declared = request.headers.get("content-length")
    body = b""
    if declared is None or (declared.isdigit() and int(declared) <= MAX_BODY):
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                break
    return Call(
        request.scope.get("query_string", b""),
        request.headers.get("content-type", ""),
        declared,
        request.headers.get("authorization"),
        body,
    )


async def read_form(
    request: Request, repeatable: frozenset[str] = _REPEATABLE
) -> dict[str, list[str]]:
    """The form body (RFC 6749 Appendix B), each name with its values in order."""
    return parse_form(await read_call(request), repeatable)


def _refuse_query_token(query: bytes) -> None:
    if query and b"access_token" in query:
        names = {k for k, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)}
        if "access_token" in names:
            raise InvalidRequest("bearer tokens are not accepted in the query string")


def parse_form(call: Call, repeatable: frozenset[str] = _REPEATABLE) -> dict[str, list[str]]:
    """Checks and decodes the form (strict ``parse_qsl``; nothing hand-written)."""
    _refuse_query_token(call.query)
    if call.content_type.split(";", 1)[0].strip().lower() != FORM:
        raise InvalidRequest(f"the body must be {FORM}")
    declared = call.content_length
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise InvalidRequest("the request body is too large")
    body = call.body
    if len(body) > MAX_BODY:
        raise InvalidRequest("the request body is too large")
    try:
        text = body.decode("ascii")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("malformed form body") from None
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        if "\x00" in value:
            raise InvalidRequest(f"{name[:40]!r} holds a NUL character")
        form.setdefault(name, []).append(value)
    for name, values in form.items():
        if len(values) > 1 and name not in repeatable:
            raise InvalidRequest(f"parameter {name[:40]!r} is repeated (RFC 6749 §3.2)")
    return form


def one(form: Mapping[str, list[str]], name: str) -> str:
    values = form.get(name)
    return values[0] if values else ""


def client_credentials(authorization: str | None, form: Mapping[str, list[str]]) -> Any:
    """The one client authentication method used (RFC 6749 §2.3; Basic form-decoded, §2.3.1)."""
    return credentials_from(
        authorization,
        one(form, "client_id"),
        one(form, "client_secret"),
        one(form, "client_assertion_type"),
        one(form, "client_assertion"),
    )


def claimed_client_id(call: Call) -> str:
    """The client a form request names (Basic user or ``client_id``), unauthenticated: only to
    pick the CORS origins to answer with; "" when the request is malformed."""
    try:
        creds = client_credentials(call.authorization, parse_form(call))
        if isinstance(creds, BasicHeader):
            creds = parse_basic(call.authorization or "")
    except OAuthError:
        return ""
    client_id: str = creds.client_id
    return client_id


def token_body(result: TokenResult) -> bytes:
    """RFC 6749 §5.1 (and RFC 8693 §2.2.1 ``issued_token_type``)."""
    out: dict[str, Any] = {
        "access_token": result.access_token,
        "token_type": result.token_type,
        "expires_in": result.expires_in,
    }
    if result.scope:
        out["scope"] = result.scope
    if result.refresh_token:
        out["refresh_token"] = result.refresh_token
    if result.id_token:
        out["id_token"] = result.id_token
    if result.issued_token_type:
        out["issued_token_type"] = result.issued_token_type
    return json.dumps(out, separators=(",", ":")).encode()


def introspection_body(answer: Introspection) -> bytes:
    """RFC 7662 §2.2: ``{"active": false}`` and nothing else for every negative answer."""
    if not answer.active:
        return _INACTIVE_BODY
    out: dict[str, Any] = {
        "active": True,
        "scope": answer.scope,
        "client_id": answer.client_id,
        "token_type": answer.token_type,
        "exp": answer.exp,
        "iat": answer.iat,
        "sub": answer.sub,
        "aud": list(answer.aud),
        "iss": answer.iss,
        "jti": answer.jti,
    }
    if answer.nbf:
        out["nbf"] = answer.nbf
    if answer.act is not None:
        out["act"] = dict(answer.act)
    if answer.cnf is not None:
        out["cnf"] = dict(answer.cnf)
    return json.dumps(out, separators=(",", ":")).encode()


# --- endpoints ---------------------------------------------------------------------------


class Routes:
    def __init__(self, holder: ApiHolder, issuer_path: str = "", proxy_header: str = "") -> None:
        self._holder = holder
        #: TOKENRY_TRUSTED_PROXY_HEADER (lower case), b"" when unset: see :func:`peer_of`
        self.proxy_header = proxy_header.strip().lower().encode("latin-1")
        # An issuer with a path (https://host/tenant) also serves the path-inserted RFC 8414
        # metadata (§3.1) and the path-appended OIDC one (Discovery §4).
        self._issuer_path = issuer_path.rstrip("/")
        # A cached positive answer is one immutable object: render it once.
        self._rendered: dict[int, tuple[Introspection, bytes]] = {}

    def routes(self) -> list[Route]:
        g = self._holder

        def route(path: str, endpoint: Endpoint, methods: list[str]) -> Route:
            return Route(path, guarded(g, endpoint), methods=methods)

        def options(path: str, methods: str) -> Route:
            async def answer(request: Request) -> Response:
                return await cors.preflight(request, methods, self.origin_registered)

            return Route(path, answer, methods=["OPTIONS"])

        public = [m.JWKS_PATH, m.OAUTH_METADATA_PATH, m.OIDC_METADATA_PATH]
        if self._issuer_path:
            public += [
                m.OAUTH_METADATA_PATH + self._issuer_path,
                self._issuer_path + m.OIDC_METADATA_PATH,
            ]
        return [
            # CORS preflights (services/gateway/cors.py): per client on the endpoints a SPA
            # calls; public on the JWKS and discovery; none on introspection.
            options(m.TOKEN_PATH, "POST"),
            options(m.REVOKE_PATH, "POST"),
            options(m.USERINFO_PATH, "GET, POST"),
            *(Route(path, cors.public_preflight, methods=["OPTIONS"]) for path in public),
            route(m.TOKEN_PATH, self.token, ["POST"]),
            route(m.INTROSPECT_PATH, self.introspect, ["POST"]),
            route(m.REVOKE_PATH, self.revoke, ["POST"]),
            route(m.JWKS_PATH, self.jwks, ["GET", "HEAD"]),
            route(m.OAUTH_METADATA_PATH, self.oauth_metadata, ["GET", "HEAD"]),
            route(m.OIDC_METADATA_PATH, self.oidc_metadata, ["GET", "HEAD"]),
            route("/health/ready", self.ready, ["GET", "HEAD"]),
            route(m.USERINFO_PATH, self.userinfo, ["GET", "POST"]),
            *(
                [
                    route(m.OAUTH_METADATA_PATH + path, self.oauth_metadata, ["GET", "HEAD"]),
                    route(path + m.OIDC_METADATA_PATH, self.oidc_metadata, ["GET", "HEAD"]),
                ]
                if (path := self._issuer_path)
                else []
            ),
        ]

    # The three form endpoints: HTTP-independent, served by Starlette (below) and by the raw
    # ASGI fast path (:class:`FastPath`), which answers them without Starlette's routing,
    # middleware and Request/Response objects.

    async def answer(
        self,
        endpoint: Callable[[GatewayApi, Call], Awaitable[bytes]],
        call: Call,
        origin: str = "",
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Run one form endpoint: (status, headers, body); errors as in :func:`guarded`.
        ``origin``: the request's ``Origin`` header, answered per client (cors.py)."""
        # The failure limiters of the flows key on this peer (tokenry.core.clientauth); each
        # request runs in its own task, so the value is this request's.
        request_peer.set(call.peer)
        try:
            body = await endpoint(self._holder.get(), call)
        except Exception as exc:
            resp = _error(self._holder, exc)
            status, headers, body = resp.status_code, list(resp.raw_headers), bytes(resp.body)
        else:
            status, headers = 200, _ok_headers(len(body))
        if origin:
            headers += await self._cors(origin, claimed_client_id(call))
        return status, headers, body

    async def _cors(self, origin: str, client_id: str) -> list[tuple[bytes, bytes]]:
        api = self._holder.api
        client = None
        if api is not None and api.clients is not None and 0 < len(client_id) <= 255:
            try:
                client = await api.clients.get_client(client_id)
            except Exception:  # no CORS header is the safe answer
                client = None
        return cors.allow(origin, client)

    async def origin_registered(self, origin: str) -> bool:
        api = self._holder.api
        if api is None or api.registered_origin is None:
            return False
        try:
            return await api.registered_origin(origin)
        except Exception:  # storage down: no preflight allowed
            return False

    async def token_endpoint(self, api: GatewayApi, call: Call) -> bytes:
        """RFC 6749 §3.2 / §5: the token endpoint, every grant of :class:`TokenEndpoint`."""
        form = parse_form(call)
        result = await api.token.token(
            TokenRequest(
                grant_type=one(form, "grant_type"),
                scope=one(form, "scope"),
                audiences=(*form.get("audience", ()), *form.get("resource", ())),
                credentials=client_credentials(call.authorization, form),
                code=one(form, "code"),
                redirect_uri=one(form, "redirect_uri"),
                code_verifier=one(form, "code_verifier"),
                refresh_token=one(form, "refresh_token"),
                subject_token=one(form, "subject_token"),
                subject_token_type=one(form, "subject_token_type"),
                actor_token=one(form, "actor_token"),
                requested_token_type=one(form, "requested_token_type"),
                token_format=one(form, "token_format"),
            )
        )
        return token_body(result)

    async def introspection_endpoint(self, api: GatewayApi, call: Call) -> bytes:
        """RFC 7662 §2: the same answers as the introspector's gRPC Introspect."""
        form = parse_form(call)
        creds = client_credentials(call.authorization, form)
        answer = await api.introspection.introspect(
            IntrospectRequest(creds, one(form, "token"), one(form, "token_type_hint"))
        )
        if not answer.active:
            return _INACTIVE_BODY
        # A cached positive answer is one immutable object: render it once.
        held = self._rendered.get(id(answer))
        if held is None or held[0] is not answer:
            if len(self._rendered) >= 4096:
                self._rendered.clear()
            held = (answer, introspection_body(answer))
            self._rendered[id(answer)] = held
        return held[1]

    async def revocation_endpoint(self, api: GatewayApi, call: Call) -> bytes:
        """RFC 7009 §2: 200 with an empty body for every token, known or not (§2.2)."""
        form = parse_form(call)
        await api.revocation.revoke(
            RevokeCommand(
                credentials=client_credentials(call.authorization, form),
                target=Target.TOKEN,
                value=one(form, "token"),
                token_type_hint=one(form, "token_type_hint"),
            )
        )
        return b""

    async def _starlette(
        self, endpoint: Callable[[GatewayApi, Call], Awaitable[bytes]], request: Request
    ) -> Response:
        call = (await read_call(request))._replace(peer=peer_of(request.scope, self.proxy_header))
        origin = request.headers.get("origin", "")
        if endpoint == self.introspection_endpoint:
            origin = ""  # no CORS on introspection
        status, headers, body = await self.answer(endpoint, call, origin)
        resp = Response(body, status)
        resp.raw_headers = headers
        return resp

    async def token(self, request: Request) -> Response:
        return await self._starlette(self.token_endpoint, request)

    async def introspect(self, request: Request) -> Response:
        return await self._starlette(self.introspection_endpoint, request)

    async def revoke(self, request: Request) -> Response:
        return await self._starlette(self.revocation_endpoint, request)

    async def userinfo(self, request: Request) -> Response:
        """OIDC Core §5.3. The access token is taken from the Authorization header only (RFC
        6750 §2.1); it must be an active access token of this deployment (signature, expiry and
        every revocation rule checked against PostgreSQL, as introspection does, so a revoked
        token is refused at once) whose scope includes ``openid``. Errors per RFC 6750 §3."""
        api = self._holder.get()
        query = request.scope.get("query_string", b"")
        body = (await read_call(request)).body if request.method == "POST" else b""
        origin = request.headers.get("origin", "")
        if b"access_token" in query or b"access_token" in body:
            resp = _bearer_error(400, "invalid_request", "send the token in the header only")
            return await self._with_cors(resp, origin, "")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return await self._with_cors(_bearer_error(401, "", ""), origin, "")
        answer = await api.introspection.active_access_token(token.strip())
        if answer is None:
            resp = _bearer_error(401, "invalid_token", "the access token is not active")
            return await self._with_cors(resp, origin, "")
        if "openid" not in answer.scope.split():
            resp = _bearer_error(403, "insufficient_scope", "the openid scope is required")
            return await self._with_cors(resp, origin, answer.client_id)
        body = json.dumps({"sub": answer.sub}, separators=(",", ":")).encode()
        resp = Response(body, 200, _NO_STORE, media_type=_JSON)
        return await self._with_cors(resp, origin, answer.client_id)

    async def _with_cors(self, resp: Response, origin: str, client_id: str) -> Response:
        """Userinfo's CORS: per the token's client; an answer that names no client (no token,
        an inactive one) is readable by an origin some client registered, so a SPA can read
        the RFC 6750 challenge and sign in again."""
        if not origin:
            return resp
        if client_id:
            headers = await self._cors(origin, client_id)
        else:
            headers = cors.headers(origin, allowed=await self.origin_registered(origin))
        for name, value in headers:
            resp.headers.append(name.decode(), value.decode("latin-1"))
        return resp

    async def jwks(self, request: Request) -> Response:
        """The published keys (pending, active, retiring), public members only; HTTP caches may
        keep them for less than the key publish lead, so a pending key is always seen before it
        signs (docs/spec.md §5)."""
        jwks = self._holder.get().jwks
        headers = {
            "cache-control": f"public, max-age={jwks.max_age}",
            "etag": jwks.etag,
            **cors.PUBLIC_HEADERS,
        }
        if _etag_matches(request.headers.get("if-none-match"), jwks.etag):
            return Response(b"", 304, headers)
        return Response(jwks.body, 200, headers, media_type="application/jwk-set+json")

    async def oauth_metadata(self, _request: Request) -> Response:
        return _metadata(self._holder.get().oauth_metadata)

    async def oidc_metadata(self, _request: Request) -> Response:
        return _metadata(self._holder.get().oidc_metadata)

    async def ready(self, _request: Request) -> Response:
        self._holder.get()
        return Response(b"ok", 200, {"cache-control": "no-store"}, media_type="text/plain")


def _bearer_error(status: int, error: str, description: str) -> Response:
    """RFC 6750 §3: the challenge, with the error code when there is one (§3.1)."""
    challenge = 'Bearer realm="tokenry"'
    if error:
        challenge += f', error="{error}", error_description="{description}"'
    headers = {**_NO_STORE, "www-authenticate": challenge}
    if not error:
        return Response(b"", status, headers)
    body = json.dumps({"error": error, "error_description": description}).encode()
    return Response(body, status, headers, media_type=_JSON)


def _metadata(body: bytes) -> Response:
    headers = {"cache-control": "public, max-age=300", **cors.PUBLIC_HEADERS}
    return Response(body, 200, headers, media_type=_JSON)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


class FastPath:
    """Raw ASGI in front of the Starlette app for ``POST`` to the three form endpoints (the hot
    paths): the same :meth:`Routes.answer`, without routing, middleware or Request objects.
    Everything else goes to ``app``."""

    def __init__(self, app: Any, routes: Routes) -> None:
        self._app = app
        self._answer = routes.answer
        self._proxy = routes.proxy_header
        self._endpoints: dict[str, Callable[[GatewayApi, Call], Awaitable[bytes]]] = {
            m.TOKEN_PATH: routes.token_endpoint,
            m.INTROSPECT_PATH: routes.introspection_endpoint,
            m.REVOKE_PATH: routes.revocation_endpoint,
        }

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self._endpoints.get(scope["path"])
            if endpoint is not None:
                await self._serve(endpoint, scope, receive, send)
                return
        await self._app(scope, receive, send)

    async def _serve(
        self,
        endpoint: Callable[[GatewayApi, Call], Awaitable[bytes]],
        scope: Any,
        receive: Any,
        send: Any,
    ) -> None:
        ctype = ""
        length: str | None = None
        authorization: str | None = None
        origin = ""
        forwarded: list[str] = []
        proxy = self._proxy
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype = value.decode("latin-1")
            elif name == b"content-length":
                length = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif proxy and name == proxy:
                forwarded.append(value.decode("latin-1"))
        client = scope.get("client")
        peer = peer_from(
            str(client[0]) if client else "",
            ",".join(forwarded) if forwarded else None,
            trusted=bool(proxy),
        )
        body = b""
        if length is None or (length.isdigit() and int(length) <= MAX_BODY):
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > MAX_BODY:
                    break
        call = Call(scope.get("query_string", b""), ctype, length, authorization, body, peer)
        if scope["path"] == m.INTROSPECT_PATH:
            origin = ""  # no CORS on introspection: resource servers call it, never browsers
        status, headers, out = await self._answer(endpoint, call, origin)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})
