"""Where the verifier's key set comes from: the :class:`~tokenry.jose.JwksSource` adapters.

The cache itself (single-flight, rate-limited unknown-kid refresh) is
:class:`tokenry.jose.JwksCache`; these are its gRPC and HTTPS sources:

- :class:`GrpcJwksSource`: the Tokenry key rotator's ``GetJwks``, with the event seq the set is
  current to.
- :class:`HttpsJwksSource`: any HTTPS JWKS URL (a non-Tokenry issuer, or the gateway's
  ``/.well-known/jwks.json``), fetched with the standard library in a worker thread so the event
  loop never blocks; no redirect to plain HTTP is followed and the body is size-limited.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from typing import Final
from urllib.parse import urlsplit

import grpc

from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc

__all__ = ["MAX_JWKS_BYTES", "GrpcJwksSource", "HttpsJwksSource"]

MAX_JWKS_BYTES: Final = 1 << 20  # a JWKS is a few KiB; refuse to buffer an unbounded body


class GrpcJwksSource:
    """Fetches the JWKS from the Tokenry key rotator (``KeyRotator.GetJwks``)."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 5.0) -> None:
        self._stub = keyrotator_pb2_grpc.KeyRotatorStub(channel)
        self._timeout = timeout

    async def fetch(self) -> tuple[str, int]:
        resp = await self._stub.GetJwks(keyrotator_pb2.GetJwksRequest(), timeout=self._timeout)
        return resp.jwks_json, resp.seq


class _NoDowngradeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to another https URL (never downgrade to plain HTTP)."""

    def __init__(self, allow_http: bool) -> None:
        self._allow_http = allow_http

    def redirect_request(  # noqa: PLR0917 - urllib's signature
        self,
        req: urllib.request.Request,
        fp: object,
        code: int,
        msg: str,
        headers: object,
        newurl: str,
    ) -> urllib.request.Request | None:
        scheme = urlsplit(newurl).scheme
        if scheme != "https" and not (self._allow_http and scheme == "http"):
            raise ValueError("JWKS redirect to a non-https URL refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)  # type: ignore[arg-type]


class HttpsJwksSource:
    """Fetches a JWK Set over HTTPS (RFC 7517 §5; e.g. an issuer's ``jwks_uri``, RFC 8414 §2).

    The blocking ``urllib`` request runs in a worker thread (``asyncio.to_thread``), so the event
    loop keeps serving while it waits.

    Args:
        url: an ``https://`` URL.
        timeout: seconds for the whole request.
        ssl_context: trust settings; the default verifies against the system CAs.
        allow_http: accept ``http://`` (tests and loopback dev setups only).
        max_bytes: larger bodies are refused.

    Raises:
        ValueError: ``url`` is not https (and ``allow_http`` is false).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        allow_http: bool = False,
        max_bytes: int = MAX_JWKS_BYTES,
    ) -> None:
        scheme = urlsplit(url).scheme
        if scheme != "https" and not (allow_http and scheme == "http"):
            raise ValueError("the JWKS URL must be https")
        self.url = url
        self._timeout = timeout
        self._max_bytes = max_bytes
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context), _NoDowngradeRedirect(allow_http)
        )

    async def fetch(self) -> tuple[str, int]:
        return await asyncio.to_thread(self._fetch_blocking), 0

    def _fetch_blocking(self) -> str:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url,
            headers={
                "Accept": "application/jwk-set+json, application/json",
                "User-Agent": "tokenry-verifier",
            },
        )
        with self._opener.open(request, timeout=self._timeout) as response:
            if response.status != 200:
                raise ValueError(f"JWKS endpoint answered HTTP {response.status}")
            body: bytes = response.read(self._max_bytes + 1)
        if len(body) > self._max_bytes:
            raise ValueError(f"JWKS is larger than {self._max_bytes} bytes")
        return body.decode("utf-8")
