"""Client-side certificate rotation (issue 13 item 1; libs/tokenry/tls_reload.py): a long-lived
channel over certificate *files* takes up a swap without a restart, against real mTLS listeners
that close connections at a short maximum age.

The servers are servicekit's; one answers the serial of the caller's verified certificate. The
verifier case runs the real key rotator and revocation service with mTLS required, which stop
trusting the verifier's first certificate during the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest

from tokenry.client import IssuedToken, TokenSource, bearer_channel
from tokenry.devstack.ca import CertificateAuthority, DevPki, Issued, dev_pki
from tokenry.servicekit.config import Settings
from tokenry.servicekit.tls import ServerTls, Transport
from tokenry.tls import ClientTls
from tokenry.tls_reload import ReloadingChannel
from tokenry.verifier import start_verifier

from suite import WHOAMI, mtls_listeners, serving, whoami_server

pytestmark = pytest.mark.integration

WAIT = 20.0


@contextlib.asynccontextmanager
async def short_lived_whoami(ca: CertificateAuthority, folder: Path) -> AsyncIterator[int]:
    """An mTLS listener (client certificates from ``ca``) whose connections live 2 s."""
    ca.issue("server").write(folder / "server.pem", folder / "server-key.pem")
    transport = Transport(
        ServerTls(folder / "server.pem", folder / "server-key.pem", folder / "ca.pem", True),
        max_connection_age=2.0,
        max_connection_age_grace=0.5,
    )
    async with whoami_server(transport) as port:
        yield port


@dataclasses.dataclass
class Files:
    folder: Path
    ca: CertificateAuthority

    @property
    def tls(self) -> ClientTls:
        return ClientTls(
            self.folder / "ca.pem",
            self.folder / "client.pem",
            self.folder / "client-key.pem",
            check_interval=0.1,
        )

    def swap(self, issued: Issued) -> None:
        """What cert-manager or the SPIRE helper does: both files replaced."""
        issued.write(self.folder / "client.pem", self.folder / "client-key.pem")


@pytest.fixture
def files(tmp_path: Path) -> Files:
    ca = CertificateAuthority.generate("reload test CA")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    return Files(tmp_path, ca)


async def _serial_becomes(call: Any, serial: int, *, timeout: float = WAIT) -> float:
    """Seconds until a call answers ``serial`` (calls every 50 ms)."""
    start = time.monotonic()
    want = format(serial, "x").encode()
    while (answer := await call(b"", timeout=5)) != want:
        assert time.monotonic() - start < timeout, f"still {answer!r}, want {want!r}"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_a_swap_reaches_the_server_and_the_old_channel_is_closed(files: Files) -> None:
    first, second = files.ca.issue("client-a"), files.ca.issue("client-b")
    files.swap(first)
    async with (
        short_lived_whoami(files.ca, files.folder) as port,
        files.tls.reloading_channel(f"127.0.0.1:{port}", grace=0.5) as channel,
    ):
        assert isinstance(channel, ReloadingChannel)
        call = channel.unary_unary(WHOAMI)  # made once, like a stub: follows the reload
        assert await call(b"", timeout=5) == format(first.serial, "x").encode()
        old = channel.current()
        files.swap(second)
        took = await _serial_becomes(call, second.serial)
        print(f"the server saw the new certificate after {took:.2f} s")
        assert channel.reloads == 1
        # The replaced channel is closed once its grace is over.
        deadline = time.monotonic() + WAIT
        while old.get_state() != grpc.ChannelConnectivity.SHUTDOWN:
            assert time.monotonic() < deadline, "the old channel was never closed"
            await asyncio.sleep(0.05)


async def test_a_half_written_swap_keeps_the_old_certificate_and_says_so_once(
    files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = files.ca.issue("client-a"), files.ca.issue("client-b")
    files.swap(first)
    async with (
        short_lived_whoami(files.ca, files.folder) as port,
        files.tls.reloading_channel(f"127.0.0.1:{port}") as channel,
    ):
        call = channel.unary_unary(WHOAMI)
        (files.folder / "client.pem").write_bytes(second.cert_pem)  # the key not yet replaced
        with caplog.at_level(logging.WARNING, logger="tokenry.tls_reload"):
            # Calls for 2.5 s: many looks at the files, past the server's maximum age (2 s),
            # so the reconnect proves the channel kept the old, consistent pair.
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                assert await call(b"", timeout=5) == format(first.serial, "x").encode()
                await asyncio.sleep(0.05)
        warnings = [r for r in caplog.records if r.name == "tokenry.tls_reload"]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        text = warnings[0].getMessage()
        assert "not usable" in text
        assert "PRIVATE KEY" not in text and "CERTIFICATE" not in text
        assert channel.reloads == 0
        (files.folder / "client-key.pem").write_bytes(second.key_pem)  # the swap completes
        await _serial_becomes(call, second.serial)


class FixedToken:
    async def fetch(self) -> IssuedToken:
        return IssuedToken("t", 3600)


async def test_bearer_channel_over_files_reloads(files: Files) -> None:
    first, second = files.ca.issue("client-a"), files.ca.issue("client-b")
    files.swap(first)
    async with short_lived_whoami(files.ca, files.folder) as port:
        channel = bearer_channel(f"127.0.0.1:{port}", TokenSource(FixedToken()), files.tls)
        async with channel:
            call: Any = channel.unary_unary(WHOAMI)
            assert await call(b"", timeout=5) == format(first.serial, "x").encode()
            files.swap(second)
            await _serial_becomes(call, second.serial)


def test_unusable_files_are_refused_at_start(files: Files) -> None:
    first, second = files.ca.issue("client-a"), files.ca.issue("client-b")
    files.swap(first)
    (files.folder / "client-key.pem").write_bytes(second.key_pem)
    with pytest.raises(ValueError, match="is not the key of") as caught:
        ReloadingChannel("127.0.0.1:1", files.tls)
    assert "PRIVATE" not in str(caught.value)


# --- a verifier across a rotation -------------------------------------------------------------

SERVICES = ("keyrotator", "revocation")


@contextlib.asynccontextmanager
async def mtls_services(
    settings: Settings, pki: DevPki, clients_ca: Path
) -> AsyncIterator[dict[str, str]]:
    """The key rotator and the revocation service requiring client certificates from the
    ``clients_ca`` bundle (re-read before each handshake), closing connections after 2 s."""
    own = mtls_listeners(
        settings, pki, clients_ca, max_connection_age=2.0, max_connection_age_grace=0.5
    )
    probe = ClientTls(pki.ca, pki.cert("probe"), pki.key("probe"))
    async with serving(SERVICES, own, probe=probe, timeout=WAIT) as addrs:
        yield addrs


async def test_a_verifier_on_files_stays_current_after_its_old_certificate_is_refused(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Certificate A (the dev CA's) is replaced on disk by B (another CA's); then the services
    stop trusting A's CA, as after a CA rotation. The verifier on files keeps asking the
    revocation service (its proof of currency, every 2 s) over B; the negative control, a
    verifier on channel credentials read from A, goes stale once the services' maximum age
    ends its connection and the reconnect with A is refused."""
    del pool  # the services' database, migrated by the fixture
    pki = dev_pki(tmp_path / "tls", [*SERVICES, "probe"])
    dev_ca = pki.ca.read_bytes()
    new_ca = CertificateAuthority.generate("the next clients CA")
    clients_ca = pki.folder / "clients-ca.pem"
    clients_ca.write_bytes(dev_ca + new_ca.cert_pem)
    cert, key = pki.folder / "verifier.pem", pki.folder / "verifier-key.pem"
    CertificateAuthority.load(pki.ca, pki.folder / "ca-key.pem").issue("verifier").write(cert, key)
    files = ClientTls(pki.ca, cert, key, check_interval=0.2)
    args: dict[str, Any] = {
        "issuer": settings.issuer_url,
        "audience": "demo-api",
        "nats_url": settings.nats_url,
        "subjects": settings.subjects,
        "stream": settings.stream.name,
        "staleness_budget": 3.0,
    }
    async with mtls_services(settings, pki, clients_ca) as addrs:
        args |= {"keyrotator_addr": addrs["keyrotator"], "revocation_addr": addrs["revocation"]}
        pinned = ClientTls(pki.ca, cert, key).channel_credentials()  # today's way: A for ever
        control = await asyncio.wait_for(start_verifier(**args, channel_credentials=pinned), WAIT)
        runtime = await asyncio.wait_for(start_verifier(**args, channel_tls=files), WAIT)
        try:
            await asyncio.wait_for(runtime.state.wait_current(), WAIT)
            await asyncio.wait_for(control.state.wait_current(), WAIT)
            new_ca.issue("verifier").write(cert, key)  # B
            await asyncio.sleep(0.5)  # one look at the files (every 0.2 s, on a call)
            clients_ca.write_bytes(new_ca.cert_pem)  # from the next handshake on, A is refused
            start = time.monotonic()
            while not control.state.is_stale():
                assert time.monotonic() - start < WAIT, "the control never lost its connection"
                await asyncio.sleep(0.1)
            print(f"control stale {time.monotonic() - start:.1f} s after A was refused")
            # A verifier still on A would be stale by now as well (same maximum age, same
            # budget): the one on files proves itself current over B.
            await asyncio.sleep(3.5)
            await asyncio.wait_for(runtime.state.wait_current(), 10)
            assert not runtime.state.is_stale()
            assert control.state.is_stale()
        finally:
            await runtime.close()
            await control.close()
