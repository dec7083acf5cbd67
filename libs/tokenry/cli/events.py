"""`tokenry events watch [--json]`: a live tail of revocation, key and client events
(docs/spec.md §6).

Reads the event stream with its own ordered consumer (nothing is acknowledged or consumed for
anyone else), from now on or, with ``--all``, from the oldest event the stream still holds.

Each event shows its **lag**: the time it arrived here minus its ``occurred_at`` (the producer's
wall clock when it built the event), the same figure the verifiers' propagation-lag histogram
records (docs/observability.md). A negative difference means the producer's clock is ahead of
this machine's: it is shown as clock skew, not as a lag. Replayed events (``--all``) show their
age.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import shutil
import ssl
import sys
import textwrap
import time
from dataclasses import dataclass, replace
from typing import Annotated, Any

import typer

from tokenry.cli.common import NEGATIVE, UNREACHABLE, USAGE, fail
from tokenry.cli.context import stack
from tokenry.cli.typerkit import App

app = App(help="Watch the event stream.")


def describe(event: Any, stream_seq: int, arrived: float | None = None) -> dict[str, Any]:
    """One event as plain data (what --json prints, one object per line); with ``arrived``
    (unix seconds), its ``lag_ms``: arrival − ``occurred_at``, negative under clock skew."""
    out: dict[str, Any] = {
        "seq": event.seq,
        "stream_seq": stream_seq,
        "event_id": event.event_id,
        "occurred_at": _iso(event.occurred_at),
    }
    if arrived is not None:
        out["lag_ms"] = round((arrived - event.occurred_at) * 1000.0, 1)
    rev = event.revocation
    if rev is not None:
        out.update(
            type="revocation",
            kind=rev.kind.value,
            value=rev.value,
            expires_at=_iso(rev.expires_at),
            reason=rev.reason,
            actor=event.actor,
        )
        if rev.not_before:
            out["not_before"] = _iso(rev.not_before)
    elif event.key is not None:
        out.update(type="key", kid=event.key.kid, alg=event.key.alg, state=event.key.state)
    elif event.client is not None:
        out.update(type="client", client_id=event.client.client_id, change=event.client.change)
    else:
        out["type"] = "other"
    return out


def human(data: dict[str, Any]) -> str:
    """One event as one readable line: its time (UTC), seq and lag, then what happened."""
    head = f"{data['occurred_at'][11:23]}Z #{data['seq']:<5}"
    if "lag_ms" in data:
        head += f" {lag_text(data['lag_ms']):<11}"
    if data["type"] == "revocation":
        line = f"{head}  revoked {data['kind']} {data['value']}"
        if "not_before" in data:
            line += f" (tokens issued before {_short(data['not_before'])})"
        line += f" by {data['actor'] or '?'} until {_short(data['expires_at'])}"
        return line + (f": {data['reason']}" if data["reason"] else "")
    if data["type"] == "key":
        return f"{head}  key {data['kid']} ({data['alg']}) is now {data['state']}"
    if data["type"] == "client":
        return f"{head}  client {data['client_id']} {data['change']}"
    return f"{head}  event of a newer kind"


def lag_text(lag_ms: float) -> str:
    """``lag 12 ms``, ``lag 1.5 s``, ``lag 3 min``; a negative lag is the producer's clock
    running ahead of ours: ``skew -40 ms``."""
    word = "lag" if lag_ms >= 0 else "skew"
    ms = abs(lag_ms)
    sign = "" if lag_ms >= 0 else "-"
    if ms < 10:
        amount = f"{ms:.1f} ms"
    elif ms < 1000:
        amount = f"{ms:.0f} ms"
    elif ms < 60_000:
        amount = f"{ms / 1000:.1f} s"
    elif ms < 3_600_000:
        amount = f"{ms / 60_000:.0f} min"
    else:
        amount = f"{ms / 3_600_000:.0f} h"
    return f"{word} {sign}{amount}"


def fit(line: str, width: int | None) -> str:
    """``line`` wrapped to ``width`` columns, continuation lines indented (None: as is)."""
    if width is None or len(line) <= width:
        return line
    return textwrap.fill(
        line, width=max(width, 40), subsequent_indent=" " * 6, break_on_hyphens=False
    )


def _width() -> int | None:
    """The terminal's width (``COLUMNS`` first); None when writing to a pipe without
    ``COLUMNS`` (a line per event for grep)."""
    if os.environ.get("COLUMNS", "").strip().isdigit() or sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def _short(iso: str) -> str:
    """``2026-12-03T19:00:00.000+00:00`` → ``2026-12-03 19:00Z``."""
    return f"{iso[:10]} {iso[11:16]}Z"


def _iso(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).isoformat(timespec="milliseconds")


@app.command()
def watch(  # noqa: PLR0917 - typer maps one parameter per option
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    from_start: Annotated[
        bool, typer.Option("--all", help="Start with the oldest event the stream holds")
    ] = False,
    heartbeats: Annotated[bool, typer.Option(help="Show publisher heartbeats too")] = False,
    count: Annotated[int, typer.Option(help="Exit after this many events (0: never)")] = 0,
    nats_url: Annotated[
        str | None,
        typer.Option(help="NATS URL (default: TOKENRY_NATS_URL, then the dev stack's)"),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for NATS at start (then: reconnect quietly)")
    ] = 5.0,
) -> None:
    """Print revocation, key and client events as they are published, until Ctrl-C.

    Exit codes: 0 done (--count reached, or Ctrl-C), 1 no event stream yet, 2 a malformed
    URL, 3 NATS unreachable at start.
    """
    from tokenry.servicekit.variables import nats_url as check_nats_url

    found = stack(ctx, nats_url=nats_url)
    url = found.nats_url.value
    try:
        check_nats_url(url)
    except ValueError as exc:
        raise fail(f"{found.nats_url.source} {exc}", USAGE) from None
    where = f"NATS at {redacted(url)} (from {found.nats_url.source})"
    w = _Watch(
        url, found.nats_prefix, found.nats_stream, as_json, from_start, heartbeats, count, timeout
    )
    tls = found.nats_tls()  # TOKENRY_NATS_TLS_CA, else the dev CA of a TLS dev stack
    if tls is not None:
        w = replace(w, tls=tls)
    try:
        asyncio.run(_watch(w))
    except KeyboardInterrupt:
        pass
    except (OSError, TimeoutError):
        raise fail(f"{where} is unreachable; {found.hint()}", UNREACHABLE) from None
    except _StreamMissing:
        raise fail(
            f"no event stream {found.nats_stream} on {where} (is a publisher running?)", NEGATIVE
        ) from None


def redacted(url: str) -> str:
    """``url`` without its password (a NATS URL may carry credentials)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


class _StreamMissing(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Watch:
    url: str
    prefix: str
    stream: str
    as_json: bool
    from_start: bool
    heartbeats: bool
    count: int
    timeout: float
    tls: ssl.SSLContext | None = None


async def _watch(w: _Watch) -> None:
    import nats
    from nats.js.errors import NotFoundError

    from tokenry.bus.codec import Subjects
    from tokenry.bus.consumer import JetStreamEvents

    async def quiet(_exc: Exception) -> None:
        return None  # nats-py would log a traceback for every attempt

    closing = asyncio.Event()

    async def disconnected() -> None:
        if not closing.is_set():
            typer.echo("NATS disconnected; reconnecting", err=True)

    async def reconnected() -> None:
        typer.echo("NATS reconnected", err=True)

    await _probe(w.url, w.timeout)
    try:
        nc = await asyncio.wait_for(
            nats.connect(
                w.url,
                name="tokenry-events-watch",
                connect_timeout=min(2.0, w.timeout),
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=quiet,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                **({"tls": w.tls} if w.tls is not None else {}),
            ),
            timeout=w.timeout,
        )
    except nats.errors.NoServersError:
        raise OSError("no NATS server answered") from None
    printer = _Printer(w.as_json, w.count)
    events = JetStreamEvents(nc, Subjects(w.prefix), w.stream)
    try:
        try:
            position = await events.position()
        except NotFoundError:
            position = None
        if position is None:
            raise _StreamMissing
        start = position.first_seq if w.from_start else position.last_seq + 1
        sub = await events.subscribe(start, printer.on_event)
        hb = await events.subscribe_heartbeats(printer.on_heartbeat) if w.heartbeats else None
        if not w.as_json:
            where = "the oldest event held" if w.from_start else "now"
            typer.echo(f"watching {w.stream} on {w.url} from {where} (Ctrl-C to stop)", err=True)
        await printer.done.wait()
        await sub.close()
        if hb is not None:
            await hb.close()
    finally:
        closing.set()
        await nc.close()


async def _probe(url: str, seconds: float) -> None:
    """Fail fast (OSError) when nothing listens: nats-py would retry a refused port quietly."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    if parts.scheme in ("ws", "wss"):
        return
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), seconds)
    writer.close()


class _Printer:
    def __init__(self, as_json: bool, count: int) -> None:
        self._json = as_json
        self._count = count
        self._seen = 0
        self._width = _width()
        self.done = asyncio.Event()

    def _emit(self, data: dict[str, Any], line: str) -> None:
        typer.echo(json.dumps(data) if self._json else fit(line, self._width))
        sys.stdout.flush()

    def on_event(self, stream_seq: int, payload: bytes) -> None:
        from tokenry.bus import codec

        arrived = time.time()  # wall clock, as occurred_at is
        try:
            event = codec.decode(payload)
        except codec.UndecodableEvent:
            data = {"type": "undecodable", "stream_seq": stream_seq}
            self._emit(data, f"(undecodable message at stream seq {stream_seq})")
            return
        data = describe(event, stream_seq, arrived)
        self._emit(data, human(data))
        self._seen += 1
        if self._count and self._seen >= self._count:
            self.done.set()

    def on_heartbeat(self, payload: bytes) -> None:
        from tokenry.bus import codec

        try:
            head, sent_at = codec.decode_heartbeat(payload)
        except codec.UndecodableEvent:
            return
        data = {"type": "heartbeat", "head_seq": head, "sent_at": _iso(sent_at)}
        self._emit(data, f"{data['sent_at']}  heartbeat, head #{head}")
