"""The embedded servers start, survive kill/restart with their data, and leave no process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import nats
import psutil
import pytest
from nats.js.api import StorageType, StreamConfig

from tokenry.devstack import EmbeddedNats, EmbeddedPostgres

pytestmark = pytest.mark.integration


def _server_pids(pid: int) -> set[int]:
    proc = psutil.Process(pid)
    return {pid} | {c.pid for c in proc.children(recursive=True)}


def _gone(pid: int) -> bool:
    """Exited: no such pid, or a zombie waiting for init to reap it."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _processes_mentioning(path: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if not _gone(proc.pid) and any(str(path) in a for a in proc.info["cmdline"] or ()):
            found.append(proc)
    return found


async def test_postgres_survives_kill_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    pg = EmbeddedPostgres(data_dir, fsync=False)
    try:
        t0 = time.monotonic()
        pg.start()
        first_start = time.monotonic() - t0
        assert pg.is_running()
        assert pg.pid is not None
        assert (tmp_path / "pg.log").exists()

        conn = await asyncpg.connect(pg.dsn())
        try:
            assert await conn.fetchval("select 1") == 1
            await conn.execute("create table t (id int primary key, v text)")
            await conn.execute("insert into t values (1, 'kept')")
        finally:
            await conn.close()

        killed = _server_pids(pg.pid)
        pg.kill()
        assert not pg.is_running()
        assert pg.pid is None
        assert all(_gone(p) for p in killed)

        t0 = time.monotonic()
        pg.start()  # crash recovery
        recovery_start = time.monotonic() - t0
        conn = await asyncpg.connect(pg.dsn())
        try:
            assert await conn.fetchval("select v from t where id = 1") == "kept"
        finally:
            await conn.close()
        print(f"postgres first start {first_start:.2f}s, after kill {recovery_start:.2f}s")

        running = _server_pids(pg.pid)
    finally:
        pg.stop()
    assert not pg.is_running()
    assert all(_gone(p) for p in running)
    assert _processes_mentioning(data_dir) == []
    pg.stop()  # idempotent


def test_postgres_stop_is_safe_before_start(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "never")
    pg.stop()
    pg.kill()
    assert pg.pid is None
    assert not pg.is_running()


def test_postgres_long_data_dir_uses_short_socket_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / ("x" * 90) / "pg"
    with EmbeddedPostgres(data_dir, fsync=False) as pg:
        assert pg.socket_dir != data_dir
        assert len(str(pg.socket_dir / ".s.PGSQL.5432")) < 100
        assert (pg.socket_dir / ".s.PGSQL.5432").exists()
        socket_dir = pg.socket_dir
        pg.kill()
        pg.start()  # same socket dir, so the same DSN, after a crash
        assert pg.socket_dir == socket_dir
        assert (socket_dir / ".s.PGSQL.5432").exists()
    assert not socket_dir.exists()


async def test_nats_keeps_stream_across_restart_on_same_url(tmp_path: Path) -> None:
    store = tmp_path / "nats"
    srv = EmbeddedNats(store)
    url = srv.url
    try:
        t0 = time.monotonic()
        srv.start()
        first_start = time.monotonic() - t0
        assert srv.is_running()
        assert srv.pid is not None
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="T", subjects=["t.>"], storage=StorageType.FILE))
            ack = await js.publish("t.one", b"hello")
            assert ack.seq == 1
        finally:
            await nc.close()

        t0 = time.monotonic()
        srv.restart()
        restart = time.monotonic() - t0
        assert srv.url == url
        nc = await nats.connect(url)
        try:
            msg = await nc.jetstream().get_msg("T", 1)
            assert msg.data == b"hello"
        finally:
            await nc.close()

        srv.kill()
        assert not srv.is_running()
        srv.start()
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().stream_info("T")
            assert info.state.messages == 1
        finally:
            await nc.close()
        print(f"nats first start {first_start:.2f}s, restart {restart:.2f}s")
        pid = srv.pid
        assert pid is not None
    finally:
        srv.stop()
    assert not srv.is_running()
    assert _gone(pid)
    assert _processes_mentioning(store) == []
    srv.stop()  # idempotent


_OWNER_SCRIPT = """
import sys, time
from pathlib import Path
from tokenry.devstack import EmbeddedNats, EmbeddedPostgres
pg = EmbeddedPostgres(Path(sys.argv[1]), fsync=False)
pg.start()
srv = EmbeddedNats(Path(sys.argv[2]))
srv.start()
print(pg.pid, srv.pid, flush=True)
time.sleep(60)
"""


def test_orphans_of_a_killed_supervisor_are_replaced(tmp_path: Path) -> None:
    pg_dir, nats_dir = tmp_path / "pg", tmp_path / "nats"
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER_SCRIPT, str(pg_dir), str(nats_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        old_pg, old_nats = (int(x) for x in owner.stdout.readline().split())
    finally:
        owner.kill()
        owner.wait()
    assert not _gone(old_pg)  # the supervisor died, its servers did not

    pg = EmbeddedPostgres(pg_dir, fsync=False)
    srv = EmbeddedNats(nats_dir)
    try:
        pg.start()
        srv.start()
        assert _gone(old_pg)
        assert _gone(old_nats)
    finally:
        pg.stop()
        srv.stop()


def test_a_server_with_a_live_owner_is_not_taken_over(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg", fsync=False) as pg:
        with pytest.raises(RuntimeError, match="already running"):
            EmbeddedPostgres(tmp_path / "pg").start()
        assert pg.is_running()
