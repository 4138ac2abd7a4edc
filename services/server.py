"""Running the composed app: worker processes under a supervisor that replaces any that die.

Each worker listens on its own SO_REUSEPORT socket of the port, so the kernel spreads new
connections evenly over them. uvicorn's own workers share one socket, and the first to
wake accepts a whole burst of keep-alive connections: with 16 clients connecting at once,
throughput then varied from 147 to 238 queries/s between runs (BENCHMARKS.md).

The supervisor (the `glacierflow serve` process, which also owns a private database) does
no serving itself, so a worker's crash (a segfault, the out-of-memory killer) costs the
requests in flight on that worker, never the service, and never leaves the database behind.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.process import BaseProcess

import uvicorn

from glacierflow.services.app import PARTS, create_app
from glacierflow.services.dashboard import missing_builds
from glacierflow.settings import Settings

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
RESTART_WINDOW_S = 60.0
DEATHS_PER_WORKER = 5  # more than this many deaths per worker in the window: a crash loop
_GRACE_S = 10.0  # for requests in flight when the workers stop; then they are killed
_PR_SET_PDEATHSIG = 1
_PART_ROUTES = {
    "stac": "STAC API: /, health: /healthz",
    "timeseries": "time series: /timeseries, profiles: /profile, health: /healthz",
    "tiles": "legend: /legend/speed",
}


class ServerError(RuntimeError):
    """The service cannot keep running: its workers keep dying (the app does not start,
    or something kills them as fast as they come)."""


def run(
    settings: Settings,
    dsn: str,
    host: str,
    port: int,
    say: Callable[[str], None] = print,
    workers: int = 1,
    only: str | None = None,
) -> None:
    """Serve with `workers` processes until SIGINT (Ctrl-C), SIGTERM or SIGHUP, then stop
    them and return. A worker that dies is replaced; ServerError when they die faster than
    DEATHS_PER_WORKER per worker within RESTART_WINDOW_S. `only`: one of `PARTS` alone,
    at the root."""
    _listening_socket(host, port).close()  # a port in use fails here, once, with its name
    if only is not None:
        say(f"serving {only} on http://{host}:{port}/  ({_PART_ROUTES[only]}, docs: /docs)")
    else:
        say(
            f"serving on http://{host}:{port}/  (dashboard: /, STAC Browser: /browser/, STAC "
            "API: /stac, time series: /timeseries, tiles: /tiles, health: /healthz, docs: /docs)"
        )
        for folder in missing_builds():
            say(
                f"note: the front end in {folder} is not built, its page says so; build it with "
                f"./run demo, or npm --prefix {folder} ci && npm --prefix {folder} run build"
            )
    factory = PARTS[only] if only is not None else create_app
    _Supervisor(settings, dsn, host, port, workers, say, factory).run()


class _Supervisor:
    def __init__(
        self,
        settings: Settings,
        dsn: str,
        host: str,
        port: int,
        workers: int,
        say: Callable[[str], None],
        factory: Callable[[Settings, str], object],
    ) -> None:
        self._context = multiprocessing.get_context("spawn")  # the app is built in the worker
        self._args = (settings, dsn, host, port, factory)
        self._count = workers
        self._say = say
        self._stop_requested = False
        self._deaths: deque[float] = deque()

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop_requested = True

    def _spawn(self) -> BaseProcess:
        process = self._context.Process(target=_worker, args=self._args, name="glacierflow-worker")
        process.start()
        return process

    def run(self) -> None:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        processes: list[BaseProcess] = []
        try:
            processes.extend(self._spawn() for _ in range(self._count))
            while not self._stop_requested:
                ended = multiprocessing.connection.wait([p.sentinel for p in processes], 0.25)
                for process in [p for p in processes if p.sentinel in ended]:
                    process.join()
                    processes.remove(process)
                    if self._stop_requested:
                        break
                    self._count_death(process)
                    processes.append(self._spawn())
        finally:
            _stop(processes)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _count_death(self, process: BaseProcess) -> None:
        """Note a worker's death; ServerError when they come too fast to keep replacing."""
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths[0] < now - RESTART_WINDOW_S:
            self._deaths.popleft()
        code = process.exitcode or 0
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited ({code})"
        if len(self._deaths) > DEATHS_PER_WORKER * self._count:
            raise ServerError(
                f"workers keep dying ({len(self._deaths)} in {RESTART_WINDOW_S:.0f} s, the "
                f"last {how}); see their errors above"
            )
        self._say(f"worker {process.pid} {how}; starting a new one")


def _stop(processes: list[BaseProcess]) -> None:
    """SIGTERM to every worker (uvicorn finishes the requests in flight), SIGKILL to those
    still running after the grace period."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + _GRACE_S + 5
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


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


def _worker(
    settings: Settings, dsn: str, host: str, port: int, factory: Callable[[Settings, str], object]
) -> None:
    """One server process on its own socket. It takes signals from the supervisor only
    (its own process group: Ctrl-C and a hang-up reach the supervisor, which stops the
    workers in order), and it stops when the supervisor dies, even by SIGKILL."""
    os.setpgid(0, 0)
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        parent = multiprocessing.parent_process()
        if parent is not None and os.getppid() != parent.pid:  # it died before the prctl
            return
    sock = _listening_socket(host, port)
    sock.listen(2048)
    config = uvicorn.Config(
        factory(settings, dsn), log_level="warning", timeout_graceful_shutdown=_GRACE_S
    )
    uvicorn.Server(config).run(sockets=[sock])
