"""The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, OIDC Core §3.1.2.1) as pure rules.

Two kinds of refusal (RFC 6749 §4.1.2.1): when the client is unknown or the redirect URI does
not match, the user must NOT be redirected (an open redirector otherwise), so those raise a
plain :class:`~tokenry.core.errors.OAuthError`; every other refusal is reported to the client by
redirecting to its (verified) redirect URI with ``error`` and ``state``, which
:class:`RedirectError` carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tokenry.core import pkce
from tokenry.core.clients import AUTHORIZATION_CODE, Client
from tokenry.core.errors import InvalidClient, InvalidRequest, OAuthError
from tokenry.core.errors import RedirectError as RedirectError  # noqa: PLC0414 - re-export
from tokenry.core.grants import grant_audiences, grant_scopes
from tokenry.core.oidc import MAX_NONCE_LENGTH

MAX_STATE_LENGTH: Final = 2048
MAX_SUBJECT_LENGTH: Final = 255
#: OIDC Core §3.1.2.1 prompt values this server honours (docs/gateway.md).
PROMPT_VALUES: Final = frozenset({"none", "login", "consent", "select_account"})
#: the longest max_age accepted (a year; OIDC Core sets no bound, a bound keeps it an int)
MAX_MAX_AGE: Final = 366 * 86400


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    response_type: str
    client_id: str
    redirect_uri: str
    scope: str
    state: str
    code_challenge: str
    code_challenge_method: str
    nonce: str
    resources: tuple[str, ...] = ()
    #: OIDC Core §3.1.2.1, as received ("" when absent)
    prompt: str = ""
    max_age: str = ""


@dataclass(frozen=True, slots=True)
class ValidatedRequest:
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    state: str
    code_challenge: str
    nonce: str
    prompt: frozenset[str] = frozenset()
    max_age: int | None = None


def parse_prompt(text: str) -> frozenset[str]:
    """OIDC Core §3.1.2.1: space-delimited values; ``none`` stands alone."""
    values = frozenset(text.split())
    unknown = values - PROMPT_VALUES
    if unknown:
        raise InvalidRequest(f"unsupported prompt value {sorted(unknown)[0][:40]!r}")
    if "none" in values and len(values) > 1:
        raise InvalidRequest("prompt=none cannot be combined with another value")
    return values


def parse_max_age(text: str) -> int | None:
    """OIDC Core §3.1.2.1: the allowable elapsed time in seconds since the last active
    authentication; 0 means authenticate now."""
    if not text:
        return None
    if not text.isdigit() or len(text) > 9 or int(text) > MAX_MAX_AGE:
        raise InvalidRequest(f"max_age must be a number of seconds, 0..{MAX_MAX_AGE}")
    return int(text)


_LOOPBACK_PREFIXES = ("http://127.0.0.1", "http://[::1]")
_PORT = re.compile(r"(?::[0-9]{1,5})?")


def _without_loopback_port(uri: str) -> str | None:
    """``http://127.0.0.1:PORT/rest`` -> ``http://127.0.0.1/rest`` (the same for ``[::1]``);
    None for any other URI, or a port that is not 1-65535."""
    for prefix in _LOOPBACK_PREFIXES:
        if not uri.startswith(prefix):
            continue
        rest = uri[len(prefix) :]
        end = next((i for i, ch in enumerate(rest) if ch in "/?#"), len(rest))
        port = rest[:end]
        if not _PORT.fullmatch(port) or (port and not 0 < int(port[1:]) <= 65535):
            return None
        return prefix + rest[end:]
    return None


def redirect_uri_matches(requested: str, registered: tuple[str, ...]) -> bool:
    """Exact string comparison (OAuth 2.1 §4.1.3, docs/spec.md §3): no normalisation of any kind.

    A trailing slash, a different case or an extra query parameter is a different URI. The one
    exception (RFC 8252 §7.3, OAuth 2.1 §8.4.2; docs/flows.md §6): for a registered
    ``http://127.0.0.1`` or ``http://[::1]`` URI the port is ignored, since native apps listen
    on ephemeral ports; everything else still matches exactly. ``localhost`` is matched exactly
    (RFC 8252 §8.3).
    """
    if requested in registered:
        return True
    bare = _without_loopback_port(requested)
    return bare is not None and any(_without_loopback_port(uri) == bare for uri in registered)


def add_query(uri: str, params: dict[str, str]) -> str:
    """Add parameters to a redirect URI, keeping its own query (RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.extend((k, v) for k, v in params.items() if v)
    return urlunsplit(parts._replace(query=urlencode(query)))


def validate(req: AuthorizationRequest, client: Client | None) -> ValidatedRequest:
    """Check an authorization request against the registered client.

    Raises:
        InvalidClient, InvalidRequest: not redirectable (unknown client, redirect URI mismatch).
        RedirectError: everything else, to be sent to the client's redirect URI.
    """
    if client is None or not req.client_id:
        raise InvalidClient("unknown client")
    # OAuth 2.1 §4.1.1: redirect_uri is required here and matched exactly.
    if not req.redirect_uri or not redirect_uri_matches(req.redirect_uri, client.redirect_uris):
        raise InvalidRequest("redirect_uri does not match a registered redirect URI")
    if len(req.state) > MAX_STATE_LENGTH:
        raise InvalidRequest(f"state must be at most {MAX_STATE_LENGTH} characters")

    def refuse(error: str, description: str) -> RedirectError:
        return RedirectError(req.redirect_uri, req.state, error, description)

    if req.response_type != "code":
        # OAuth 2.1: the code flow only (no implicit "token", no hybrid).
        raise refuse("unsupported_response_type", "response_type must be code")
    if AUTHORIZATION_CODE not in client.grant_types:
        raise refuse("unauthorized_client", "the client may not use the authorization code grant")
    try:
        pkce.check_challenge(req.code_challenge, req.code_challenge_method)
        if len(req.nonce) > MAX_NONCE_LENGTH:
            raise InvalidRequest(f"nonce must be at most {MAX_NONCE_LENGTH} characters")
        scopes = grant_scopes(req.scope, client.scopes)
        audiences = grant_audiences(req.resources, client.audiences)
        prompt = parse_prompt(req.prompt)
        max_age = parse_max_age(req.max_age)
    except OAuthError as exc:
        raise refuse(exc.error, exc.description) from None
    return ValidatedRequest(
        client_id=client.client_id,
        redirect_uri=req.redirect_uri,
        scopes=scopes,
        audiences=audiences,
        state=req.state,
        code_challenge=req.code_challenge,
        nonce=req.nonce,
        prompt=prompt,
        max_age=max_age,
    )
