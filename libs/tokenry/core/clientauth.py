"""Client authentication shared by every service (RFC 6749 §2.3).

The transport adapters extract :class:`ClientCredentials` (from the gRPC ``authorization``
metadata or an HTTP header / form) and call :func:`authenticate`, which looks the client up
through a :class:`ClientLookup` port. Every failure is the same ``invalid_client`` answer, so a
caller cannot tell an unknown client from a wrong secret (RFC 6749 §5.2).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote_plus

from tokenry.core.client_secrets import Pepper, hash_secret, verify_secret
from tokenry.core.clients import Client
from tokenry.core.errors import InvalidClient, InvalidRequest

MAX_CREDENTIAL_LENGTH = 512
_BAD_CLIENT = "client authentication failed"
# Compared against when the client is unknown, so both paths cost one HMAC and one compare.
_DUMMY_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str
    secret: str
    method: str  # "client_secret_basic" | "client_secret_post"

    def __repr__(self) -> str:  # never print the secret
        return f"ClientCredentials(client_id={self.client_id!r}, method={self.method!r})"


class ClientLookup(Protocol):
    async def get_client(self, client_id: str) -> Client | None:
        """The registered client, or None when there is no such client."""
        ...


def parse_basic(authorization: str) -> ClientCredentials:
    """Parse ``Basic base64(urlencode(id):urlencode(secret))`` (RFC 6749 §2.3.1).

    Raises:
        InvalidClient: the header is not valid Basic credentials.
    """
    if len(authorization) > MAX_CREDENTIAL_LENGTH:
        raise InvalidClient("client credentials too long")
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise InvalidClient("expected HTTP Basic client credentials")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("malformed Basic credentials") from None
    raw_id, sep, raw_secret = decoded.partition(":")
    if not sep or not raw_id:
        raise InvalidClient("malformed Basic credentials")
    # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    return ClientCredentials(unquote_plus(raw_id), unquote_plus(raw_secret), "client_secret_basic")


def credentials_from(
    authorization: str | None, client_id: str, client_secret: str
) -> ClientCredentials:
    """Pick the one authentication method used (RFC 6749 §2.3: "MUST NOT use more than one")."""
    if authorization:
        if client_secret:
            raise InvalidRequest("use exactly one client authentication method")
        creds = parse_basic(authorization)
        if client_id and client_id != creds.client_id:
            raise InvalidClient(_BAD_CLIENT)
        return creds
    if client_id and client_secret:
        return ClientCredentials(client_id, client_secret, "client_secret_post")
    raise InvalidClient("client authentication required")


async def authenticate(
    credentials: ClientCredentials, lookup: ClientLookup, peppers: dict[str, Pepper]
) -> Client:
    """Return the authenticated client or raise ``InvalidClient`` (one answer for every failure)."""
    if len(credentials.client_id) > MAX_CREDENTIAL_LENGTH:
        raise InvalidClient(_BAD_CLIENT)
    client = await lookup.get_client(credentials.client_id)
    if client is None or client.secret_hash is None or client.pepper_id not in peppers:
        # Spend the same work as a real check so an unknown id is not a timing oracle.
        any_pepper = next(iter(peppers.values()))
        verify_secret(any_pepper, credentials.secret, _DUMMY_HASH)
        raise InvalidClient(_BAD_CLIENT)
    if not verify_secret(peppers[client.pepper_id], credentials.secret, client.secret_hash):
        raise InvalidClient(_BAD_CLIENT)
    return client


__all__ = [
    "ClientCredentials",
    "ClientLookup",
    "authenticate",
    "credentials_from",
    "hash_secret",
    "parse_basic",
]
