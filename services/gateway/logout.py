"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ``GET``/``POST /oauth2/logout``.

Ends the gateway's login session (the row and the cookie), then sends the browser back to the
client's ``post_logout_redirect_uri`` with ``state`` (§3) — only to a URI the client registered,
compared exactly, and only when the client is known: from ``id_token_hint`` (an ID token this
server signed; an expired one is accepted, §2) or ``client_id`` (which must then match the
hint's ``aud``). Otherwise a "signed out" page. A bad hint, an unknown client or an unregistered
URI gets an error page and is never redirected.

§2: the OP must ask the user before logging out when the hint does not show that the request
comes from the signed-in user's client. So when a session exists and no hint is an ID token of
that session (its subject, an ``auth_time`` no older than the session), a confirmation page (a
CSRF-protected form) comes first: a cross-site link cannot sign a user out. Logout ends the
session only; tokens already issued live on (revoke them at ``/oauth2/revoke``;
docs/gateway.md).
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokenry.core.authorize import add_query
from tokenry.core.errors import OAuthError
from tokenry.jose import SignaturePolicy, b64url_decode, loads_strict, split_and_parse
from tokenry.jose.errors import VerificationError
from tokenry.services.gateway.metadata import LOGOUT_PATH
from tokenry.services.gateway.pages import LOGIN_COOKIE, LoginApp, same_mac
from tokenry.services.gateway.routes import ApiHolder, GatewayApi, read_form
from tokenry.services.gateway.sessions import LoginSession
from tokenry.services.gateway.ui import error_page, hidden, page, redirect

__all__ = ["LogoutApp", "verify_id_token_hint"]

_ID_TOKEN_TYP = frozenset({"jwt"})
_POLICY = SignaturePolicy()


async def verify_id_token_hint(api: GatewayApi, token: str) -> dict[str, Any] | None:
    """The claims of an ID token this deployment signed (signature by a published key, ``iss``
    this issuer, a ``sub`` and an ``aud``), or None. Expiry is not checked: §2 says an expired
    ID token is still a valid hint."""
    if api.keys is None or len(token) > 8192:
        return None
    try:
        parts = split_and_parse(token, accepted_typ=_ID_TOKEN_TYP)
        key = await api.keys.get(parts.kid)
        if key is None:
            return None
        _POLICY.check(parts.alg, key, parts.signing_input, parts.signature)
        claims = loads_strict(b64url_decode(parts.payload_segment))
    except (VerificationError, ValueError):
        return None
    if not isinstance(claims, dict) or claims.get("iss") != api.issuer:
        return None
    if not isinstance(claims.get("sub"), str) or not _audience(claims):
        return None
    return claims


def _audience(claims: dict[str, Any]) -> str:
    """The client an ID token was issued to (OIDC Core §2: ``aud``; Tokenry's hold one)."""
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) == 1:
        aud = aud[0]
    return aud if isinstance(aud, str) else ""


def _of_session(claims: dict[str, Any] | None, session: LoginSession) -> bool:
    """Whether the hint is an ID token of this login session (§2: ask the user when it "does
    not belong to the current OP session"): its user, and signed in no earlier than the session
    began (``auth_time``, else ``iat``). An old ID token of the same user, from a session since
    ended, does not count."""
    if claims is None or claims.get("sub") != session.subject:
        return False
    when = claims.get("auth_time", claims.get("iat"))
    return isinstance(when, int) and not isinstance(when, bool) and when >= session.auth_time


class _Refused(Exception):
    """A logout request answered with an error page (never a redirect)."""


async def _params(request: Request) -> dict[str, str]:
    try:
        if request.method == "GET":
            pairs = parse_qsl(request.url.query, keep_blank_values=True)
            params = dict(pairs)
            if len(params) != len(pairs):
                raise _Refused("a parameter is repeated")
            return params
        return {k: v[0] for k, v in (await read_form(request)).items()}
    except OAuthError as exc:
        raise _Refused(exc.description) from None


async def _return_to(
    api: GatewayApi, params: dict[str, str]
) -> tuple[dict[str, Any] | None, str, str]:
    """(the hint's claims, the client, where to send the browser back: "" for the signed-out
    page); refuses a bad hint, a mismatched client_id and an unregistered URI (§2, §3)."""
    claims = None
    if hint := params.get("id_token_hint", ""):
        claims = await verify_id_token_hint(api, hint)
        if claims is None:
            raise _Refused("The sign-out link holds an ID token this server did not issue.")
    client_id = params.get("client_id", "")
    if claims is not None:
        if client_id and client_id != _audience(claims):
            raise _Refused("client_id does not match the ID token.")
        client_id = _audience(claims)
    uri = params.get("post_logout_redirect_uri", "")
    if not uri:
        return claims, client_id, ""
    client = None
    if client_id and api.clients is not None and len(client_id) <= 255:
        client = await api.clients.get_client(client_id)
    if client is None or uri not in client.post_logout_redirect_uris:
        # Never redirect to a URI the client did not register (§3).
        raise _Refused("The return address is not registered for this application.")
    return claims, client_id, add_query(uri, {"state": params.get("state", "")})


#: the request parameters of §2 that a POST is re-sent with as a GET
_LOGOUT_PARAMS = (
    "id_token_hint",
    "logout_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "ui_locales",
)


def _forwarded(params: dict[str, str]) -> dict[str, str]:
    return {k: params[k] for k in _LOGOUT_PARAMS if k in params}


class LogoutApp:
    def __init__(self, holder: ApiHolder, login: LoginApp, *, secure_cookies: bool) -> None:
        self._holder = holder
        self._login = login  # its MAC key signs the confirmation form
        self._secure = secure_cookies

    def routes(self) -> list[Route]:
        return [Route(LOGOUT_PATH, self.logout, methods=["GET", "POST"])]

    async def logout(self, request: Request) -> Response:
        api = self._holder.get()
        try:
            params = await _params(request)
            claims, client_id, back = await _return_to(api, params)
        except _Refused as exc:
            return error_page(str(exc), "invalid_request")
        token = request.cookies.get(LOGIN_COOKIE, "")
        if request.method == "POST" and not token:
            # A cross-site POST (allowed by §2) carries no SameSite=Lax cookie, so nothing could
            # be ended here; a top-level GET navigation does carry it: go through one.
            return redirect(add_query(LOGOUT_PATH, _forwarded(params)))
        session = await api.sessions.get(token) if api.sessions is not None and token else None
        confirmed = request.method == "POST" and same_mac(
            params.get("logout_csrf", ""), self._login.mac("logout", token)
        )
        if session is not None:
            if confirmed and params.get("decision") == "stay":
                return redirect(back) if back else _page_stayed()
            if not confirmed and not _of_session(claims, session):
                return self._confirm(token, client_id, params, session.subject)
            if api.sessions is not None:
                await api.sessions.end(token)
        resp = redirect(back) if back else _signed_out()
        if token:
            resp.delete_cookie(
                LOGIN_COOKIE,
                path="/oauth2",
                secure=self._secure or request.url.scheme == "https",
                httponly=True,
                samesite="lax",
            )
        return resp

    def _confirm(
        self, token: str, client_id: str, params: dict[str, str], subject: str
    ) -> Response:
        fields = (
            hidden("logout_csrf", self._login.mac("logout", token))
            + hidden("client_id", client_id)
            + hidden("post_logout_redirect_uri", params.get("post_logout_redirect_uri", ""))
            + hidden("state", params.get("state", ""))
        )
        body = (
            "<h1>Sign out?</h1>"
            f'<p class="sub">You are signed in as <strong>{html.escape(subject)}</strong>.</p>'
            f'<form method="post" action="{LOGOUT_PATH}">{fields}'
            '<button type="submit" name="decision" value="logout">Sign out</button>'
            '<button type="submit" name="decision" value="stay" class="secondary">'
            "Stay signed in</button></form>"
        )
        return page("Sign out", body)


def _signed_out() -> Response:
    body = '<h1>Signed out</h1><p class="sub">You have signed out. You can close this window.</p>'
    return page("Signed out", body)


def _page_stayed() -> Response:
    body = '<h1>Still signed in</h1><p class="sub">You did not sign out.</p>'
    return page("Still signed in", body)
