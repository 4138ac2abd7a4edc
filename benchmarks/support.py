"""What the benchmarks share: a catalog database to run against and servers on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import psycopg

from glacierflow.catalog.database import EmbeddedCluster, external_dsn
from glacierflow.catalog.loader import init_catalog


@contextmanager
def catalog_server(folder: Path) -> Iterator[str]:
    """DATABASE_URL's server when set, else a private cluster in `folder`; yields its DSN."""
    os.chmod(folder, 0o755)
    dsn = external_dsn()
    if dsn is not None:
        yield dsn
        return
    cluster = EmbeddedCluster(folder / "postgres")
    dsn, _ = cluster.start()
    try:
        yield dsn
    finally:
        cluster.stop()


def fresh_catalog(dsn: str, name: str) -> str:
    """An empty database `name` on the same server, with pgstac and the collections."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    own = dsn.rsplit("/", 1)[0] + "/" + name
    init_catalog(own, {})
    return own


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(code: str, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Run `code` (a uvicorn server; `{port}` is filled in) in a process; its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", code.format(port=port)],
        env={**os.environ, **env},
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{base}/", timeout=1)
            return process, base
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("a server did not start")


# -- process trees, from /proc (the soak's watch and the server tests) ------------------------
def _parent_pids() -> dict[int, int]:
    """Every process's parent."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def child_processes(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    return [child for child, parent in _parent_pids().items() if parent == pid]


def process_tree(pid: int) -> set[int]:
    """`pid` and all its descendants."""
    parents = _parent_pids()
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        kids = {p for p, pp in parents.items() if pp == parent} - tree
        tree |= kids
        frontier.extend(kids)
    return tree


def landsat8_pair(centre: datetime, dt_days: float) -> dict[str, object]:
    """A cube layer's pair figures: Landsat 8 OLI images `dt_days` apart around `centre`."""
    return {
        "satellite_img1": "8",
        "satellite_img2": "8",
        "mission_img1": "L",
        "mission_img2": "L",
        "sensor_img1": "C",
        "sensor_img2": "C",
        "acquisition_date_img1": np.datetime64(centre - timedelta(days=dt_days / 2), "ns"),
        "acquisition_date_img2": np.datetime64(centre + timedelta(days=dt_days / 2), "ns"),
        "date_center": np.datetime64(centre, "ns"),
        "date_dt": float(dt_days),
        "roi_valid_percentage": 70.0,
        "stable_shift_flag": 1,
    }


def write_speed_cog(path: Path, speed: np.ndarray, crs: str, transform) -> Path:
    """A float32 speed COG (NaN nodata, 512 px internal tiles, nearest overviews, deflate)
    from a known array, as the mosaics are written; for tile tests and benchmarks."""
    import rasterio
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    profile = {
        "driver": "GTiff",
        "dtype": "float32",
        "count": 1,
        "height": speed.shape[0],
        "width": speed.shape[1],
        "crs": crs,
        "transform": transform,
        "nodata": float("nan"),
    }
    with rasterio.MemoryFile() as memory:
        with memory.open(**profile) as source:
            source.write(speed.astype("float32"), 1)
        with memory.open() as source:
            cog_translate(
                source,
                str(path),
                cog_profiles.get("deflate"),
                overview_resampling="nearest",
                quiet=True,
            )
    return path


def speed_item(item_id: str, href: str, bounds_lonlat: tuple[float, ...], collection: str) -> dict:
    """A STAC item whose `v` asset (data-relative href) is a speed COG, with the speed
    render object."""
    from glacierflow.catalog.render import SPEED_COLORMAP_NAME, speed_render

    west, south, east, north = bounds_lonlat
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": collection,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": list(bounds_lonlat),
        "properties": {
            "datetime": "2024-07-01T00:00:00Z",
            "renders": {SPEED_COLORMAP_NAME: speed_render("v")},
        },
        "assets": {
            "v": {
                "href": href,
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
            }
        },
        "links": [],
    }


# -- Debian's chromium under Playwright (the dashboard's tests and benchmark) ----------------
CHROMIUM = Path("/usr/bin/chromium")
# no internet here: background networking would only flood the log with refused connections
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@contextmanager
def chromium_browser() -> Iterator:  # -> playwright.sync_api.Browser
    """Debian's chromium, headless, under Playwright (which cannot download its own here)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise FileNotFoundError(f"{CHROMIUM} is missing: ./run test installs it (apt chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()
