"""JSON logs, one object per line, with the current trace's ids and the event's own fields.

Each line holds ``ts``, ``level``, ``service``, ``logger``, ``msg``; ``worker`` with
``--workers``; ``trace_id`` and ``span_id`` (hex, as in W3C traceparent) when the line was
logged inside a sampled span, so a log line leads to its trace; and every field passed with
``extra=`` (``log.info("revoked", extra={"kind": "jti", "seq": 42})``), so lines can be
queried by field rather than grepped.

Nothing secret is ever passed to a logger (docs/spec.md §7). This formatter also does not print
exception *messages* of unknown types, only their type and traceback, and it drops extra
fields whose name says they could hold a credential.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final

from opentelemetry import trace

__all__ = ["JsonFormatter", "configure"]

# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)
# Belt and braces: a field named like a credential is never written, whatever its value.
_SECRET_NAMES: Final = ("token", "secret", "password", "authorization", "private", "assertion")


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (see the module docstring for the fields)."""

    def __init__(self, service: str, worker: int | None = None) -> None:
        super().__init__()
        self._service = service
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self._worker is not None:
            entry["worker"] = self._worker
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_") or key in entry:
                continue
            if any(word in key.lower() for word in _SECRET_NAMES):
                continue
            entry[key] = _plain(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(service: str, level: str = "INFO", *, worker: int | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service, worker))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # asyncpg/nats log reconnect chatter at INFO; keep it at WARNING.
    for noisy in ("nats", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
