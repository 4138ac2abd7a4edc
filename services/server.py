"""Running the composed app with uvicorn: one process, or several sharing the port.

Several processes each listen on their own SO_REUSEPORT socket, so the kernel spreads new
connections evenly over them. uvicorn's own workers share one socket, and the first to
wake accepts a whole burst of keep-alive connections: with 16 clients connecting at once,
throughput then varied from 147 to 238 queries/s between runs (BENCHMARKS.md).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
from collections.abc import Callable

import uvicorn

from glacierflow.services.app import create_app
from glacierflow.settings import Settings

_FACTORY = "glacierflow.services.app:create_app_from_environment"


def run(
    settings: Settings,
    dsn: str,
    host: str,
    port: int,
    say: Callable[[str], None] = print,
    workers: int = 1,
) -> None:
    """Serve until interrupted; with workers > 1, that many processes, each building the
    app from the environment (the database passed on as DATABASE_URL)."""
    say(
        f"serving on http://{host}:{port}/  (STAC API: /stac, time series: /timeseries, "
        "health: /healthz, docs: /docs)"
    )
    if workers == 1:
        uvicorn.run(create_app(settings, dsn), host=host, port=port, log_level="warning")
        return
    os.environ["DATABASE_URL"] = dsn
    _listening_socket(host, port).close()  # a port in use fails here, once, with its name
    spawn = multiprocessing.get_context("spawn")
    processes = [spawn.Process(target=_worker, args=(host, port)) for _ in range(workers)]
    for process in processes:
        process.start()
    signal.signal(signal.SIGTERM, lambda *_: [p.terminate() for p in processes])
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:  # Ctrl-C reaches every worker too; each shuts down cleanly
        for process in processes:
            process.join()
    failed = sorted({p.exitcode for p in processes} - {0, -signal.SIGTERM, -signal.SIGINT})
    if failed:
        raise ServerError(f"server processes exited with code(s) {failed}; see their errors above")


class ServerError(RuntimeError):
    """Worker processes that stopped on an error (the app did not start, a crash)."""


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise OSError(err.errno, f"cannot listen on {host}:{port}: {err.strerror}") from err
    return sock


def _worker(host: str, port: int) -> None:
    """One server process on its own socket (spawned: the app is built here)."""
    sock = _listening_socket(host, port)
    sock.listen(2048)
    config = uvicorn.Config(_FACTORY, factory=True, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
