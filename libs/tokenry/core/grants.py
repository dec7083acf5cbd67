"""Grant decisions shared by every grant type: scope and audience down-scoping.

RFC 6749 §3.3: the authorization server may issue a narrower scope than requested, but never a
wider one than the client is allowed; an empty request means the client's default. RFC 8707 §2:
an audience the client may not address is ``invalid_target``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tokenry.core.errors import InvalidRequest, InvalidScope, InvalidTarget

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
MAX_SCOPE_LENGTH = 1024
MAX_AUDIENCES = 16


def parse_scope(scope: str) -> tuple[str, ...]:
    """Split a space-delimited scope string, rejecting anything outside RFC 6749 §3.3."""
    if len(scope) > MAX_SCOPE_LENGTH:
        raise InvalidScope("scope is too long")
    tokens = scope.split(" ") if scope else []
    for token in tokens:
        if not _SCOPE_TOKEN.fullmatch(token):
            raise InvalidScope("scope must be space-delimited scope tokens (RFC 6749 §3.3)")
    return tuple(dict.fromkeys(tokens))  # de-duplicated, order kept


def grant_scopes(requested: str, allowed: frozenset[str]) -> tuple[str, ...]:
    wanted = parse_scope(requested)
    if not wanted:
        return tuple(sorted(allowed))
    if not set(wanted) <= allowed:
        raise InvalidScope("requested scope exceeds what the client is allowed")
    return wanted


def grant_audiences(requested: Iterable[str], allowed: tuple[str, ...]) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(requested))
    if len(wanted) > MAX_AUDIENCES:
        raise InvalidRequest("too many audiences requested")
    if not wanted:
        if not allowed:
            raise InvalidTarget("the client has no audience registered")
        return allowed
    if not set(wanted) <= set(allowed):
        raise InvalidTarget("requested audience is not allowed for this client")
    return wanted


def narrow_scopes(requested: str, granted: tuple[str, ...]) -> tuple[str, ...]:
    """A scope that can only narrow an earlier grant (RFC 6749 §6, RFC 8693 §2.1).

    Empty means everything granted. Anything beyond the grant is ``invalid_scope``: a refresh
    or an exchange never widens what the resource owner (or the subject token) allowed.
    """
    wanted = parse_scope(requested)
    if not wanted:
        return granted
    if not set(wanted) <= set(granted):
        raise InvalidScope("requested scope exceeds the original grant")
    return wanted


def narrow_audiences(requested: Iterable[str], granted: tuple[str, ...]) -> tuple[str, ...]:
    """Audiences that can only narrow an earlier grant (RFC 8707 §2.2)."""
    wanted = tuple(dict.fromkeys(requested))
    if len(wanted) > MAX_AUDIENCES:
        raise InvalidRequest("too many audiences requested")
    if not wanted:
        return granted
    if not set(wanted) <= set(granted):
        raise InvalidTarget("requested audience exceeds the original grant")
    return wanted
