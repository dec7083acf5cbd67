"""`tokenry events watch [--json]`: a live tail of revocation, key and client events
(docs/spec.md §6).

Reads the event stream with its own ordered consumer (nothing is acknowledged or consumed for
anyone else), from now on or, with ``--all``, from the oldest event the stream still holds.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
import sys
from dataclasses import dataclass, replace
from typing import Annotated, Any

import typer

from tokenry.cli.common import NEGATIVE, UNREACHABLE, USAGE, fail
from tokenry.cli.context import stack
from tokenry.cli.typerkit import App

app = App(help="Watch the event stream.")


def describe(event: Any, stream_seq: int) -> dict[str, Any]:
    """One event as plain data (what --json prints, one object per line)."""
    out: dict[str, Any] = {
        "seq": event.seq,
        "stream_seq": stream_seq,
        "event_id": event.event_id,
        "occurred_at": _iso(event.occurred_at),
    }
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
    """One event as one readable line."""
    head = f"{data['occurred_at']}  #{data['seq']:<8}"
    if data["type"] == "revocation":
        line = f"{head} revoked {data['kind']} {data['value']}"
        if "not_before" in data:
            line += f" (tokens issued before {data['not_before']})"
        line += f" by {data['actor'] or '?'} until {data['expires_at']}"
        return line + (f": {data['reason']}" if data["reason"] else "")
    if data["type"] == "key":
        return f"{head} key {data['kid']} ({data['alg']}) is now {data['state']}"
    if data["type"] == "client":
        return f"{head} client {data['client_id']} {data['change']}"
    return f"{head} event of a newer kind"


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
        self.done = asyncio.Event()

    def _emit(self, data: dict[str, Any], line: str) -> None:
        typer.echo(json.dumps(data) if self._json else line)
        sys.stdout.flush()

    def on_event(self, stream_seq: int, payload: bytes) -> None:
        from tokenry.bus import codec

        try:
            event = codec.decode(payload)
        except codec.UndecodableEvent:
            data = {"type": "undecodable", "stream_seq": stream_seq}
            self._emit(data, f"(undecodable message at stream seq {stream_seq})")
            return
        data = describe(event, stream_seq)
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
