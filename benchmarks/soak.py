"""Soak: normal traffic mixed with issue 9's hostile requests against `glacierflow serve
--workers 2` (a real process, loopback only), for a bounded time and request count.

    .venv/bin/python benchmarks/soak.py [--seconds 60] [--normal-clients 4] [--hostile-clients 2]

Builds the demo region (`glacierflow demo --no-serve`'s cube, granules and catalog) in a
temporary folder, serves it with 2 workers, then runs normal clients (searches, point
series as JSON/CSV, several points, profiles, /healthz) beside hostile ones (deeply nested
CQL2 filters on every filter entry point, GET and POST, text and JSON; 20 MB bodies; bad
bbox, query, intersects, q and dates; non-object bodies; spacing=inf). Prints requests/s
of each kind, the normal requests' latency p50/p99, 5xx and dropped connections of each
kind, the workers lost or replaced, and the largest RSS of the server's process tree.
The test suite runs the same soak (tests/services/test_soak.py). Uses DATABASE_URL when
set, else a private cluster in the temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import free_port, process_tree


@dataclass(frozen=True)
class Call:
    """One request: method, path, query parameters or body, and what it tries."""

    method: str
    path: str
    what: str = ""
    json: object = None
    content: bytes | None = None
    params: dict[str, str] | None = None

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}" + (f" ({self.what})" if self.what else "")


OVERSIZED = "20 MB body"  # refused with 413; the client may see the connection close first


def normal_calls(lon: float, lat: float, line: str) -> list[Call]:
    """What a scientist's client sends: searches, series, profiles, health."""
    above = {"op": ">", "args": [{"property": "percent_valid_pixels"}, 1]}
    return [
        Call("GET", "/stac/search", params={"collections": "granules", "limit": "10"}),
        Call("POST", "/stac/search", json={"collections": ["granules"], "filter": above,
                                           "filter-lang": "cql2-json"}),
        Call("GET", "/stac/collections/granules/items",
             params={"limit": "5", "filter": "percent_valid_pixels > 1"}),
        Call("GET", "/stac/collections"),
        Call("GET", "/timeseries", params={"lon": str(lon), "lat": str(lat)}),
        Call("GET", "/timeseries", "csv",
             params={"lon": str(lon), "lat": str(lat), "format": "csv"}),
        Call("POST", "/timeseries", json={"points": [[lon, lat]] * 3, "variables": ["v"]}),
        Call("GET", "/profile", params={"line": line, "spacing": "240"}),
        Call("GET", "/healthz"),
    ]  # fmt: skip


def hostile_calls(lon: float, lat: float, line: str) -> list[Call]:
    """Issue 9's hostile and careless requests, and the fuzzer's (fuzz-findings.md)."""
    nested_text = "(" * 2000 + "percent_valid_pixels > 1" + ")" * 2000
    inner = '{"op": ">", "args": [{"property": "percent_valid_pixels"}, 1]}'
    nested_json = ('{"op": "not", "args": [' * 2000 + inner + "]}" * 2000).encode()
    huge_points = json.dumps({"points": [[lon, lat]] * 800_000}).encode()  # ~13 MB
    huge_ids = json.dumps({"ids": ["x" * 20] * 800_000}).encode()  # ~20 MB
    point = {"lon": str(lon), "lat": str(lat)}
    nested = "nested CQL2 text"
    calls = [
        Call("GET", path, nested, params={"filter": nested_text})
        for path in ("/stac/search", "/stac/collections", "/stac/collections/granules/items")
    ]
    return [
        *calls,
        Call("POST", "/stac/search", nested,
             json={"filter": nested_text, "filter-lang": "cql2-text"}),
        Call("POST", "/stac/search", "nested CQL2 JSON",
             content=b'{"filter-lang": "cql2-json", "filter": ' + nested_json + b"}"),
        Call("POST", "/timeseries", OVERSIZED, content=huge_points),
        Call("POST", "/stac/search", OVERSIZED, content=huge_ids),
        Call("GET", "/stac/search", "NaN bbox", params={"bbox": "nan,nan,nan,nan"}),
        Call("GET", "/stac/search", "misordered heights",
             params={"bbox": "-50,68,10,-48,70,5"}),
        Call("GET", "/stac/search", "query not JSON", params={"query": "{bad"}),
        Call("GET", "/stac/search", "intersects not JSON", params={"intersects": "\x04L"}),
        Call("POST", "/stac/search", "body not an object", json=[None, None]),
        Call("GET", "/stac/collections", "q syntax", params={"q": "!"}),
        Call("GET", "/stac/search", "bad date", params={"datetime": "2024-13-45"}),
        Call("GET", "/timeseries", "aware start, naive end",
             params={**point, "start": "2024-01-01T00:00:00+05:00",
                     "end": "2024-06-01T00:00:00"}),
        Call("GET", "/profile", "spacing=inf", params={"line": line, "spacing": "inf"}),
    ]  # fmt: skip


@dataclass
class Tally:
    """What one kind of traffic got."""

    requests: int = 0
    server_errors: int = 0  # 5xx
    dropped: int = 0  # no answer: connection reset or closed, timeout
    not_ok: dict[str, int] = field(default_factory=dict)  # "status call" -> count, non-200
    latencies: list[float] = field(default_factory=list)

    def record(self, call: Call, status: int | None, seconds: float) -> None:
        self.requests += 1
        self.latencies.append(seconds)
        if status is None:
            self.dropped += 1
        elif status >= 500:
            self.server_errors += 1
        if status != 200:
            key = f"{status or 'dropped'} {call.name}"
            self.not_ok[key] = self.not_ok.get(key, 0) + 1


@dataclass
class SoakFigures:
    seconds: float
    normal: Tally
    hostile: Tally
    workers_at_start: set[int]
    workers_lost: set[int]  # seen serving, then gone
    workers_added: set[int]  # replacements started during the run
    rss_start_mib: float
    rss_max_mib: float
    rss_end_mib: float

    def lines(self) -> list[str]:
        lat = np.array(self.normal.latencies) * 1000
        p50, p99 = np.percentile(lat, [50, 99]) if lat.size else (float("nan"),) * 2
        return [
            f"soak: {self.seconds:.0f} s against serve --workers {len(self.workers_at_start)}",
            f"normal:  {self.normal.requests / self.seconds:7.1f} requests/s "
            f"({self.normal.requests}), p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"5xx {self.normal.server_errors}, dropped {self.normal.dropped}",
            f"hostile: {self.hostile.requests / self.seconds:7.1f} requests/s "
            f"({self.hostile.requests}), 5xx {self.hostile.server_errors}, "
            f"dropped {self.hostile.dropped}",
            f"workers: {len(self.workers_lost)} lost, {len(self.workers_added)} started",
            f"RSS of the server's processes: {self.rss_start_mib:.0f} MiB at the start, "
            f"{self.rss_max_mib:.0f} MiB at most, {self.rss_end_mib:.0f} MiB at the end",
            f"normal answers other than 200: {self.normal.not_ok or 'none'}",
            f"hostile answers other than 200: {self.hostile.not_ok}",
        ]


def listening(pids: set[int], port: int) -> set[int]:
    """Those of `pids` holding a socket that listens on `port`: the server's workers."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(f"socket:[{fields[9]}]")
    found = set()
    for pid in pids:
        try:
            if any(os.readlink(fd) in inodes for fd in Path(f"/proc/{pid}/fd").iterdir()):
                found.add(pid)
        except OSError:
            continue
    return found


def rss_mib(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class TreeWatch:
    """Samples the server's process tree every `every` s: its RSS, and its workers (the
    processes listening on `port`)."""

    def __init__(self, pid: int, port: int, every: float = 0.5) -> None:
        self._pid, self._port, self._every = pid, port, every
        tree = process_tree(pid)
        self.start_workers = self.workers = listening(tree, port)
        self.seen_workers = set(self.start_workers)
        self.rss = [rss_mib(tree)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            tree = process_tree(self._pid)
            self.workers = listening(tree, self._port)
            self.seen_workers |= self.workers
            self.rss.append(rss_mib(tree))

    def __enter__(self) -> TreeWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


# -- the traffic -------------------------------------------------------------------------------
async def _client(
    base: str, calls: list[Call], tally: Tally, until: float, limit: int, offset: int
) -> None:
    """One client with its own connections, cycling through `calls` until the deadline or
    `limit` requests."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for k in range(limit):
            if time.monotonic() >= until:
                return
            call = calls[(k + offset) % len(calls)]
            started = time.perf_counter()
            try:
                answer = await http.request(
                    call.method, call.path, params=call.params, json=call.json,
                    content=call.content,
                    headers={"content-type": "application/json"} if call.content else None,
                )  # fmt: skip
                status: int | None = answer.status_code
            except httpx.TransportError:
                status = None
                await asyncio.sleep(0.1)  # a dead worker: do not spin
            tally.record(call, status, time.perf_counter() - started)


def soak(
    base: str,
    server_pid: int,
    normal: list[Call],
    hostile: list[Call],
    seconds: float = 60,
    normal_clients: int = 4,
    hostile_clients: int = 2,
    max_requests: int = 20_000,
) -> SoakFigures:
    """Run the mixed traffic against `base` for `seconds` (each client at most
    `max_requests`), watching the process tree of `server_pid`."""
    normal_tally, hostile_tally = Tally(), Tally()

    async def run() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(
            *(_client(base, normal, normal_tally, until, max_requests, k)
              for k in range(normal_clients)),
            *(_client(base, hostile, hostile_tally, until, max_requests, 7 * k)
              for k in range(hostile_clients)),
        )  # fmt: skip

    started = time.monotonic()
    with TreeWatch(server_pid, httpx.URL(base).port) as watch:
        asyncio.run(run())
    elapsed = time.monotonic() - started
    return SoakFigures(
        seconds=elapsed,
        normal=normal_tally,
        hostile=hostile_tally,
        workers_at_start=watch.start_workers,
        workers_lost=watch.seen_workers - watch.workers,
        workers_added=watch.seen_workers - watch.start_workers,
        rss_start_mib=watch.rss[0],
        rss_max_mib=max(watch.rss),
        rss_end_mib=watch.rss[-1],
    )


# -- the benchmark: the demo region, served by a real `glacierflow serve --workers 2` --------
def _demo_region(folder: Path, dsn: str) -> tuple[float, float, str]:
    """The quick demo's cube, granules and catalog in `folder`; a point on the valley's fast
    ice and a line across the glacier."""
    from glacierflow.demo import QUICK, run_demo
    from glacierflow.settings import Settings

    os.environ["DATABASE_URL"] = dsn
    outcome = run_demo(Settings(data_dir=folder), say=lambda _: None, serve=False, size=QUICK)
    lon, lat = outcome.point
    return lon, lat, f"{lon:.5f} {lat - 0.03:.5f},{lon:.5f} {lat + 0.03:.5f}"


@contextmanager
def _serving(folder: Path, dsn: str, workers: int) -> Iterator[tuple[int, str]]:
    """`glacierflow serve --workers N` over `folder` on a free loopback port; (pid, URL)."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": dsn, "GLACIERFLOW_DATA_DIR": str(folder)}
    with (folder / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "glacierflow.cli", "serve", "--port", str(port),
             "--workers", str(workers)], env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        yield process.pid, base
    finally:
        process.terminate()
        process.wait(30)


def main(argv: list[str] | None = None, say: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--normal-clients", type=int, default=4)
    parser.add_argument("--hostile-clients", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    from support import catalog_server, fresh_catalog

    with tempfile.TemporaryDirectory() as tmp, catalog_server(Path(tmp)) as server_dsn:
        folder = Path(tmp)
        dsn = fresh_catalog(server_dsn, "soak")
        lon, lat, line = _demo_region(folder / "data", dsn)
        with _serving(folder / "data", dsn, args.workers) as (pid, base):
            figures = soak(
                base, pid, normal_calls(lon, lat, line), hostile_calls(lon, lat, line),
                args.seconds, args.normal_clients, args.hostile_clients,
            )  # fmt: skip
        for text in figures.lines():
            say(text)


if __name__ == "__main__":
    main()
