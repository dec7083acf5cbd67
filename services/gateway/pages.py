"""The built-in login app: ``/oauth2/authorize`` → login → consent → redirect with ``code``,
``state`` and ``iss`` (OIDC Core §3.1.2.1, RFC 9207), over :class:`tokenry.flows.CodeFlow`.

Hydra's model: :meth:`CodeFlow.authorize` validates the request and parks it behind a single-use
login challenge; this app authenticates the user (a pluggable
:class:`~tokenry.services.gateway.users.Authenticator`), asks for consent and calls
:meth:`CodeFlow.complete`, which issues the code and the redirect. Errors that may be redirected
(RFC 6749 §4.1.2.1) are, with ``iss``; a request whose client or redirect URI is unknown gets an
error page and never a redirect.

Pages are server-rendered HTML with no external assets. Forms carry a CSRF token bound to the
browser's session cookie (``Secure`` over HTTPS, ``HttpOnly``, ``SameSite=Lax``) and to the
login challenge; the consent form also carries the authenticated subject, MACed so it cannot
be swapped. Every page sends a strict CSP, ``X-Frame-Options: DENY``, ``Referrer-Policy:
no-referrer`` and ``Cache-Control: no-store`` (RFC 9700 §4.16, §4.2).

Size: one state machine (authorize → login → consent → complete) whose every step checks the
same bindings (CSRF token, pending MAC, subject MAC, live login session); split, the checks
would sit in different files from the steps they guard. The HTML lives in ui.py.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tokenry.core.authorize import AuthorizationRequest, add_query
from tokenry.core.clients import LOGIN_SCOPE, Client
from tokenry.core.errors import InvalidRequest, OAuthError
from tokenry.flows import AuthorizeOutcome, Completion
from tokenry.services.gateway.routes import (
    ApiHolder,
    GatewayApi,
    peer_of,
    read_form,
    refuse_query_token,
)
from tokenry.services.gateway.sessions import LoginSession
from tokenry.services.gateway.ui import (
    CSS_PATH,
    FAVICON_PATH,
    ICON,
    ICON_PATH,
    SCOPE_DESCRIPTIONS,
    STYLESHEET,
    consent_body,
    error_page,
    hidden,
    login_body,
    page,
    redirect,
)
from tokenry.services.gateway.users import Authenticator, LoginThrottle

__all__ = [
    "HOST_SESSION_COOKIE",
    "LOGIN_COOKIE",
    "SCOPE_DESCRIPTIONS",
    "LoginApp",
    "external_login_url",
]

SESSION_COOKIE = "tkr_session"  # the browser's id for CSRF tokens (no login state)
# The same, whenever the cookie is Secure: a __Host- cookie (RFC 6265bis §4.1.3.2: Secure, Path=/,
# no Domain) cannot be planted by a sibling subdomain, so nobody else can choose the value the
# CSRF tokens are bound to. Over plain HTTP (dev) a browser refuses a __Host- cookie, since it
# cannot be Secure there, so the plain name stays (docs/gateway.md).
HOST_SESSION_COOKIE = "__Host-" + SESSION_COOKIE
LOGIN_COOKIE = "tkr_login"  # the login session (services/gateway/sessions.py)
# The caller that completes authorizations in process (CodeFlow.complete checks its scope).
_LOGIN_CALLER = Client(
    client_id="tokenry-gateway-login",
    secret_hash=None,
    pepper_id=None,
    grant_types=frozenset(),
    scopes=frozenset({LOGIN_SCOPE}),
    audiences=(),
)


@dataclass(frozen=True, slots=True)
class _Pending:
    """What the login and consent forms carry between requests, MACed (``pending_mac``) so a
    posted form cannot name another client, other scopes or a skipped consent."""

    challenge: str
    client_id: str
    client_name: str
    scopes: tuple[str, ...]
    #: "skip" for a first-party client without prompt=consent, else "ask"
    consent: str = "ask"
    #: the host the browser goes back to (the validated redirect URI's), shown on consent
    return_to: str = ""


class LoginApp:
    """The authorize, login and consent endpoints."""

    def __init__(
        self,
        holder: ApiHolder,
        users: Authenticator,
        *,
        secure_cookies: bool,  # also when the request is not HTTPS (TLS terminates in front)
        throttle: LoginThrottle | None = None,
        key: bytes | None = None,
        login_url: str = "",
        proxy_header: str = "",
    ) -> None:
        self._holder = holder
        #: TOKENRY_TRUSTED_PROXY_HEADER: the throttle's address (routes.peer_of)
        self._proxy = proxy_header.strip().lower().encode("latin-1")
        self._users = users
        self._secure = secure_cookies
        self._throttle = throttle or LoginThrottle()
        self._key = key or os.urandom(32)
        #: TOKENRY_LOGIN_URL: an external login app instead of these pages (docs/gateway.md)
        self._login_url = login_url

    def routes(self) -> list[Route]:
        return [
            Route("/oauth2/authorize", self.authorize, methods=["GET", "POST"]),
            Route("/oauth2/login", self.login, methods=["POST"]),
            Route("/oauth2/consent", self.consent, methods=["POST"]),
            Route(CSS_PATH, self.css, methods=["GET", "HEAD"]),
            Route(ICON_PATH, self.icon, methods=["GET", "HEAD"]),
            # Browsers ask for it on every page: an icon, not a 404 (an SVG works in all of them)
            Route(FAVICON_PATH, self.icon, methods=["GET", "HEAD"]),
        ]

    async def css(self, _request: Request) -> Response:
        headers = {"cache-control": "public, max-age=86400", "x-content-type-options": "nosniff"}
        return Response(STYLESHEET.encode(), 200, headers, media_type="text/css")

    async def icon(self, _request: Request) -> Response:
        headers = {"cache-control": "public, max-age=86400", "x-content-type-options": "nosniff"}
        return Response(ICON.encode(), 200, headers, media_type="image/svg+xml")

    # --- MACs ----------------------------------------------------------------------------

    def mac(self, *parts: str) -> str:
        msg = "\x00".join(parts).encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def _csrf(self, session: str, challenge: str) -> str:
        return self.mac("csrf", session, challenge)

    def _pending_mac(self, session: str, p: _Pending) -> str:
        return self.mac(
            "pending", session, p.challenge, p.client_id, p.client_name, " ".join(p.scopes),
            p.consent, p.return_to,
        )  # fmt: skip

    def _check_form(self, request: Request, form: dict[str, list[str]]) -> tuple[str, _Pending]:
        """The CSRF token (bound to the browser's session cookie and the challenge) and the
        MACed pending request; raises on any mismatch."""
        session = request.cookies.get(self._session_cookie(request), "")
        challenge = _one(form, "login_challenge")
        given = _one(form, "csrf")
        pending = _Pending(
            challenge,
            _one(form, "client_id"),
            _one(form, "client_name"),
            tuple(_one(form, "scope").split()),
            _one(form, "consent") or "ask",
            _one(form, "return_to"),
        )
        if not session or not challenge or not same_mac(given, self._csrf(session, challenge)):
            raise InvalidRequest("the form expired or was not sent from this browser; start again")
        if not same_mac(_one(form, "pending_mac"), self._pending_mac(session, pending)):
            raise InvalidRequest("the form was changed; start again")
        return session, pending

    # --- endpoints -----------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        try:
            refuse_query_token(request)
            if request.method == "GET":
                params = _single(parse_qsl(request.url.query, keep_blank_values=True))
            else:
                form = await read_form(request)
                params = {k: v[0] for k, v in form.items()}
        except OAuthError as exc:
            return error_page(exc.description, exc.error)
        api = self._holder.get()
        flow = api.token.code_flow
        try:
            outcome = await flow.authorize(
                AuthorizationRequest(
                    response_type=params.get("response_type", ""),
                    client_id=params.get("client_id", ""),
                    redirect_uri=params.get("redirect_uri", ""),
                    scope=params.get("scope", ""),
                    state=params.get("state", ""),
                    code_challenge=params.get("code_challenge", ""),
                    code_challenge_method=params.get("code_challenge_method", ""),
                    nonce=params.get("nonce", ""),
                    resources=tuple(v for k, v in _pairs(request, params) if k == "resource"),
                    prompt=params.get("prompt", ""),
                    max_age=params.get("max_age", ""),
                )
            )
        except OAuthError as exc:
            # Unknown client or redirect URI: never redirect (RFC 6749 §4.1.2.1).
            return error_page(exc.description, exc.error)
        if outcome.redirect_to:
            return redirect(outcome.redirect_to)
        if outcome.error:
            # Unknown client or redirect URI: never redirect (RFC 6749 §4.1.2.1).
            return error_page(outcome.error_description or outcome.error, outcome.error)
        if self._login_url:
            return redirect(external_login_url(self._login_url, outcome))
        return await self._front(request, api, outcome, _host(params.get("redirect_uri", "")))

    async def _front(
        self, request: Request, api: GatewayApi, outcome: AuthorizeOutcome, return_to: str
    ) -> Response:
        """The login page, the consent page or the redirect, per the login session, the
        client's first-party mark, prompt and max_age (OIDC Core §3.1.2.1)."""
        client = await api.clients.get_client(outcome.client_id) if api.clients else None
        skip = client is not None and client.first_party and "consent" not in outcome.prompt
        pending = _pending(outcome, client, "skip" if skip else "ask", return_to)
        session = request.cookies.get(self._session_cookie(request)) or os.urandom(24).hex()
        login = await self._signed_in(request)
        # OIDC Core §3.1.2.1: a session older than max_age, prompt=login and prompt=
        # select_account all mean the user signs in again; max_age=0 is prompt=login (Core 1.0
        # errata set 2).
        max_age = outcome.max_age
        fresh = login is not None and (
            max_age is None or 0 < max_age >= self._now() - login.auth_time
        )
        must_login = not fresh or bool(outcome.prompt & {"login", "select_account"})
        if "none" in outcome.prompt:  # no page may be shown (OIDC Core §3.1.2.6)
            if must_login:
                return await self._refuse(pending.challenge, "login_required")
            if not skip:
                return await self._refuse(pending.challenge, "consent_required")
        if must_login or login is None:
            resp = self._login_page(pending, session)
        elif skip:
            return await self._finish(pending, login.subject, login.auth_time)
        else:
            token = request.cookies.get(LOGIN_COOKIE, "")
            resp = self._consent_page(pending, session, token, login.subject, login.auth_time)
        self._set_cookie(request, resp, self._session_cookie(request), session)
        return resp

    async def login(self, request: Request) -> Response:
        try:
            form = await read_form(request)
            session, pending = self._check_form(request, form)
        except OAuthError as exc:
            return error_page(exc.description, exc.error)
        username = _one(form, "username")
        password = _one(form, "password")
        address = peer_of(request.scope, self._proxy) or "?"
        user_key, addr_key = f"u:{username}", f"a:{address}"
        if not self._throttle.allowed(user_key, addr_key):
            return self._login_page(
                pending,
                session,
                error="Too many attempts. Wait a few minutes and try again.",
                username=username,
                status=429,
            )
        subject = self._users.authenticate(username, password) if username and password else None
        if subject is None:
            self._throttle.failed(user_key, addr_key)
            return self._login_page(
                pending,
                session,
                error="Wrong username or password.",
                username=username,
                status=401,
            )
        self._throttle.succeeded(user_key)
        auth_time = self._now()
        # A new login session on every sign-in (never the old token: no session fixation).
        sessions = self._holder.get().sessions
        old = request.cookies.get(LOGIN_COOKIE, "")
        token = ""
        if sessions is not None:
            if old:
                await sessions.end(old)
            token = await sessions.start(subject, auth_time)
        if pending.consent == "skip":
            resp = await self._finish(pending, subject, auth_time)
        else:
            resp = self._consent_page(pending, session, token, subject, auth_time)
        if token:
            ttl = sessions.ttl if sessions is not None else None
            self._set_cookie(request, resp, LOGIN_COOKIE, token, max_age=ttl)
        return resp

    async def consent(self, request: Request) -> Response:
        try:
            form = await read_form(request, repeatable=frozenset({"grant_scope"}))
            session, pending = self._check_form(request, form)
        except OAuthError as exc:
            return error_page(exc.description, exc.error)
        challenge = pending.challenge
        subject = _one(form, "subject")
        auth_time = _one(form, "auth_time")
        token = request.cookies.get(LOGIN_COOKIE, "")
        if not same_mac(
            _one(form, "subject_mac"),
            self._subject_mac(session, challenge, token, subject, auth_time),
        ):
            # Also a consent page left open after logout: the cookie (and its MAC) is gone.
            return error_page("the form was changed or you signed out; start again")
        if _one(form, "decision") == "switch":
            # "Not you?": sign in (as someone else) for the same parked request; the sign-in
            # starts a new login session in place of the current one.
            return self._login_page(pending, session)
        sessions = self._holder.get().sessions
        login = await sessions.get(token) if sessions is not None and token else None
        if sessions is not None and (login is None or login.subject != subject):
            # The session the page was shown for ended (logout elsewhere, expiry, a user
            # deleted): no code for its user (docs/gateway.md, login sessions).
            return error_page("you are no longer signed in; start again")
        granted = " ".join(form.get("grant_scope", []))
        # The granted set is always explicit: nothing ticked grants nothing, which is a denial.
        deny = _one(form, "decision") != "allow" or not granted
        return await self._complete(
            Completion(
                login_challenge=challenge,
                subject=subject,
                granted_scope=granted,
                auth_time=int(auth_time) if auth_time.isdigit() else 0,
                deny=deny,
            )
        )

    # --- completing ----------------------------------------------------------------------

    async def _finish(self, pending: _Pending, subject: str, auth_time: int) -> Response:
        """No consent page (a first-party client): exactly the requested-and-allowed scopes,
        which CodeFlow.authorize already narrowed to the client's registration."""
        return await self._complete(
            Completion(
                login_challenge=pending.challenge,
                subject=subject,
                granted_scope=" ".join(pending.scopes),
                auth_time=auth_time,
                deny=not pending.scopes,
            )
        )

    async def _refuse(self, challenge: str, error: str) -> Response:
        return await self._complete(
            Completion(
                login_challenge=challenge,
                subject="",
                granted_scope="",
                auth_time=0,
                deny=True,
                error=error,
            )
        )

    async def _complete(self, done: Completion) -> Response:
        flow = self._holder.get().token.code_flow
        try:
            outcome = await flow.complete(_LOGIN_CALLER, done)
        except OAuthError as exc:
            return error_page(exc.description, exc.error)
        if not outcome.redirect_to:
            return error_page(
                outcome.error_description or "the request could not be completed", outcome.error
            )
        return redirect(outcome.redirect_to)

    async def _signed_in(self, request: Request) -> LoginSession | None:
        sessions = self._holder.get().sessions
        token = request.cookies.get(LOGIN_COOKIE, "")
        if sessions is None or not token:
            return None
        return await sessions.get(token)

    def _now(self) -> int:
        sessions = self._holder.get().sessions
        return sessions.now() if sessions is not None else int(time.time())

    # --- pages ---------------------------------------------------------------------------

    def secure(self, request: Request) -> bool:
        """Whether cookies are Secure: on HTTPS requests, and on all when TLS terminates in
        front (TOKENRY_TLS_TERMINATED)."""
        return self._secure or request.url.scheme == "https"

    def _session_cookie(self, request: Request) -> str:
        return HOST_SESSION_COOKIE if self.secure(request) else SESSION_COOKIE

    def _set_cookie(
        self, request: Request, resp: Response, name: str, value: str, max_age: int | None = None
    ) -> None:
        resp.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/" if name.startswith("__Host-") else "/oauth2",  # __Host- requires Path=/
            secure=self.secure(request),
            httponly=True,
            samesite="lax",
        )

    def _common(self, pending: _Pending, session: str) -> str:
        return (
            hidden("login_challenge", pending.challenge)
            + hidden("csrf", self._csrf(session, pending.challenge))
            + hidden("client_id", pending.client_id)
            + hidden("client_name", pending.client_name)
            + hidden("scope", " ".join(pending.scopes))
            + hidden("consent", pending.consent)
            + hidden("return_to", pending.return_to)
            + hidden("pending_mac", self._pending_mac(session, pending))
        )

    def _login_page(
        self,
        pending: _Pending,
        session: str,
        *,
        error: str = "",
        username: str = "",
        status: int = 200,
    ) -> HTMLResponse:
        body = login_body(self._common(pending, session), pending.client_name, error, username)
        return page(f"Sign in to {pending.client_name}", body, status)

    def _subject_mac(
        self, session: str, challenge: str, token: str, subject: str, auth_time: str
    ) -> str:
        """The consent form's user, bound to the login session it was shown for (the hash of
        its token: the form dies with the session) as well as to the CSRF cookie and the
        challenge."""
        bound = hashlib.sha256(token.encode()).hexdigest() if token else ""
        return self.mac("subject", session, challenge, bound, subject, auth_time)

    def _consent_page(
        self, pending: _Pending, session: str, token: str, subject: str, auth_time: int
    ) -> HTMLResponse:
        mac = self._subject_mac(session, pending.challenge, token, subject, str(auth_time))
        fields = (
            self._common(pending, session)
            + hidden("subject", subject)
            + hidden("auth_time", str(auth_time))
            + hidden("subject_mac", mac)
        )
        body = consent_body(fields, pending.client_name, subject, pending.scopes, pending.return_to)
        return page(f"Allow {pending.client_name} access", body)


def _pending(
    outcome: AuthorizeOutcome, client: Client | None, consent: str, return_to: str
) -> _Pending:
    name = (client.description if client is not None else "") or outcome.client_id
    return _Pending(
        outcome.login_challenge,
        outcome.client_id,
        name,
        tuple(outcome.requested_scope.split()),
        consent,
        return_to,
    )


def external_login_url(login_url: str, outcome: AuthorizeOutcome) -> str:
    """Where TOKENRY_LOGIN_URL's app gets the browser (Hydra's model, docs/gateway.md): the
    login challenge, plus the request's client, scope, prompt and max_age as hints (the app
    completes through CompleteAuthorization, which grants only within the parked request)."""
    params = {
        "login_challenge": outcome.login_challenge,
        "client_id": outcome.client_id,
        "scope": outcome.requested_scope,
        "prompt": " ".join(sorted(outcome.prompt)),
        "max_age": "" if outcome.max_age is None else str(outcome.max_age),
    }
    return add_query(login_url, params)


def _host(redirect_uri: str) -> str:
    """What the consent page names as the way back: the redirect URI's host (and port), or the
    private-use scheme of a native app (RFC 8252 §7.1). CodeFlow.authorize already checked it
    is registered."""
    parts = urlsplit(redirect_uri)
    return (parts.netloc.rpartition("@")[2] or parts.scheme)[:255]


def same_mac(given: str, expected: str) -> bool:
    """Constant-time comparison of a posted MAC. Bytes, not str: hmac.compare_digest raises
    TypeError on a non-ASCII str, which a posted form value may be (a 500 otherwise)."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def _one(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name)
    return values[0] if values else ""


def _single(pairs: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out and name != "resource":
            raise InvalidRequest(f"parameter {name[:40]!r} is repeated")
        out.setdefault(name, value)
    return out


def _pairs(request: Request, params: dict[str, str]) -> list[tuple[str, str]]:
    if request.method == "GET":
        return parse_qsl(request.url.query, keep_blank_values=True)
    return list(params.items())
