"""W3C trace context across the outbox and NATS (docs/design.md §4), on the OpenTelemetry API.

The revocation handler stores the ``traceparent`` of its (sampled) RPC span with the event in
the outbox; the relay's ``publish`` span is that context's child and travels in the NATS
message's ``traceparent`` header; each verifier's ``apply`` span is the child of the header's
context. One trace: Revoke → publish → every verifier applying the event.

Sampling was decided at the gRPC edge and is carried by the ``sampled`` flag that Tokenry
wrote itself: an event whose context is not sampled costs one string check here, no parsing
and no span. Without an SDK the API's no-op tracer makes no span and the stored context is
passed on unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    import asyncio

__all__ = ["TRACER", "applying", "is_sampled", "start_publish"]

TRACER: Final = "tokenry.bus"
_W3C: Final = TraceContextTextMapPropagator()
# traceparent = 2 hex version "-" 32 hex trace id "-" 16 hex span id "-" 2 hex flags
_LENGTH: Final = 55


def is_sampled(traceparent: str | None) -> bool:
    """Whether a ``traceparent`` carries the sampled flag (no full parse: the common case of
    an unsampled or absent context must cost nothing)."""
    if not traceparent or len(traceparent) != _LENGTH:
        return False
    try:
        return bool(int(traceparent[53:55], 16) & 1)
    except ValueError:
        return False


def start_publish(
    subject: str, event_id: str, traceparent: str | None
) -> tuple[trace.Span | None, str | None]:
    """A ``publish`` span (PRODUCER), the child of the context stored with the event.

    Returns the span (None when none was started: end it when the publish is acknowledged)
    and the ``traceparent`` to send: the span's own, or the stored one unchanged.
    """
    if not is_sampled(traceparent):
        return None, traceparent
    assert traceparent is not None
    parent = _W3C.extract({"traceparent": traceparent})
    span = trace.get_tracer(TRACER).start_span(
        f"publish {subject}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.destination.name": subject,
            "messaging.message.id": event_id,
        },
    )
    if not span.is_recording():
        return None, traceparent
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=trace.set_span_in_context(span))
    return span, carrier.get("traceparent", traceparent)


def end_when_done(span: trace.Span, future: asyncio.Future[Any]) -> None:
    """End ``span`` when the publish's acknowledgement (or its failure) arrives."""

    def done(f: asyncio.Future[Any]) -> None:
        if f.cancelled():
            span.set_status(trace.Status(trace.StatusCode.ERROR, "cancelled"))
        elif f.exception() is not None:
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(f.exception()).__name__))
        span.end()

    future.add_done_callback(done)


@contextlib.contextmanager
def applying(subject: str, headers: Mapping[str, str] | None) -> Iterator[None]:
    """Around a verifier's handling of one event: an ``apply`` span (CONSUMER), the child of
    the message header's context, current while the event is applied; nothing when the
    header is absent or not sampled."""
    traceparent = headers.get("traceparent") if headers else None
    if not is_sampled(traceparent):
        yield
        return
    assert traceparent is not None
    parent = _W3C.extract({"traceparent": traceparent})
    span = trace.get_tracer(TRACER).start_span(
        f"apply {subject}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": subject,
        },
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    except BaseException as exc:
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        otel_context.detach(token)
        span.end()
