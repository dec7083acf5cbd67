"""A grpc.aio channel that follows client-certificate rotation (issue 13 item 1; docs/security.md
"Certificate rotation").

grpc Python's channel credentials are fixed when built: a long-lived channel (a verifier's to
the key rotator and the revocation service, a service's bearer channel) keeps presenting the
certificate it started with. Servers end every connection at ``grpc.max_connection_age_ms``;
the channel then reconnects with the OLD certificate, which cert-manager or SPIRE may have
replaced because it is about to expire — and once it has, the handshake is refused.

:class:`ReloadingChannel` is a :class:`grpc.aio.Channel` over the certificate, key and CA
*files* (:class:`tokenry.tls.ClientTls`). On a call, at most every ``tls.check_interval`` seconds,
it ``stat``\\ s the files (device, inode, size, mtime: a swapped ``..data`` symlink of a
Kubernetes secret volume is a change too). When they changed and form a consistent set — the
key is the certificate's — it builds a channel over the new files, sends new calls there,
and closes the old one with ``grace`` seconds for its in-flight calls. A half-written swap
(the certificate replaced, not yet the key) keeps the current channel and logs one line
(paths, never content); the next change is looked at again.

Stubs made once from this channel keep working across reloads: each multicallable picks the
current channel on every call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tokenry.tls import ClientTls, read_pem

__all__ = ["DEFAULT_GRACE", "ReloadingChannel", "load_credentials"]

log = logging.getLogger(__name__)

#: seconds the replaced channel's in-flight calls get before it is closed
DEFAULT_GRACE = 60.0

Signature = tuple[tuple[int, int, int, int], ...]


def _signature(paths: Sequence[Path]) -> Signature:
    states = []
    for path in paths:
        try:
            st = os.stat(path)  # follows symlinks
        except OSError:
            states.append((-1, -1, -1, -1))
        else:
            states.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(states)


def load_credentials(tls: ClientTls) -> grpc.ChannelCredentials:
    """Channel credentials over ``tls``'s files, read once and checked together.

    Raises:
        ValueError: a file is unreadable or malformed, or the key is not the certificate's
            (the message names paths, never content).
    """
    ca = read_pem(tls.ca, "CA bundle") if tls.ca is not None else None
    chain = read_pem(tls.cert, "certificate") if tls.cert is not None else None
    key = read_pem(tls.key, "private key") if tls.key is not None else None
    try:
        if ca is not None:
            x509.load_pem_x509_certificates(ca)
        consistent = chain is None or key is None or _same_key(chain, key)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad TLS material next to {tls.cert or tls.ca}: {exc}") from None
    if not consistent:
        raise ValueError(f"the private key {tls.key} is not the key of {tls.cert}")
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=chain
    )


def _same_key(chain: bytes, key: bytes) -> bool:
    """Whether ``key`` is the private key of the chain's leaf certificate."""
    leaf = x509.load_pem_x509_certificates(chain)[0]
    private = serialization.load_pem_private_key(key, password=None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return private.public_key().public_bytes(der, spki) == leaf.public_key().public_bytes(der, spki)


class _Dispatch:
    """A multicallable that sends each call to the owner's current channel."""

    __slots__ = ("_args", "_callable", "_channel", "_kind", "_owner")

    def __init__(self, owner: ReloadingChannel, kind: str, args: tuple[Any, ...]) -> None:
        self._owner = owner
        self._kind = kind
        self._args = args
        self._channel: grpc.aio.Channel | None = None
        self._callable: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        channel = self._owner.current()
        if channel is not self._channel:
            self._callable = getattr(channel, self._kind)(*self._args)
            self._channel = channel
        return self._callable(*args, **kwargs)


class ReloadingChannel(grpc.aio.Channel):
    """A grpc.aio channel to ``target`` over ``tls``'s files that follows their rotation.

    Args:
        target: host:port.
        tls: the CA bundle, and for mTLS the certificate and key, as paths; its
            ``check_interval`` is the time between two looks at the files (on a call).
        options: gRPC channel arguments (``tls.server_name`` is added).
        interceptors: grpc.aio client interceptors, shared by every channel built.
        grace: seconds a replaced channel's in-flight calls get before it is closed.

    Raises:
        ValueError: the files are not usable now.
    """

    def __init__(
        self,
        target: str,
        tls: ClientTls,
        *,
        options: Sequence[tuple[str, Any]] | None = None,
        interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
        grace: float = DEFAULT_GRACE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._target = target
        self._tls = tls
        self._options = [*(options or []), *tls.channel_options()]
        self._interceptors = list(interceptors or [])
        self._check_interval = tls.check_interval
        self._grace = grace
        self._monotonic = monotonic
        self._paths = [p for p in (tls.ca, tls.cert, tls.key) if p is not None]
        self._signature = _signature(self._paths)
        self._refused: Signature | None = None
        self._channel = self._build(load_credentials(tls))
        self._next_check = monotonic() + tls.check_interval
        self._draining: set[asyncio.Task[None]] = set()
        self._replaced: set[grpc.aio.Channel] = set()
        self._closed = False
        self.reloads = 0  #: how many times the files were taken up (for tests and metrics)

    def _build(self, credentials: grpc.ChannelCredentials) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(
            self._target, credentials, options=self._options, interceptors=self._interceptors
        )

    def current(self) -> grpc.aio.Channel:
        """The channel new calls go to, after a look at the files when one is due."""
        now = self._monotonic()
        if now >= self._next_check and not self._closed:
            self._next_check = now + self._check_interval
            self.reload_if_changed()
        return self._channel

    def reload_if_changed(self) -> bool:
        """Take up the files if they changed and are consistent; whether it did."""
        signature = _signature(self._paths)
        if signature in (self._signature, self._refused):
            return False
        try:
            credentials = load_credentials(self._tls)
        except Exception as exc:  # any unusable set (bad PEM, odd key type) keeps the channel
            # Mid-rotation (one file replaced, not yet the other): keep the working channel,
            # say so once for this state of the files, and look again at the next change.
            self._refused = signature
            log.warning(
                "client TLS files for %s changed but are not usable yet, keeping the current "
                "certificate: %s",
                self._target,
                exc,
            )
            return False
        loop = asyncio.get_running_loop()  # before the swap: no loop, no swap
        old, self._channel = self._channel, self._build(credentials)
        self._signature, self._refused = signature, None
        self.reloads += 1
        log.info("client TLS files for %s reloaded; new calls use them", self._target)
        self._replaced.add(old)
        task = loop.create_task(old.close(self._grace))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)
        task.add_done_callback(lambda _t: self._replaced.discard(old))
        return True

    # --- grpc.aio.Channel ----------------------------------------------------------------------

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _Dispatch(self, "unary_unary", _positional(args, kwargs))

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _Dispatch(self, "unary_stream", _positional(args, kwargs))

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _Dispatch(self, "stream_unary", _positional(args, kwargs))

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _Dispatch(self, "stream_stream", _positional(args, kwargs))

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.current().get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self.current().wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self.current().channel_ready()

    async def close(self, grace: float | None = None) -> None:
        self._closed = True
        await self._channel.close(grace)
        # A drain cancelled in its grace wait never cancels its channel's calls (grpc's _close
        # is interrupted), so the replaced channels are closed at once here: nothing outlives us.
        for task in list(self._draining):
            task.cancel()
        await asyncio.gather(*self._draining, return_exceptions=True)
        await asyncio.gather(*(old.close(None) for old in list(self._replaced)))
        self._replaced.clear()

    async def __aenter__(self) -> ReloadingChannel:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


_PARAMETERS = ("method", "request_serializer", "response_deserializer", "_registered_method")


def _positional(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """A multicallable's arguments in grpc's order (stubs pass some by keyword)."""
    values = list(args) + [None] * (len(_PARAMETERS) - len(args))
    for name, value in kwargs.items():
        values[_PARAMETERS.index(name)] = value
    values[3] = bool(values[3])
    return tuple(values)
