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
from collections.abc import Callable, Coroutine, Iterable, Sequence
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
    serve_generic_only(server)
    # Per-RPC metrics and spans, wrapped at registration (no interceptor); a no-op when
    # telemetry is off (servicekit.telemetry).
    instrument_server(server)
    health = health_aio.HealthServicer()
    names = [
        *service_names,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    ]
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(names, server)
    return server, health


class MethodTable(grpc.GenericRpcHandler):
    """Every method of a server in one dictionary, keyed ``/package.Service/Method``: grpc.aio
    asks its generic handlers in the order they were added until one answers, so with one
    table every method (the hot one, health, reflection) is one lookup, whatever the order of
    registration."""

    __slots__ = ("_methods",)

    def __init__(self) -> None:
        self._methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        return self._methods.get(handler_call_details.method)

    def absorb(self, handler: grpc.GenericRpcHandler) -> bool:
        """Take the methods of a ``grpc.method_handlers_generic_handler`` (what generated code
        registers); False for any other kind of handler. The first registration of a path
        wins, as it would among separate generic handlers."""
        methods = getattr(handler, "_method_handlers", None)
        if not isinstance(methods, dict):
            return False
        for path, method in methods.items():
            self._methods.setdefault(path, method)
        return True


def serve_generic_only(server: grpc.aio.Server) -> MethodTable:
    """From now on every service added to ``server`` is served through one generic
    :class:`MethodTable` only, never also as registered methods.

    grpc.aio keeps one pending request per registered method and waits on all of them
    (``asyncio.wait``) for every call it accepts, so each registered method costs every call of
    every method: health and reflection alone cost the introspector ≈ 4 % of its instructions
    per call (docs/benchmarks/introspection.md), the issuer's 8 ≈ 4.7 % of a JWT's
    (docs/benchmarks/issuance.md). Generated ``add_*Servicer_to_server`` functions register
    both ways; here the registered half is dropped and the generic half lands in the table.
    Handlers of another kind are added after the table, as grpc.aio would add them."""
    table = MethodTable()
    add_generic = server.add_generic_rpc_handlers
    add_generic((table,))

    def generic(handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        others = tuple(h for h in handlers if not table.absorb(h))
        if others:
            add_generic(others)

    server.add_generic_rpc_handlers = generic  # type: ignore[method-assign,assignment]
    server.add_registered_method_handlers = _ignore  # type: ignore[method-assign,assignment]
    return table


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
