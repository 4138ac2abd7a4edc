"""The catalog at scale: load rate, database size and search latency with 100,000 then
1,000,000 granule items, through pgstac's `search()` and through the STAC API.

    nice .venv/bin/python benchmarks/catalog_scale.py --items 100000 1000000 [--repeat 50]

Items have the shape `granule_item` gives (ITS_LIVE-like ids, pair dates 2013-2025,
date_dt 5-546 days, percent_valid_pixels, proj:*, quality figures, assets), with footprints
of Landsat-, Sentinel-2- and Sentinel-1-sized granules, rotated, in EPSG:3413 (Greenland),
UTM 6N-8N (Alaska) and EPSG:3031 (Antarctica), turned into lon/lat by pyproj. They are
loaded with pypgstac's loader (upsert, the production path) in batches into a fresh
database `glacierflow_scale_bench` on DATABASE_URL's server (else a private cluster),
dropped at the end unless --keep. At each step: the load rate, the database's size, then
each query ~`repeat` times with random boxes and windows in the populated regions, p50 and
p95, against `SELECT 1` (the round trip) in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods
from pyproj import Transformer

from glacierflow.services.stac import postgres_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import catalog_server, fresh_catalog, serve

DATABASE = "glacierflow_scale_bench"
BATCH = 50_000
EPOCH = np.datetime64("2013-04-01", "s")
SPAN_DAYS = (np.datetime64("2025-12-31") - np.datetime64("2013-04-01")).astype(int)
VERTICES_PER_SIDE = 8  # a granule's valid-data outline, simplified, has tens of vertices

# region: (weight, [(epsg, sampler of centres in metres)])
Sampler = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _box(x0: float, x1: float, y0: float, y1: float) -> Sampler:
    return lambda rng, n: (rng.uniform(x0, x1, n), rng.uniform(y0, y1, n))


def _antarctic_coast(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Around the continent's margin (where the ice flows fast), 0.7-2.4 Mm from the pole."""
    r, theta = rng.uniform(700e3, 2400e3, n), rng.uniform(0, 2 * np.pi, n)
    return r * np.cos(theta), r * np.sin(theta)


REGIONS = {
    "greenland": (0.45, [(3413, _box(-600e3, 800e3, -3300e3, -700e3))]),
    "alaska": (
        0.2,
        [(epsg, _box(350e3, 650e3, 6550e3, 6800e3)) for epsg in (32606, 32607, 32608)],
    ),
    "antarctica": (0.35, [(3031, _antarctic_coast)]),
}
# lon/lat boxes the searches draw from: inside the populated areas
SEARCH_AREAS = {
    "greenland": (-55.0, 62.0, -25.0, 80.0),
    "alaska": (-152.0, 59.5, -135.0, 61.5),
    "antarctica": (-180.0, -80.0, 180.0, -65.0),
}
# platform: (weight, granule half-size m, date_dt step days)
PLATFORMS = {
    "LC08": (0.35, 95e3, 16),
    "LC09": (0.1, 95e3, 16),
    "S2A": (0.15, 55e3, 5),
    "S2B": (0.15, 55e3, 5),
    "S1A": (0.15, 125e3, 6),
    "S1B": (0.1, 125e3, 6),
}


def footprints(
    rng: np.random.Generator, epsg: int, sampler: Sampler, half: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rotated square granules of half-size `half` m around sampled centres: their rings
    in lon/lat (n, 4 * VERTICES_PER_SIDE + 1, 2), whether each stays off the antimeridian,
    and their projected bounds and centres."""
    n = len(half)
    cx, cy = sampler(rng, n)
    t = np.linspace(-1, 1, VERTICES_PER_SIDE, endpoint=False)
    one = np.ones_like(t)
    # the unit square's boundary, counter-clockwise, closed
    u = np.concatenate([t, one, -t, -one, [-1.0]])
    v = np.concatenate([-one, t, one, -t, [-1.0]])
    angle = rng.uniform(-np.pi / 12, np.pi / 12, n)[:, None]
    dx, dy = u[None] * half[:, None], v[None] * half[:, None]
    x = cx[:, None] + dx * np.cos(angle) - dy * np.sin(angle)
    y = cy[:, None] + dx * np.sin(angle) + dy * np.cos(angle)
    lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(x, y)
    ok = (lon.max(axis=1) - lon.min(axis=1)) < 90  # a ring across 180° would need splitting
    bounds = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], axis=1)
    return np.stack([lon, lat], axis=-1), ok, bounds, np.stack([cx, cy], axis=1)


def _day(value: np.datetime64) -> str:
    return str(value)[:10].replace("-", "")


def _scene_id(platform: str, when: np.datetime64, path_row: str, tile: str) -> str:
    """An image id in its mission's naming scheme."""
    day = _day(when)
    if platform.startswith("L"):
        return f"{platform}_L1TP_{path_row}_{day}_{day}_02_T1"
    if platform.startswith("S2"):
        return f"{platform}_MSIL1C_{day}T143751_N0509_R096_{tile}_{day}T162209"
    return f"{platform}_IW_SLC__1SSH_{day}T204710_{day}T204737_015387_0193F6_AE78"


def granule_items(n: int, seed: int = 0, start: int = 0) -> Iterator[dict]:
    """`n` granule items shaped as `granule_item` makes them, numbered from `start`."""
    rng = np.random.default_rng([seed, start])
    names = list(PLATFORMS)
    platform = rng.choice(len(names), n, p=[p[0] for p in PLATFORMS.values()])
    half = np.array([PLATFORMS[names[k]][1] for k in platform])
    step = np.array([PLATFORMS[names[k]][2] for k in platform])
    region_names = list(REGIONS)
    region = rng.choice(len(REGIONS), n, p=[r[0] for r in REGIONS.values()])
    rings = np.zeros((n, 4 * VERTICES_PER_SIDE + 1, 2))
    bounds = np.zeros((n, 4))
    epsgs = np.zeros(n, int)
    for r, name in enumerate(region_names):
        choices = REGIONS[name][1]
        sub = np.flatnonzero(region == r)
        which = rng.integers(0, len(choices), len(sub))
        for c, (epsg, sampler) in enumerate(choices):
            idx = sub[which == c]
            todo = idx
            while len(todo):  # redraw the few that would cross the antimeridian
                lonlat, ok, box, _ = footprints(rng, epsg, sampler, half[todo])
                rings[todo[ok]], bounds[todo[ok]] = lonlat[ok], box[ok]
                todo = todo[~ok]
            epsgs[idx] = epsg
    # dates: pairs of images `dt` apart (a multiple of the repeat cycle), 5-546 days
    dt = np.clip(step * rng.integers(1, 546 // step + 1, n), 5, 546).astype(float)
    mid = EPOCH + (rng.uniform(0, SPAN_DAYS, n) * 86400).astype("timedelta64[s]")
    first = mid - (dt * 43200).astype("timedelta64[s]")
    second = first + (dt * 86400).astype("timedelta64[s]")
    percent = np.round(100 * rng.beta(2.0, 1.2, n))
    flag = rng.choice(3, n, p=[0.1, 0.8, 0.1])
    shifts = np.round(rng.normal(0, 2, (n, 4)), 2)
    errors = np.round(rng.gamma(2, 3, (n, 2)), 2)
    quality = np.round(rng.uniform(0, 100, (n, 4)), 2)
    path, row = 1 + (start + np.arange(n)) % 233, 1 + ((start + np.arange(n)) // 233) % 248
    seen = set()  # a pair drawn twice in a batch: pgstac's upsert refuses both in one COPY
    for k in range(n):
        plat = names[platform[k]]
        ref_img, sec_img = first[k], second[k]
        path_row, tile = f"{path[k]:03d}{row[k]:03d}", f"T{path[k] % 60 + 1:02d}W{row[k]:03d}"
        ids = (_scene_id(plat, ref_img, path_row, tile), _scene_id(plat, sec_img, path_row, tile))
        pct = int(percent[k])
        if (key := (ids, pct)) in seen:
            continue
        seen.add(key)
        lon, lat = rings[k, :, 0], rings[k, :, 1]
        x0, y0, x1, y1 = (float(b) for b in bounds[k])
        width, height = round((x1 - x0) / 120), round((y1 - y0) / 120)
        mission = plat[0]
        yield {
            "type": "Feature",
            "stac_version": "1.1.0",
            "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
            "id": f"{ids[0]}_X_{ids[1]}_G0120V02_P{pct:03d}",
            "collection": "granules",
            "geometry": {"type": "Polygon", "coordinates": [rings[k].round(6).tolist()]},
            "bbox": [
                round(float(lon.min()), 6),
                round(float(lat.min()), 6),
                round(float(lon.max()), 6),
                round(float(lat.max()), 6),
            ],
            "properties": {
                "datetime": f"{mid[k]}Z",
                "start_datetime": f"{ref_img}Z",
                "end_datetime": f"{sec_img}Z",
                "date_dt": float(dt[k]),
                "percent_valid_pixels": float(pct),
                "platform": plat,
                "constellation": mission,
                "instruments": ["OLI"] if mission == "L" else ["MSI" if plat[1] == "2" else "SAR"],
                "gsd": 120.0,
                "proj:code": f"EPSG:{epsgs[k]}",
                "proj:shape": [height, width],
                "proj:transform": [120.0, 0.0, x0, 0.0, -120.0, y1],
                "proj:bbox": [x0, y0, x1, y1],
                "stable_shift_flag": int(flag[k]),
                "stable_shift_vx": float(shifts[k, 0]),
                "stable_shift_vy": float(shifts[k, 1]),
                "error_vx": float(errors[k, 0]),
                "error_vy": float(errors[k, 1]),
                "mission_img1": mission,
                "mission_img2": mission,
                "satellite_img1": plat[1:],
                "satellite_img2": plat[1:],
                "sensor_img1": "C",
                "sensor_img2": "C",
                "id_img1": ids[0],
                "id_img2": ids[1],
                "glacierflow:valid_percentage": float(pct),
                "glacierflow:measured_percentage": float(quality[k, 0]),
                "glacierflow:interpolated_percentage": float(quality[k, 1]),
                "glacierflow:outlier_percentage": float(quality[k, 2]),
                "glacierflow:coarse_valid_percentage": float(quality[k, 3]),
            },
            "links": [],
            "assets": {
                "data": {
                    "href": f"granules/{ids[0]}_X_{ids[1]}_G0120V02_P{pct:03d}.nc",
                    "title": "Velocity granule (NetCDF4)",
                    "type": "application/x-netcdf",
                    "roles": ["data"],
                },
                "thumbnail": {
                    "href": f"granules/{ids[0]}_X_{ids[1]}_G0120V02_P{pct:03d}.png",
                    "title": "Speed",
                    "type": "image/png",
                    "roles": ["thumbnail", "overview"],
                },
            },
        }


# -- queries ---------------------------------------------------------------------------------
def _random_box(rng: np.random.Generator, size: float = 1.0) -> list[float]:
    """A `size`° box (lat) inside one of the populated areas, wider in lon near the poles."""
    name = rng.choice(list(SEARCH_AREAS), p=[0.45, 0.2, 0.35])
    west, south, east, north = SEARCH_AREAS[name]
    lat = rng.uniform(south, north - size)
    dlon = size / max(np.cos(np.radians(lat + size / 2)), 0.2)
    lon = rng.uniform(west, east - dlon)
    return [round(lon, 3), round(lat, 3), round(lon + dlon, 3), round(lat + size, 3)]


def _random_window(rng: np.random.Generator, days: int = 365) -> str:
    start = EPOCH + np.timedelta64(int(rng.uniform(0, SPAN_DAYS - days)), "D")
    return f"{start}Z/{start + np.timedelta64(days, 'D')}Z"


def _filter(rng: np.random.Generator) -> dict:
    """CQL2 JSON: at least `p` % valid pixels and at most `dt` days between the images."""
    p, dt = int(rng.choice([50, 70, 90])), int(rng.choice([16, 32, 64, 96]))
    return {
        "op": "and",
        "args": [
            {"op": ">=", "args": [{"property": "percent_valid_pixels"}, p]},
            {"op": "<=", "args": [{"property": "date_dt"}, dt]},
        ],
    }


QUERIES: dict[str, Callable[[np.random.Generator], dict]] = {
    "bbox + datetime": lambda rng: {"bbox": _random_box(rng), "datetime": _random_window(rng)},
    "bbox + datetime + CQL2": lambda rng: {
        "bbox": _random_box(rng),
        "datetime": _random_window(rng),
        "filter": _filter(rng),
    },
    "CQL2 only": lambda rng: {"filter": _filter(rng)},
    "bbox + CQL2 date_dt": lambda rng: {
        "bbox": _random_box(rng, 2.0),
        "filter": {"op": "<=", "args": [{"property": "date_dt"}, int(rng.choice([16, 32]))]},
    },
}


def _quantiles(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), statistics.quantiles(times, n=20)[18]


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def sql_search(conn: psycopg.Connection, body: dict) -> dict:
    return conn.execute("SELECT pgstac.search(%s::jsonb)", (json.dumps(body),)).fetchone()[0]


NOHYDRATE = {"conf": {"nohydrate": True}}


def _next_token(answer: dict) -> str | None:
    for link in answer.get("links", []):
        if link.get("rel") == "next":
            return (link.get("body") or {}).get("token") or link["href"].split("token=")[1]
    return None


def _timed(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Milliseconds a call took, and its answer."""
    t0 = time.perf_counter()
    out = call(*args, **kwargs)
    return 1000 * (time.perf_counter() - t0), out


def measure(
    dsn: str, bases: dict[str, str], repeat: int, pages: int, rows: list[list[str]], n: int
) -> None:
    """Each query `repeat` times (after 3 warm-ups), in turn through pgstac's `search()`
    (hydrating in the database, as stac-fastapi-pgstac does by default, and not), through
    glacierflow's STAC API and a bare stac-fastapi-pgstac app; then deep paging."""
    rng = np.random.default_rng(7)
    with (
        psycopg.connect(dsn, autocommit=True, options="-c search_path=pgstac,public") as conn,
        httpx.Client(timeout=120) as client,
    ):
        times = [_timed(conn.execute, "SELECT 1")[0] for _ in range(repeat)]
        p50, p95 = _quantiles(times)
        rows.append([f"{n:,}", "`SELECT 1` round trip", "", f"{p50:.2f} / {p95:.2f}"] + [""] * 3)
        for name, make in QUERIES.items():
            t: dict[str, list[float]] = {k: [] for k in ("sql", "raw", "ours", "bare")}
            full = 0
            for i in range(repeat + 3):
                body = {"collections": ["granules"], "limit": 10, **make(rng)}
                spent = {"sql": _timed(sql_search, conn, body)[0]}
                spent["raw"], answer = _timed(sql_search, conn, {**body, **NOHYDRATE})
                if "filter" in body:
                    body["filter-lang"] = "cql2-json"
                for label, base in bases.items():
                    spent[label], http = _timed(client.post, f"{base}/search", json=body)
                    http.raise_for_status()
                if i >= 3:
                    for label, ms in spent.items():
                        t[label].append(ms)
                    full += len(answer["features"]) == 10
            cells = [f"{a:.1f} / {b:.1f}" for a, b in (_quantiles(t[k]) for k in t)]
            rows.append([f"{n:,}", name, f"{full}/{repeat}", *cells])
            print(f"  {name}: {cells}", flush=True)
        # deep paging: a broad search (a 2° box, all years), `pages` pages down by next tokens
        page_t: dict[str, list[float]] = {"raw": [], "ours": []}
        walks = 0
        while walks < max(2, repeat // 10):
            body = {"collections": ["granules"], "limit": 10, "bbox": _random_box(rng, 2.0)}
            raw_body, http_body = dict(body), dict(body)
            for page in range(1, pages + 1):
                raw_ms, answer = _timed(sql_search, conn, {**raw_body, **NOHYDRATE})
                ours_ms, http = _timed(client.post, f"{bases['ours']}/search", json=http_body)
                raw_next, http_next = _next_token(answer), _next_token(http.json())
                if page == pages:
                    page_t["raw"].append(raw_ms)
                    page_t["ours"].append(ours_ms)
                    walks += 1
                if not raw_next or not http_next:
                    break
                raw_body, http_body = {**body, "token": raw_next}, {**body, "token": http_next}
        raw, ours = _quantiles(page_t["raw"]), _quantiles(page_t["ours"])
        rows.append(
            [
                *(f"{n:,}", f"2° box, page {pages} (next tokens)", f"{walks} walks", ""),
                *(f"{raw[0]:.1f} / {raw[1]:.1f}", f"{ours[0]:.1f} / {ours[1]:.1f}", ""),
            ]
        )
        print(f"  page {pages}: nohydrate {raw} ours {ours}", flush=True)


def sizes(dsn: str) -> tuple[int, int, int]:
    """Bytes: the database, the item partitions' tables (with TOAST), their indexes."""
    with psycopg.connect(dsn) as conn:
        db = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        table, index = conn.execute(
            "SELECT sum(pg_table_size(c.oid)), sum(pg_indexes_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'pgstac' AND c.relkind = 'r' AND c.relname LIKE '_items_%'"
        ).fetchone()
    return db, int(table), int(index)


BARE_APP = (
    "import uvicorn\n"
    "from stac_fastapi.pgstac.app import create_app\n"
    "uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='error')\n"
)


def bare_env(dsn: str) -> dict[str, str]:
    """stac-fastapi-pgstac's own app, as it comes (hydrating in the database), on `dsn`."""
    pg = postgres_settings(dsn)
    return {
        "PGUSER": pg.pguser,
        "PGPASSWORD": pg.pgpassword,
        "PGHOST": pg.pghost,
        "PGPORT": str(pg.pgport),
        "PGDATABASE": pg.pgdatabase,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--reuse", action="store_true", help="go on with the kept database's items (--keep)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, catalog_server(Path(tmp)) as server:
        try:
            run(server, sorted(args.items), args.repeat, args.pages, args.reuse)
        finally:
            if not args.keep:
                with psycopg.connect(server, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def run(server: str, steps: list[int], repeat: int, pages: int, reuse: bool) -> None:
    dsn = server.rsplit("/", 1)[0] + "/" + DATABASE if reuse else fresh_catalog(server, DATABASE)
    stac_code = (
        "import os, uvicorn\n"
        "from glacierflow.services.stac import create_stac_app\n"
        "from glacierflow.settings import Settings\n"
        "app = create_stac_app(Settings(), os.environ['GLACIERFLOW_DATABASE_URL_FOR_BENCH'])\n"
        "uvicorn.run(app, host='127.0.0.1', port={port}, log_level='error')\n"
    )
    rows: list[list[str]] = []
    loads: list[str] = []
    with psycopg.connect(dsn) as conn:
        (loaded,) = conn.execute("SELECT count(*) FROM pgstac.items").fetchone()
    for target in steps:
        if loaded < target:
            before, t0 = loaded, time.perf_counter()
            with PgstacDB(dsn=dsn) as db:
                loader = Loader(db=db)
                while loaded < target:
                    size = min(BATCH, target - loaded)
                    loader.load_items(granule_items(size, start=loaded), Methods.upsert)
                    loaded += size
                    print(f"  {loaded:,} items, load average {_load()}", flush=True)
            seconds = time.perf_counter() - t0
            t1 = time.perf_counter()
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("ANALYZE pgstac.items")
            analyze = time.perf_counter() - t1
            db, table, index = sizes(dsn)
            loads.append(
                f"{before:,} to {target:,}: {seconds:.0f} s "
                f"({(target - before) / seconds:.0f} items/s), "
                f"ANALYZE {analyze:.1f} s; database {db / 2**30:.2f} GiB (items {table / 2**30:.2f}"
                f" GiB + indexes {index / 2**30:.2f} GiB); load average {_load()}"
            )
            print(loads[-1], flush=True)
        servers = {
            "ours": serve(stac_code, {"GLACIERFLOW_DATABASE_URL_FOR_BENCH": dsn}),
            "bare": serve(BARE_APP, bare_env(dsn)),
        }
        try:
            print(f"searching at {target:,} items, load average {_load()}", flush=True)
            measure(dsn, {k: base for k, (_, base) in servers.items()}, repeat, pages, rows, target)
        finally:
            for process, _ in servers.values():
                process.terminate()
        print(f"  load average after: {_load()}")
    print()
    for line in loads:
        print(line)
    print(
        "\n| items | query (limit 10) | full pages | search() | search() nohydrate "
        "| glacierflow API | bare stac-fastapi-pgstac |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
