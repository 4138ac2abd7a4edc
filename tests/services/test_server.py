"""`glacierflow serve --workers N`: N processes, each on its own socket of the one port,
all answering, all stopping with the parent; a port in use is an error that names it, and
workers that die make the command fail."""

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
from conftest import free_port


def _serve(tmp_path: Path, dsn: str, port: int, workers: int) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": dsn, "GLACIERFLOW_DATA_DIR": str(tmp_path / "data")}
    return subprocess.Popen(
        [sys.executable, "-m", "glacierflow.cli", "serve", "--port", str(port),
         "--workers", str(workers)],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _listening_inodes(pid: int, port: int) -> set[str]:
    """Inodes of the process's sockets that listen on `port` (from /proc/net/tcp)."""
    listening = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            listening.add(fields[9])
    own = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            own.add(target[8:-1])
    return listening & own


def _listening_workers(server: subprocess.Popen[str], port: int, count: int) -> list[int]:
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, server.communicate()[1]
        assert time.monotonic() < deadline, "the workers did not start"
        workers = [w for w in _children(server.pid) if _listening_inodes(w, port)]
        if len(workers) == count:
            return workers
        time.sleep(0.3)


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
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr
    assert not [w for w in workers if Path(f"/proc/{w}").exists()]


def test_a_port_in_use_is_named(new_catalog: Callable[[str], str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = _serve(tmp_path, new_catalog("serve_port_taken"), port, workers=2)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in stderr and "Traceback" not in stderr


def test_workers_killed_make_serve_exit_with_an_error(
    new_catalog: Callable[[str], str], tmp_path: Path
) -> None:
    """Say, by the out-of-memory killer: the command ends non-zero and says how."""
    port = free_port()
    server = _serve(tmp_path, new_catalog("serve_killed"), port, workers=2)
    try:
        for worker in _listening_workers(server, port, 2):
            os.kill(worker, signal.SIGKILL)
        _, stderr = server.communicate(timeout=60)
    finally:
        server.kill()
    assert server.returncode == 1
    assert "server processes exited with code(s) [-9]" in stderr and "Traceback" not in stderr
