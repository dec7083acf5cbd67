"""gRPC server interceptor for the sync (thread-pool) ``grpc.server``, sharing the async verifier.

The verifier's moving parts — the JWKS refresh, the NATS event feed, the introspection fallback
— are asyncio code. A sync server keeps them on an event loop in a background thread
(:class:`VerifierLoop`) and calls into the same :class:`~.verifier.Verifier` from its threads:

::

    loop = VerifierLoop.start()
    runtime = loop.run(start_verifier(issuer=..., audience="demo-api", ...))
    server = grpc.server(ThreadPoolExecutor(16), interceptors=[
        SyncAuthInterceptor(runtime.verifier, {"/demo.Greeter/*": MethodPolicy(scopes={"x"})})])
    ...
    loop.run(runtime.close()); loop.stop()

Where each step runs, and why:

- grpc's sync server runs interceptors on its single dispatch thread, so nothing there may
  block. The interceptor does only what costs microseconds: policy lookup, the metadata parse,
  and :meth:`~.verifier.Verifier.check_cached` (a dict lookup plus the revocation checks). A hit
  sets the claims and returns the handler untouched.
- Everything else (first sight, or a failure to explain) is deferred into the handler's worker
  thread: :meth:`~.verifier.Verifier.verify_blocking` checks the signature there, in parallel
  with the dispatch thread, and only a JWKS refresh or an introspection is handed to the
  verifier's loop (``run_coroutine_threadsafe``), with a timeout that turns into UNAVAILABLE.
- Claims go in a ContextVar: grpc runs the interceptor and the handler in one
  ``contextvars.Context`` per call, so :func:`~.interceptor.current_claims` works in handlers.

Status codes and details are those of the aio interceptor (``interceptor`` module docstring).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final, TypeVar

import grpc

from tokenry.jose.errors import VerificationError
from tokenry.verifier._binding import (
    CERTIFICATE_MISMATCH,
    bound_thumbprint,
    certificate_matches,
)
from tokenry.verifier._policy import (
    INSUFFICIENT_SCOPE,
    MISSING_TOKEN,
    MethodPolicy,
    Policies,
    ScopeCheck,
    StatusBook,
    bearer_token,
    replace_behavior,
    set_claims,
)
from tokenry.verifier._verifier import DEFAULT_BLOCKING_TIMEOUT, Claims, Verifier

__all__ = ["SyncAuthInterceptor", "VerifierLoop"]

T = TypeVar("T")

_UNIMPLEMENTED: Final = (grpc.StatusCode.UNIMPLEMENTED, "Method not found!")


class SyncAuthInterceptor(grpc.ServerInterceptor):
    """Authenticates every non-public call of a sync ``grpc.server``.

    Args:
        verifier: the process's verifier; it must know its event loop (built by
            ``start_verifier`` on a :class:`VerifierLoop`, or see ``Verifier.bind_loop``).
        policies, default: as for :class:`~.interceptor.AuthInterceptor`.
        timeout: how long a worker thread waits for the verifier's loop (JWKS refresh,
            introspection) before answering UNAVAILABLE.

    Raises:
        ValueError: the verifier has no event loop.
    """

    def __init__(
        self,
        verifier: Verifier,
        policies: Mapping[str, MethodPolicy] | None = None,
        default: MethodPolicy | None = None,
        *,
        timeout: float = DEFAULT_BLOCKING_TIMEOUT,
    ) -> None:
        if verifier.loop is None:
            raise ValueError("the verifier has no event loop: start it on a VerifierLoop")
        self._verifier = verifier
        self._policies = Policies(policies, default)
        self._scopes_ok = ScopeCheck()
        self._status_for = StatusBook()
        self._timeout = timeout

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        policy = self._policies.resolve(handler_call_details.method)
        if policy.public:
            return continuation(handler_call_details)
        token = bearer_token(handler_call_details.invocation_metadata)
        handler = continuation(handler_call_details)
        if token is None:
            return _abort(handler, MISSING_TOKEN)
        claims = self._verifier.check_cached(token)
        if claims is None:
            # Not decidable in microseconds: decide in the worker thread, not on the dispatcher.
            return self._deferred(handler, token, policy)
        if policy.scopes and not self._scopes_ok(claims, policy.scopes):
            return _abort(handler, INSUFFICIENT_SCOPE)
        if handler is None:
            return None
        set_claims(claims)  # this call's own context, which the worker thread runs in
        return handler

    def _authenticate(self, token: str, policy: MethodPolicy) -> Claims | grpc.Status:
        try:
            claims = self._verifier.verify_blocking(
                token, on_stale=policy.on_stale, timeout=self._timeout
            )
        except VerificationError as exc:
            return self._status_for(exc)
        if policy.scopes and not self._scopes_ok(claims, policy.scopes):
            return INSUFFICIENT_SCOPE
        return claims

    def _deferred(
        self, handler: grpc.RpcMethodHandler[Any, Any] | None, token: str, policy: MethodPolicy
    ) -> grpc.RpcMethodHandler[Any, Any]:
        authenticate = self._authenticate
        inner = (
            None
            if handler is None
            else (
                handler.unary_unary
                or handler.unary_stream
                or handler.stream_unary
                or handler.stream_stream
            )
        )

        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            result = authenticate(token, policy)
            if isinstance(result, grpc.Status):
                context.abort_with_status(result)  # raises
            if "cnf" in result:  # RFC 8705 §3.2: a bound token needs its certificate
                expected = bound_thumbprint(result)
                if expected is not None and not certificate_matches(context, expected):
                    context.abort_with_status(CERTIFICATE_MISMATCH)
            if inner is None:  # authenticated caller, unknown method
                context.abort(*_UNIMPLEMENTED)
            set_claims(result)
            return inner(request, context)

        return replace_behavior(handler, behavior)


def _abort(
    handler: grpc.RpcMethodHandler[Any, Any] | None, status: grpc.Status
) -> grpc.RpcMethodHandler[Any, Any]:
    def abort(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort_with_status(status)

    return replace_behavior(handler, abort)


class VerifierLoop:
    """An asyncio event loop in a daemon thread, for a verifier used by sync code.

    :meth:`run` submits a coroutine to it and waits for the result, so a sync program can call
    ``start_verifier`` and ``runtime.close()``; the verifier then keeps its JWKS and revocation
    state current on this loop while server threads call ``verify_blocking``.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="tokenry-verifier", daemon=True)

    @classmethod
    def start(cls) -> VerifierLoop:
        vl = cls()
        vl._thread.start()
        vl._ready.wait()
        return vl

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and return its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what still runs on the loop, stop it and join the thread."""
        if not self._thread.is_alive():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all(), timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)

    def __enter__(self) -> VerifierLoop:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
