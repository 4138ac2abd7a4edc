"""STAC search latency with 100,000 granule items: glacierflow's /stac against a bare
stac-fastapi-pgstac app on the same database, in the same run, requests interleaved.

    .venv/bin/python benchmarks/stac_search.py [--items 100000] [--repeat 100]

Uses DATABASE_URL when set, else a private cluster in a temporary folder. Both apps run
as uvicorn processes on loopback; one client sends the requests in turn.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

from glacierflow.catalog.loader import load_items
from glacierflow.services.stac import postgres_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import catalog_server, fresh_catalog, serve

GREENLAND = (-55.0, 60.0, -20.0, 80.0)
QUERIES = {
    "bbox": {"bbox": "-50,68,-48,70"},
    "bbox + datetime": {
        "bbox": "-50,68,-48,70",
        "datetime": "2019-01-01T00:00:00Z/2020-12-31T23:59:59Z",
    },
    "CQL2 date_dt, percent_valid_pixels": {
        "filter": "date_dt <= 32 AND percent_valid_pixels >= 50",
        "filter-lang": "cql2-text",
    },
}


def synthetic_items(n: int, seed: int = 0):
    """Granule-like items: 1 x 1 degree footprints over Greenland, 2014-2025 pairs."""
    rng = np.random.default_rng(seed)
    start = datetime(2014, 1, 1, tzinfo=UTC)
    for k in range(n):
        lon = rng.uniform(GREENLAND[0], GREENLAND[2] - 1)
        lat = rng.uniform(GREENLAND[1], GREENLAND[3] - 1)
        t1 = start + timedelta(days=float(rng.uniform(0, 4000)))
        dt = float(rng.choice([5, 6, 10, 12, 16, 32, 48, 96, 365]))
        t2 = t1 + timedelta(days=dt)
        ring = [[lon, lat], [lon + 1, lat], [lon + 1, lat + 1], [lon, lat + 1], [lon, lat]]
        yield {
            "type": "Feature",
            "stac_version": "1.1.0",
            "id": f"bench_{k:07d}",
            "collection": "granules",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "bbox": [lon, lat, lon + 1, lat + 1],
            "properties": {
                "datetime": (t1 + (t2 - t1) / 2).isoformat(),
                "start_datetime": t1.isoformat(),
                "end_datetime": t2.isoformat(),
                "date_dt": dt,
                "percent_valid_pixels": float(rng.uniform(0, 100)),
                "platform": str(rng.choice(["LC08", "LC09", "S2A", "S2B"])),
                "proj:code": "EPSG:3413",
            },
            "links": [],
            "assets": {
                "data": {
                    "href": f"s3://bench/{k:07d}.nc",
                    "type": "application/x-netcdf",
                    "roles": ["data"],
                }
            },
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, catalog_server(Path(tmp)) as dsn:
        run(dsn, args.items, args.repeat)


def run(dsn: str, n_items: int, repeat: int) -> None:
    dsn = fresh_catalog(dsn, "glacierflow_bench")
    t0 = time.perf_counter()
    load_items(dsn, synthetic_items(n_items))
    load_seconds = time.perf_counter() - t0
    print(
        f"loaded {n_items} items in {load_seconds:.1f} s "
        f"({n_items / load_seconds:.0f} items/s), one call"
    )

    env = {"GLACIERFLOW_DATABASE_URL_FOR_BENCH": dsn}
    ours_code = (
        "import os, uvicorn\n"
        "from glacierflow.services.app import create_app\n"
        "from glacierflow.settings import Settings\n"
        "app = create_app(Settings(), os.environ['GLACIERFLOW_DATABASE_URL_FOR_BENCH'])\n"
        "uvicorn.run(app, host='127.0.0.1', port={port}, log_level='error')\n"
    )
    bare_code = (
        "import uvicorn\n"
        "from stac_fastapi.pgstac.app import create_app\n"
        "uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='error')\n"
    )
    pg = postgres_settings(dsn)
    bare_env = {
        "PGUSER": pg.pguser,
        "PGPASSWORD": pg.pgpassword,
        "PGHOST": pg.pghost,
        "PGPORT": str(pg.pgport),
        "PGDATABASE": pg.pgdatabase,
    }
    servers = []
    try:
        ours, ours_base = serve(ours_code, env)
        servers.append(ours)
        bare, bare_base = serve(bare_code, bare_env)
        servers.append(bare)
        print("\n| query | limit | glacierflow p50 ms | p95 ms | bare p50 ms | p95 ms | overhead |")
        print("|---|---|---|---|---|---|---|")
        with httpx.Client(timeout=30) as client:
            for name, params in QUERIES.items():
                for limit in (10, 100):
                    query = {**params, "limit": str(limit), "collections": "granules"}
                    times: dict[str, list[float]] = {"ours": [], "bare": []}
                    for i in range(repeat + 5):
                        for label, url in (
                            ("ours", f"{ours_base}/stac/search"),
                            ("bare", f"{bare_base}/search"),
                        ):
                            t0 = time.perf_counter()
                            answer = client.get(url, params=query)
                            elapsed = 1000 * (time.perf_counter() - t0)
                            answer.raise_for_status()
                            if i >= 5:  # warm-up
                                times[label].append(elapsed)
                    ours_q = statistics.quantiles(times["ours"], n=20)
                    bare_q = statistics.quantiles(times["bare"], n=20)
                    ours_p50, bare_p50 = (
                        statistics.median(times["ours"]),
                        statistics.median(times["bare"]),
                    )
                    print(
                        f"| {name} | {limit} | {ours_p50:.1f} | {ours_q[18]:.1f} | "
                        f"{bare_p50:.1f} | "
                        f"{bare_q[18]:.1f} | {100 * (ours_p50 / bare_p50 - 1):+.0f} % |",
                        flush=True,
                    )
    finally:
        for server in servers:
            server.terminate()


if __name__ == "__main__":
    main()
