"""`glacierflow serve`, run for real: N worker processes, each on its own socket of the one
port; a worker that dies is replaced while the others keep answering, workers that keep
dying stop the command with an error; and every way out (SIGTERM, SIGHUP, Ctrl-C, a port
in use, a crash loop) stops the private PostgreSQL the command started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import child_processes, free_port, let_postgres_traverse, wait_healthy

from glacierflow.catalog.database import EmbeddedCluster, cluster_directory
from glacierflow.catalog.loader import init_catalog


def _serve(tmp_path: Path, dsn: str | None, port: int, workers: int) -> subprocess.Popen[str]:
    """`glacierflow serve` on `dsn`, or without one on a private cluster in tmp_path/data."""
    env = {**os.environ, "GLACIERFLOW_DATA_DIR": str(tmp_path / "data")}
    for name in ("DATABASE_URL", "PGHOST"):
        env.pop(name, None)
    if dsn:
        env["DATABASE_URL"] = dsn
    return subprocess.Popen(
        [sys.executable, "-m", "glacierflow.cli", "serve", "--port", str(port),
         "--workers", str(workers)],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _worker_processes(server: subprocess.Popen[str]) -> list[int]:
    """The server's worker processes (not multiprocessing's resource tracker)."""
    workers = []
    for pid in child_processes(server.pid):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(pid)
        except OSError:
            continue
    return workers


def _listening_inodes(pid: int, port: int) -> set[str]:
    """Inodes of the process's sockets that listen on `port` (from /proc/net/tcp)."""
    try:
        table = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # the process is gone
        return set()
    listening = set()
    for line in table:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            listening.add(fields[9])
    own = set()
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            own.add(target[8:-1])
    return listening & own


def _listening_workers(server: subprocess.Popen[str], port: int, count: int) -> list[int]:
    deadline = time.monotonic() + 180
    while True:
        assert server.poll() is None, server.communicate()[1]
        assert time.monotonic() < deadline, "the workers did not start"
        workers = [w for w in child_processes(server.pid) if _listening_inodes(w, port)]
        if len(workers) == count:
            return workers
        time.sleep(0.3)


def _wait_dead(pid: int) -> None:
    """Until `pid` has exited (gone, or a zombie: its sockets are closed)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except OSError:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} did not exit")


def _stop(server: subprocess.Popen[str], how: signal.Signals = signal.SIGTERM) -> str:
    """Send `how`, wait for the command to end; its stderr."""
    if server.poll() is None:
        server.send_signal(how)
    try:
        return server.communicate(timeout=90)[1]
    finally:
        server.kill()


def test_workers_listen_on_their_own_sockets_answer_and_stop_together(
    new_catalog: Callable[[str], str], tmp_path: Path
) -> None:
    port = free_port()
    server = _serve(tmp_path, new_catalog("serve_workers"), port, workers=3)
    try:
        workers = _listening_workers(server, port, 3)
        sockets = [_listening_inodes(w, port) for w in workers]
        assert len(set.union(*sockets)) == 3  # one socket each, not one shared
        for _ in range(12):  # new connections, whichever worker takes them
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
                assert http.get("/healthz").json()["status"] == "up"
    finally:
        stderr = _stop(server)
    assert server.returncode == 0, stderr
    assert not [w for w in workers if Path(f"/proc/{w}").exists()]


def test_a_port_in_use_is_named(new_catalog: Callable[[str], str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = _serve(tmp_path, new_catalog("serve_port_taken"), port, workers=2)
        _, stderr = server.communicate(timeout=120)
    assert server.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in stderr and "Traceback" not in stderr


def test_a_killed_worker_is_replaced_while_the_others_answer(
    new_catalog: Callable[[str], str], tmp_path: Path
) -> None:
    """Say, by the out-of-memory killer or a segfault: the service stays up."""
    port = free_port()
    server = _serve(tmp_path, new_catalog("serve_killed"), port, workers=2)
    try:
        first = _listening_workers(server, port, 2)
        os.kill(first[0], signal.SIGKILL)
        _wait_dead(first[0])  # the connections its socket had queued die with it
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for _ in range(6):  # the port keeps answering (the other worker) meanwhile
                assert http.get("/healthz").status_code == 200
        replaced = _listening_workers(server, port, 2)
        assert first[1] in replaced and first[0] not in replaced
        # and both die: both come back
        for worker in replaced:
            os.kill(worker, signal.SIGKILL)
        for worker in replaced:
            _wait_dead(worker)
        again = _listening_workers(server, port, 2)
        assert not set(again) & set(replaced)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
    finally:
        stderr = _stop(server)
    assert server.returncode == 0, stderr
    assert f"worker {first[0]} was killed by SIGKILL; starting a new one" in stderr


# -- the private cluster stops on every way out ------------------------------------------------


@pytest.fixture(scope="module")
def cluster_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cluster with the catalog in it, stopped: copied as a data dir's `postgres`
    folder, it spares each test the initdb and the migration."""
    folder = tmp_path_factory.mktemp("cluster-template")
    let_postgres_traverse(folder)
    cluster = EmbeddedCluster(folder / "postgres")
    dsn, _ = cluster.start()
    try:
        init_catalog(dsn, {})
    finally:
        cluster.stop()
    return folder / "postgres"


def _data_dir_with_cluster(tmp_path: Path, template: Path) -> EmbeddedCluster:
    let_postgres_traverse(tmp_path)
    (tmp_path / "data").mkdir()
    directory = cluster_directory(tmp_path / "data")
    subprocess.run(["cp", "-a", f"{template}/.", str(directory)], check=True)
    return EmbeddedCluster(directory)


def _postgres_stopped(cluster: EmbeddedCluster) -> bool:
    """No postmaster.pid, and no process serving that data folder."""
    serving = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-D" in command and str(cluster.data).encode() in command:
            serving.append(entry.name)
    return not (cluster.data / "postmaster.pid").exists() and not serving


@pytest.mark.parametrize(
    ("how", "workers"),
    [(signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGHUP, 2), (signal.SIGINT, 1)],
)
def test_serve_stops_its_private_cluster_on_a_signal(
    tmp_path: Path, cluster_template: Path, how: signal.Signals, workers: int
) -> None:
    cluster = _data_dir_with_cluster(tmp_path, cluster_template)
    port = free_port()
    server = _serve(tmp_path, None, port, workers=workers)
    try:
        wait_healthy(server, f"http://127.0.0.1:{port}", lambda: server.communicate()[1])
        assert not _postgres_stopped(cluster), "serve did not use the private cluster"
    finally:
        stderr = _stop(server, how)
    assert server.returncode == 0, stderr
    assert _postgres_stopped(cluster), stderr
    assert "Traceback" not in stderr


def test_a_signal_during_start_up_stops_the_private_cluster(
    tmp_path: Path, cluster_template: Path
) -> None:
    """SIGTERM as soon as the cluster runs, while serve prepares the catalog."""
    cluster = _data_dir_with_cluster(tmp_path, cluster_template)
    server = _serve(tmp_path, None, free_port(), workers=1)
    try:
        deadline = time.monotonic() + 120
        while _postgres_stopped(cluster):
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "the private cluster did not start"
            time.sleep(0.05)
    finally:
        stderr = _stop(server)
    assert server.returncode in (0, 1), stderr  # 1: "Aborted!" before serving began
    assert _postgres_stopped(cluster), stderr


def test_a_port_in_use_stops_the_private_cluster(tmp_path: Path, cluster_template: Path) -> None:
    cluster = _data_dir_with_cluster(tmp_path, cluster_template)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = _serve(tmp_path, None, taken.getsockname()[1], workers=1)
        _, stderr = server.communicate(timeout=120)
    assert server.returncode == 2, stderr
    assert _postgres_stopped(cluster), stderr


def test_workers_that_keep_dying_end_serve_with_an_error_and_stop_the_cluster(
    tmp_path: Path, cluster_template: Path
) -> None:
    """A crash loop (here: every worker killed as soon as it appears) is not retried
    forever: serve gives up, says why, exits 1, and its cluster stops."""
    cluster = _data_dir_with_cluster(tmp_path, cluster_template)
    server = _serve(tmp_path, None, free_port(), workers=1)
    killed: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        while server.poll() is None and time.monotonic() < deadline:
            for worker in set(_worker_processes(server)) - killed:
                os.kill(worker, signal.SIGKILL)
                killed.add(worker)
            time.sleep(0.02)
    finally:
        stderr = _stop(server)
    assert server.returncode == 1, stderr
    assert "workers keep dying (6 in 60 s, the last was killed by SIGKILL)" in stderr
    assert len(killed) == 6
    assert _postgres_stopped(cluster), stderr
    assert "Traceback" not in stderr
