"""Server lifecycle shared by every service (docs/design.md §2).

The gRPC server starts at once and reports NOT_SERVING on grpc.health.v1 while the service
connects to its dependencies with backoff; then SERVING. SIGTERM/SIGINT: NOT_SERVING, stop
accepting, finish in-flight calls within the grace period, stop background tasks, close.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from tokenry.core.errors import TemporarilyUnavailable
from tokenry.servicekit.rpctelemetry import instrument_server
from tokenry.servicekit.tls import PLAINTEXT, Transport, add_listener, server_options

log = logging.getLogger(__name__)
T = TypeVar("T")

# Keepalive and message limits: small messages, many short calls.
SERVER_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.max_receive_message_length", 1 << 20),
    ("grpc.so_reuseport", 1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
)


class Ready(Generic[T]):
    """Holds a service's use cases once its dependencies are up; UNAVAILABLE until then."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: T | None = None

    def set(self, value: T) -> None:
        self._value = value

    def get(self) -> T:
        if self._value is None:
            raise TemporarilyUnavailable("the service is starting; retry")
        return self._value


Startup = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
Closer = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class Service:
    """What an app.py composition root returns."""

    name: str
    server: grpc.aio.Server
    port: int
    health: health_aio.HealthServicer
    # Connects dependencies (with retry) and sets the Ready holders; runs until stop is set.
    startup: Startup
    closers: list[Closer] = field(default_factory=list)


def new_server(
    service_names: Sequence[str],
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    *,
    tls: Transport = PLAINTEXT,
) -> tuple[grpc.aio.Server, health_aio.HealthServicer]:
    """A server with health and reflection. Register each servicer through
    :func:`tokenry.servicekit.errors.guard`: it maps exceptions to statuses (no interceptor).

    ``tls`` sets the maximum connection age (servicekit.tls); bind with :func:`listen`."""
    server = grpc.aio.server(
        interceptors=list(interceptors), options=[*SERVER_OPTIONS, *server_options(tls)]
    )
    # Per-RPC metrics and spans, wrapped at registration (no interceptor); a no-op when
    # telemetry is off (servicekit.telemetry).
    instrument_server(server)
    health = health_aio.HealthServicer()
    names = [
        *service_names,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    ]
    with _generic_only(server):
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        reflection.enable_server_reflection(names, server)
    return server, health


@contextlib.contextmanager
def _generic_only(server: grpc.aio.Server) -> Iterator[None]:
    """Services added inside are served through their generic handler only, not also as
    registered methods. grpc.aio keeps one pending request per registered method and waits on
    all of them (``asyncio.wait``) for every call it accepts, so each registered method costs
    every call of every method: health and reflection, rarely called, cost the introspector
    ≈ 4 % of its instructions per call (docs/benchmarks/introspection.md). They still answer,
    found by method name among the generic handlers."""
    registered = server.add_registered_method_handlers
    server.add_registered_method_handlers = _ignore  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        server.add_registered_method_handlers = registered  # type: ignore[method-assign]


def _ignore(*_args: object) -> None:
    return None


def listen(server: grpc.aio.Server, host: str, port: int, tls: Transport = PLAINTEXT) -> int:
    """Bind the listener, with TLS (reloading certificates) when ``tls.server`` is set.

    Returns the bound port (``port=0`` picks a free one).
    """
    return add_listener(server, host, port, tls)


async def set_serving(
    health: health_aio.HealthServicer, names: Sequence[str], serving: bool
) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *names):
        await health.set(name, status)
    if serving:
        # Everything built at start-up (modules, pools, clients, caches' first fill) lives as
        # long as the process: move it out of the cyclic GC's sight, so the collections that
        # per-call garbage triggers do not rescan it on every full pass (docs/design.md §7).
        gc.freeze()


async def run(service: Service, *, grace: float = 5.0, service_names: Sequence[str] = ()) -> None:
    """Serve until SIGTERM/SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(service, stop, grace=grace, service_names=service_names)


async def serve(
    service: Service, stop: asyncio.Event, *, grace: float = 5.0, service_names: Sequence[str] = ()
) -> None:
    """Serve until ``stop`` is set (or the startup task fails), then shut down gracefully."""
    await set_serving(service.health, service_names, serving=False)
    await service.server.start()
    log.info("%s listening on port %d", service.name, service.port)
    startup = asyncio.create_task(service.startup(stop), name=f"{service.name}-startup")
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({startup, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if startup.done() and not stop.is_set():
        exc = startup.exception()
        if exc is not None:
            log.error("%s failed: %s", service.name, type(exc).__name__, exc_info=exc)
        stop.set()
    log.info("%s shutting down", service.name)
    await set_serving(service.health, service_names, serving=False)
    await service.server.stop(grace)
    startup.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await startup
    stopper.cancel()
    for close in reversed(service.closers):
        with contextlib.suppress(Exception):
            await close()
    log.info("%s stopped", service.name)
