"""The JWKS cache (single flight, rate limit, stale-if-error, forced refresh, revoked kids) and
the HTTPS source against a real local HTTPS server with a throwaway certificate."""

from __future__ import annotations

import asyncio
import datetime
import http.server
import ipaddress
import json
import ssl
import threading
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tokenry.core.clock import FakeClock
from tokenry.jose import JwksCache
from tokenry.verifier._external import start_jwks_verifier
from tokenry.verifier._jwks import HttpsJwksSource
from tokenry.verifier.errors import RejectedHeaderError

from .minting import AUDIENCE, ISSUER, FakeJwksSource, Minter, jwks_json


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_stale_if_error_keeps_the_keys_it_holds() -> None:
    minter = Minter()
    source = FakeJwksSource(minter)
    jwks = JwksCache(source, FakeClock())
    await jwks.refresh(force=True)
    source.fail = True
    await jwks.refresh(force=True)
    assert set(jwks.keys) == {"k1"} and jwks.loaded
    assert (jwks.fetches_ok, jwks.fetches_failed) == (1, 1)
    assert jwks.last_error == "fetch failed (ConnectionError)"
    source.fail = False
    source.jwks = "{not json"
    await jwks.refresh(force=True)
    assert set(jwks.keys) == {"k1"} and jwks.fetches_failed == 2


async def test_refresh_is_rate_limited_unless_forced() -> None:
    clock = FakeClock()
    source = FakeJwksSource(Minter())
    jwks = JwksCache(source, clock, min_refresh_interval=2.0)
    await jwks.refresh()
    await jwks.refresh()
    assert source.calls == 1
    await jwks.refresh(force=True)
    assert source.calls == 2
    clock.advance(2.0)
    await jwks.refresh()
    assert source.calls == 3


async def test_a_forced_refresh_waits_for_a_fetch_that_started_after_it() -> None:
    """A key event arriving while an older fetch is in flight must not just join that fetch."""
    old, new = Minter("old"), Minter("new")
    source = FakeJwksSource(old)
    jwks = JwksCache(source, FakeClock())
    source.gate = asyncio.Event()
    first = asyncio.create_task(jwks.refresh(force=True))
    await _settle()
    assert source.calls == 1  # in flight, serving the old set
    source.serve(old, new)  # the new key is published; its event arrives now
    events = [asyncio.create_task(jwks.refresh(force=True)) for _ in range(5)]
    await _settle()
    source.gate.set()
    await asyncio.gather(first, *events)
    assert set(jwks.keys) == {"old", "new"}
    assert source.calls == 2  # the five forced refreshes shared one new fetch


async def test_a_revoked_kid_stays_out_even_if_a_fetch_still_lists_it() -> None:
    a, b = Minter("a"), Minter("b")
    source = FakeJwksSource(a, b)
    jwks = JwksCache(source, FakeClock())
    await jwks.refresh(force=True)
    keys_before = jwks.keys
    jwks.revoke("a")
    assert "a" in keys_before  # readers holding the old mapping are not disturbed
    assert set(jwks.keys) == {"b"} and jwks.is_revoked("a")
    await jwks.refresh(force=True)
    assert set(jwks.keys) == {"b"}


async def test_close_cancels_an_inflight_fetch() -> None:
    source = FakeJwksSource(Minter())
    source.gate = asyncio.Event()
    jwks = JwksCache(source, FakeClock())
    waiter = asyncio.create_task(jwks.refresh(force=True))
    await _settle()
    await jwks.close()
    await asyncio.gather(waiter, return_exceptions=True)
    assert not jwks.loaded


# --- HTTPS ---------------------------------------------------------------------------------------


class _Jwks(http.server.BaseHTTPRequestHandler):
    body = b"{}"
    redirect_to: str | None = None

    def do_GET(self) -> None:
        if self.redirect_to is not None:
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/jwk-set+json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *_args: object) -> None:
        pass


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Server:
    def __init__(self, tmp: Path) -> None:
        handler = type("Handler", (_Jwks,), {})
        self.handler: type[_Jwks] = handler
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        cert, key = _self_signed(tmp)
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)
        self.httpd.socket = server_ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.client_ctx = ssl.create_default_context(cafile=str(cert))
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def serve(self, body: bytes) -> None:
        self.handler.body = body


@pytest.fixture
def https(tmp_path: Path) -> Iterator[_Server]:
    server = _Server(tmp_path)
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


async def test_https_source_fetches_a_jwks_over_verified_tls(https: _Server) -> None:
    https.serve(jwks_json(Minter("h1")).encode())
    text, seq = await HttpsJwksSource(https.url, ssl_context=https.client_ctx).fetch()
    assert json.loads(text)["keys"][0]["kid"] == "h1" and seq == 0


async def test_https_source_refuses_an_untrusted_certificate(https: _Server) -> None:
    https.serve(jwks_json(Minter("h1")).encode())
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        await HttpsJwksSource(https.url).fetch()  # system CAs do not know our throwaway cert


async def test_https_source_refuses_oversized_bodies_and_downgrades(https: _Server) -> None:
    https.serve(b"x" * 2048)
    with pytest.raises(ValueError, match="larger"):
        await HttpsJwksSource(https.url, ssl_context=https.client_ctx, max_bytes=1024).fetch()
    https.handler.redirect_to = "http://127.0.0.1:1/jwks.json"
    with pytest.raises(ValueError, match="non-https"):
        await HttpsJwksSource(https.url, ssl_context=https.client_ctx).fetch()
    with pytest.raises(ValueError, match="https"):
        HttpsJwksSource("http://example.test/jwks.json")


async def test_a_jwks_url_verifier_follows_the_issuers_key_set(https: _Server) -> None:
    old, new = Minter("old"), Minter("new", alg="EdDSA")
    https.serve(jwks_json(old).encode())
    clock = FakeClock()
    runtime = await start_jwks_verifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_url=https.url,
        ssl_context=https.client_ctx,
        clock=clock,
    )
    try:
        cached = old.token()
        assert (await runtime.verifier.verify(cached))["sub"] == "svc-a"
        https.serve(jwks_json(new).encode())  # the issuer rotated and dropped the old key
        clock.advance(2)
        assert (await runtime.verifier.verify(new.token()))["sub"] == "svc-a"  # kid miss → fetch
        with pytest.raises(RejectedHeaderError):
            await runtime.verifier.verify(cached)
    finally:
        await runtime.close()


async def test_a_jwks_url_verifier_whose_first_fetch_failed_says_no_keys(
    https: _Server,
) -> None:
    https.serve(b"not json")
    runtime = await start_jwks_verifier(
        issuer=ISSUER, audience=AUDIENCE, jwks_url=https.url, ssl_context=https.client_ctx
    )
    try:
        assert not runtime.jwks.loaded
        with pytest.raises(Exception) as err:  # noqa: PT011
            await runtime.verifier.verify(Minter().token())
        assert getattr(err.value, "reason", None) == "no_keys"
    finally:
        await runtime.close()
