"""One trace from Revoke to every verifier (issue 15), through real processes and a real OTLP
receiver (opentelemetry-proto's TraceService, started by the test).

The key rotator and the revocation service run as processes exporting OTLP to the receiver;
two verifiers run in a third process with the SDK installed by servicekit.telemetry. One
admin revocation must show up as: the ``Revoke`` server span, with its PostgreSQL queries as
client children (``db.system`` and the operation only); the relay's ``publish`` span,
the child of the context stored with the event in the outbox; and each verifier's ``apply``
span, the child of the context in the NATS message header — all in one trace.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import subprocess
import sys
from pathlib import Path

import asyncpg
import grpc
import pytest
from otlp_support import CLIENT, CONSUMER, PRODUCER, SERVER, OtlpReceiver, ReceivedSpan

from tokenry.devstack.ports import free_tcp_port
from tokenry.servicekit.config import Settings
from tokenry.v1 import revocation_pb2, revocation_pb2_grpc

from suite import process_env, register_clients, stop_all, wait_serving

pytestmark = pytest.mark.integration

VERIFIERS = 2
CHILD = r"""
import asyncio, json, sys
from tokenry.bus.codec import Subjects
from tokenry.servicekit import telemetry
from tokenry.verifier import start_verifier

async def main(cfg):
    done = telemetry.configure(telemetry.read_settings("verifier"))
    runtimes = [
        await start_verifier(issuer=cfg["issuer"], audience="demo-api", nats_url=cfg["nats"],
                             subjects=Subjects(cfg["prefix"]), stream=cfg["stream"],
                             keyrotator_addr=cfg["keyrotator"], revocation_addr=cfg["revocation"])
        for _ in range(cfg["n"])
    ]
    print("ready", flush=True)
    seq = int((await asyncio.to_thread(sys.stdin.readline)).strip())
    while not all(r.state.applied_seq >= seq for r in runtimes):
        await asyncio.sleep(0.01)
    for r in runtimes:
        await r.close()
    done.shutdown()  # flushes the apply spans
    print("applied", flush=True)

asyncio.run(main(json.loads(sys.argv[1])))
"""


def _env(settings: Settings, endpoint: str, name: str) -> dict[str, str]:
    assert settings.kek is not None
    extra = {
        "TOKENRY_DEV": "1",
        "TOKENRY_LOG_LEVEL": "WARNING",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": f"tokenry-{name}",
    }
    return process_env(settings, extra, keep_otel=False)


def _chain(spans: list[ReceivedSpan]) -> tuple[ReceivedSpan, ReceivedSpan, list[ReceivedSpan]]:
    """The Revoke span, its publish child and the publish's apply children (asserting)."""
    rpc = [s for s in spans if s.name == "tokenry.v1.Revocation/Revoke" and s.kind == SERVER]
    assert len(rpc) == 1, [s.name for s in spans]
    publish = [s for s in spans if s.kind == PRODUCER and s.parent_span_id == rpc[0].span_id]
    assert len(publish) == 1, "the publish span is the child of the Revoke span"
    applies = [s for s in spans if s.kind == CONSUMER and s.parent_span_id == publish[0].span_id]
    return rpc[0], publish[0], applies


def _complete(spans: list[ReceivedSpan]) -> bool:
    try:
        return len(_chain(spans)[2]) >= VERIFIERS
    except AssertionError:
        return False


async def test_one_revocation_is_one_trace_from_the_rpc_to_every_verifier(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    client_secrets = await register_clients(pool, settings)
    receiver = OtlpReceiver()
    endpoint = await receiver.start()
    keyrotator_addr = f"127.0.0.1:{free_tcp_port()}"
    revocation_addr = f"127.0.0.1:{free_tcp_port()}"
    procs: list[subprocess.Popen[bytes]] = []
    log = (tmp_path / "services.log").open("wb")
    try:
        for name, var, addr in (
            ("keyrotator", "TOKENRY_KEYROTATOR_LISTEN", keyrotator_addr),
            ("revocation", "TOKENRY_REVOCATION_LISTEN", revocation_addr),
        ):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", f"tokenry.services.{name}"],
                    env={**_env(settings, endpoint, name), var: addr},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        await wait_serving(keyrotator_addr, timeout=60)
        await wait_serving(revocation_addr, timeout=60)
        cfg = {
            "issuer": settings.issuer_url,
            "nats": settings.nats_url,
            "prefix": settings.subjects.prefix,
            "stream": settings.stream.name,
            "keyrotator": keyrotator_addr,
            "revocation": revocation_addr,
            "n": VERIFIERS,
        }
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            json.dumps(cfg),
            env=_env(settings, endpoint, "verifier"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        assert child.stdin is not None and child.stdout is not None
        ready = await asyncio.wait_for(child.stdout.readline(), timeout=60)
        assert ready.strip() == b"ready"

        auth = base64.b64encode(f"admin:{client_secrets['admin']}".encode()).decode()
        jti = secrets.token_urlsafe(16)
        async with grpc.aio.insecure_channel(revocation_addr) as channel:
            resp = await revocation_pb2_grpc.RevocationStub(channel).Revoke(
                revocation_pb2.RevokeRequest(jti=jti),
                metadata=(("authorization", f"Basic {auth}"),),
                timeout=10,
            )
        assert resp.seq > 0
        child.stdin.write(f"{resp.seq}\n".encode())
        await child.stdin.drain()
        applied = await asyncio.wait_for(child.stdout.readline(), timeout=60)
        assert applied.strip() == b"applied"
        await asyncio.wait_for(child.wait(), timeout=30)

        await receiver.wait_for(_complete, timeout=30)
        rpc, publish, applies = _chain(receiver.spans)
        assert rpc.service == "tokenry-revocation"
        assert {s.trace_id for s in (rpc, publish, *applies)} == {rpc.trace_id}
        assert len(applies) == VERIFIERS
        assert {s.service for s in applies} == {"tokenry-verifier"}
        assert publish.attributes["messaging.system"] == "nats"
        # The Revoke's queries (store.db.TracedConnection): children of the RPC's span, the
        # operation name only, never the statement nor a parameter (the jti).
        db = [s for s in receiver.spans if s.kind == CLIENT and s.parent_span_id == rpc.span_id]
        assert db, "the Revoke span has PostgreSQL query children"
        assert {s.attributes["db.system"] for s in db} == {"postgresql"}
        # the revocation is one statement (SELECT of the recording function, migration 0005)
        assert "SELECT" in {s.name for s in db}, [s.name for s in db]
        assert all(set(s.attributes) == {"db.system", "db.operation.name"} for s in db)
        assert all(s.trace_id == rpc.trace_id for s in db)
        assert jti not in repr(receiver.spans)
        # docs/spec.md §7: nothing secret in a span (the admin secret travelled in the metadata)
        dump = repr(receiver.spans)
        assert client_secrets["admin"] not in dump and auth not in dump
    finally:
        stop_all(procs)
        log.close()
        await receiver.stop()
