"""Point time series from a 20,000-layer cube: glacierflow's layout (one-pixel chunks in
shards, zstd) against ITS_LIVE's (20000 x 10 x 10 chunks, zlib) in the same run; and ingest
throughput and visibility.

    .venv/bin/python benchmarks/cube_timeseries.py [--layers 20000] [--granules 1000]

1. Writes the same synthetic 20,000-layer cube (data in a 50 x 50-pixel window of the
   tile, 30 % of values empty) in both layouts, catalogs each in its own database and
   serves each with `glacierflow serve --workers 4`'s app (uvicorn, loopback).
2. Bytes read per point (this process's read bytes, /proc/self/io rchar, steady state:
   the 1-D metadata are kept per cube version), for `v` alone and for the itslive
   client's default variables.
3. GET /timeseries at random pixels of the window: p50/p95 with 1 client (httpx, answers
   decoded), and queries/s with p50/p95 with 16 concurrent connections (answers read
   compressed), for both layouts.
4. Ingest of N granules into one cube (granules/s), and the time from the start of
   ingesting one more granule to its appearance in /timeseries.
Uses DATABASE_URL when set, else a private cluster in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
from pyproj import Transformer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import catalog_server, fresh_catalog, landsat8_pair, serve

from glacierflow.catalog.loader import load_cubes
from glacierflow.processing.cubes.grid import CubeTile
from glacierflow.processing.cubes.layers import Layer
from glacierflow.processing.cubes.layout import (
    CUBE_LAYOUT,
    GRIDDED,
    ITS_LIVE_LAYOUT,
    ChunkLayout,
    layer_figure_names,
)
from glacierflow.processing.cubes.points import DEFAULT_VARIABLES, CubeReader, SeriesFilter
from glacierflow.processing.cubes.store import LivingCube, layers_dataset

TILE = CubeTile(3413, -200_000, -2_300_000)
WINDOW = (400, 450, 400, 450)  # rows, cols of the tile holding data


def synthetic_layers(n: int, seed: int = 0) -> list[Layer]:
    """n layers over the window: a seasonal speed field with noise, 30 % empty."""
    rng = np.random.default_rng(seed)
    r0, r1, c0, c1 = WINDOW
    shape = (r1 - r0, c1 - c0)
    start = datetime(2014, 1, 1, 12)
    layers = []
    for k in range(n):
        centre = start + timedelta(hours=7 * k)
        season = 1 + 0.3 * np.sin(2 * np.pi * centre.timetuple().tm_yday / 365)
        vx = (800 * season + rng.normal(0, 30, shape)).astype(np.int16)
        vy = (-200 * season + rng.normal(0, 30, shape)).astype(np.int16)
        empty = rng.random(shape) < 0.3
        gridded = {}
        for name, (dtype, fill, _) in GRIDDED.items():
            gridded[name] = np.full(shape, fill, dtype=dtype)
        gridded["vx"] = np.where(empty, -32767, vx).astype(np.int16)
        gridded["vy"] = np.where(empty, -32767, vy).astype(np.int16)
        gridded["v"] = np.where(empty, -32767, np.hypot(vx, vy)).astype(np.int16)
        gridded["v_error"] = np.where(empty, -32767, rng.integers(5, 60, shape)).astype(np.int16)
        gridded["chip_size_width"] = np.where(empty, 0, 240).astype(np.uint16)
        gridded["chip_size_height"] = gridded["chip_size_width"]
        dt = float(rng.choice([5, 6, 10, 12, 16, 32, 48, 96, 365]))
        pair = landsat8_pair(centre, dt)
        figures = {name: float(rng.uniform(1, 20)) for name in layer_figure_names()}
        layers.append(
            Layer(
                TILE,
                f"bench/granule_{k:06d}.nc",
                pair["date_center"],
                r0,
                c0,
                gridded,
                figures,
                pair,
            )
        )
    return layers


def build(store: Path, layers: list[Layer], layout: ChunkLayout) -> float:
    cube = LivingCube(store, TILE.name)
    t0 = time.perf_counter()
    with cube.locked():
        cube.publish_history(layers_dataset(TILE, layers), 0, layout)
    return time.perf_counter() - t0


def rchar() -> int:
    with open("/proc/self/io") as handle:
        for line in handle:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return 0


def bytes_per_point(store: Path, variables: list[str], points: list[tuple[int, int]]) -> float:
    reader = CubeReader(LivingCube(store, TILE.name))
    reader.series(*points[0], variables, SeriesFilter())  # the 1-D metadata, once
    before = rchar()
    for row, col in points:
        reader.series(row, col, variables, SeriesFilter())
    return (rchar() - before) / len(points)


def lonlat(row: int, col: int) -> tuple[float, float]:
    x, y = TILE.x[col] + 10.0, TILE.y[row] - 10.0
    return Transformer.from_crs(3413, 4326, always_xy=True).transform(x, y)


def one_client(base: str, points, repeat: int) -> tuple[list[float], float]:
    """One httpx client, as a script would be: each answer decompressed (brotli); the
    time stops before the JSON is parsed."""
    rng = np.random.default_rng(1)
    times: list[float] = []
    started = time.perf_counter()
    with httpx.Client(base_url=base, timeout=60) as http:
        for _ in range(repeat):
            lon, lat = points[rng.integers(len(points))]
            t0 = time.perf_counter()
            answer = http.get("/timeseries", params={"lon": lon, "lat": lat})
            times.append(time.perf_counter() - t0)  # the answer received and decompressed
            assert answer.status_code == 200 and answer.json()["count"] > 0, answer.text
    return times, len(times) / (time.perf_counter() - started)


def many_clients(base: str, points, repeat: int, clients: int) -> tuple[list[float], float]:
    """`clients` keep-alive connections at once (asyncio, one process): each sends GET
    /timeseries accepting brotli and reads the compressed answer whole without decoding
    it, so the two cores go to the server, as they would with clients on other machines."""
    host, port = base.removeprefix("http://").split(":")
    rng = np.random.default_rng(clients)
    times: list[float] = []

    async def client(count: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        for _ in range(count):
            lon, lat = points[rng.integers(len(points))]
            request = (
                f"GET /timeseries?lon={lon}&lat={lat} HTTP/1.1\r\nHost: {host}\r\n"
                "Accept-Encoding: br\r\n\r\n"
            )
            t0 = time.perf_counter()
            writer.write(request.encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
            assert head.startswith("http/1.1 200") and "content-encoding: br" in head, head
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            await reader.readexactly(length)
            times.append(time.perf_counter() - t0)
        writer.close()

    async def all_clients() -> None:
        await asyncio.gather(*[client(repeat // clients) for _ in range(clients)])

    started = time.perf_counter()
    asyncio.run(all_clients())
    return times, len(times) / (time.perf_counter() - started)


def pct(times: list[float], q: float) -> float:
    return float(np.percentile(times, q) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=20_000)
    parser.add_argument("--granules", type=int, default=1000, help="0: no ingest part")
    parser.add_argument("--repeat", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, catalog_server(Path(tmp)) as dsn:
        run(Path(tmp), dsn, args)


SERVE = (  # `glacierflow serve --workers 4`: two processes per core (BENCHMARKS.md)
    "from glacierflow.services.server import run\n"
    "from glacierflow.settings import Settings\n"
    "run(Settings(), {dsn!r}, '127.0.0.1', {{port}}, say=lambda _: None, workers=4)\n"
)


def run(tmp: Path, dsn: str, args) -> None:
    print(f"{args.layers} layers, data window {WINDOW}")
    layers = synthetic_layers(args.layers)
    rng = np.random.default_rng(1)
    r0, r1, c0, c1 = WINDOW
    pixels = [(int(rng.integers(r0, r1)), int(rng.integers(c0, c1))) for _ in range(50)]
    points = [lonlat(r, c) for r, c in pixels]
    layouts = {"glacierflow": CUBE_LAYOUT, "ITS_LIVE": ITS_LIVE_LAYOUT}
    servers = {}
    try:
        for name, layout in layouts.items():
            store = tmp / name / "cubes"  # the API reads cubes of its data directory only
            seconds = build(store, layers, layout)
            size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
            v_bytes = bytes_per_point(store, ["v"], pixels)
            all_bytes = bytes_per_point(store, list(DEFAULT_VARIABLES), pixels)
            print(
                f"{name:12s} write {seconds:6.1f} s, {size / 1e6:7.1f} MB on disk; read per "
                f"point: v {v_bytes / 1e6:.2f} MB, itslive defaults {all_bytes / 1e6:.2f} MB"
            )
            own = fresh_catalog(dsn, f"bench_cube_{name.lower()}")
            load_cubes(own, [store / TILE.name], "cubes")
            servers[name] = serve(SERVE.format(dsn=own), {"GLACIERFLOW_DATA_DIR": str(tmp / name)})
        for clients in (1, 16):
            for name, (_, base) in servers.items():
                if clients == 1:
                    one_client(base, points, 32)  # warm
                    times, rate = one_client(base, points, args.repeat)
                else:
                    many_clients(base, points, 64, clients)  # warm
                    times, rate = many_clients(base, points, args.repeat * 4, clients)
                print(
                    f"{name:12s} {clients:2d} client(s): p50 {pct(times, 50):6.1f} ms, "
                    f"p95 {pct(times, 95):6.1f} ms, {rate:6.1f} queries/s"
                )
        if args.granules:
            ingest_benchmark(tmp, dsn, args.granules)
    finally:
        for process, _ in servers.values():
            process.terminate()


def ingest_benchmark(tmp: Path, dsn: str, n: int) -> None:
    """N granules into one cube, then one more while the API watches for it."""
    from glacierflow.processing import synthetic
    from glacierflow.processing.cubes.ingest import ingest
    from glacierflow.processing.cubes.store import cube_names
    from glacierflow.processing.pipeline import TrackRequest, track_pair

    pair = synthetic.make_pair((300, 300), synthetic.uniform(0.3, -0.7), seed=3)
    ref, sec = synthetic.write_geotiffs(pair, tmp / "scenes", "bench")
    template = track_pair(
        TrackRequest(
            ref=str(ref),
            sec=str(sec),
            output=tmp / "template",
            chip_min_m=120,
            chip_max_m=240,
            max_speed_m_per_yr=500,
        )
    ).path
    files = []
    start = datetime(2015, 1, 1)
    for k in range(n + 1):
        t = start + timedelta(days=3 * k)
        files.append(
            synthetic.granule_copy(
                template,
                tmp / "many",
                t,
                t + timedelta(days=16),
                lambda x, y, c, k=k: (np.full_like(x, 100.0 + k % 50), np.full_like(x, 20.0)),
            )
        )
    store = tmp / "ingest" / "cubes"
    t0 = time.perf_counter()
    report = ingest(files[:n], store, progress=lambda _: None)
    seconds = time.perf_counter() - t0
    print(
        f"ingest: {report.added} granules into 1 cube in {seconds:.1f} s "
        f"({report.added / seconds:.1f} granules/s, consolidations included)"
    )
    own = fresh_catalog(dsn, "bench_cube_ingest")
    load_cubes(own, [store / name for name in cube_names(store)], "cubes")
    process, base = serve(SERVE.format(dsn=own), {"GLACIERFLOW_DATA_DIR": str(tmp / "ingest")})
    try:
        from glacierflow.processing.cubes.layers import read_granule

        granule = read_granule(template)
        rows, cols = np.nonzero(granule.valid)
        lon, lat = Transformer.from_crs(3413, 4326, always_xy=True).transform(
            granule.x[cols[0]], granule.y[rows[0]]
        )
        with httpx.Client(base_url=base, timeout=60) as http:
            count = http.get("/timeseries", params={"lon": lon, "lat": lat}).json()["count"]
            t0 = time.perf_counter()
            ingest(files[n:], store, progress=lambda _: None)
            ingested = time.perf_counter() - t0
            while http.get("/timeseries", params={"lon": lon, "lat": lat}).json()["count"] == count:
                time.sleep(0.02)
            visible = time.perf_counter() - t0
        print(
            f"one more granule: ingested in {ingested:.2f} s, in /timeseries after {visible:.2f} s"
        )
    finally:
        process.terminate()


if __name__ == "__main__":
    main()
