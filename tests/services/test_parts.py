"""Each part on its own: the STAC API, the time series and the tiles as separate processes on
the machine's shared PostgreSQL server, driven along a user's path (search, time series, tile)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import morecantile
import numpy as np
import psycopg
import pytest
from affine import Affine
from conftest import (
    GRANULE_PAIRS,
    ServedRegion,
    free_port,
    measured_pixel,
    serving_process,
    wait_healthy,
)
from mosaic_products import write_cog
from PIL import Image
from pyproj import Transformer

from glacierflow.catalog.loader import init_catalog, load_cubes, load_granules
from glacierflow.catalog.render import speed_render
from glacierflow.settings import Settings

# the PostgreSQL server every machine of this project runs (CI too); a deployment's parts
# share one such server
MACHINE_SERVER = os.environ.get(
    "GLACIERFLOW_TEST_SHARED_DSN", "postgresql://postgres@127.0.0.1:5432"
)
SPEED_COG = "mosaics/parts_v.tif"


@pytest.fixture(scope="module")
def shared_catalog(served_region: ServedRegion, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A database of its own on the machine's server, holding the served region's cube and
    granules, and a copy of the region's data directory with a speed COG over the cube."""
    name = f"glacierflow_parts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{MACHINE_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{MACHINE_SERVER}/{name}"
    try:
        data = tmp_path_factory.mktemp("parts") / "data"
        shutil.copytree(served_region.data_dir, data, symlinks=True)
        settings = Settings(data_dir=data)
        init_catalog(dsn, {})
        store = settings.cube_store
        load_cubes(dsn, [p for p in store.iterdir() if p.name.endswith(".zarr")], "cubes",
                   settings.data_href)  # fmt: skip
        load_granules(dsn, sorted((data / "granules").glob("*.nc")), "granules",
                      settings.data_href, True)  # fmt: skip
        x, y = GRANULE_PAIRS["july"][2]
        _write_speed_cog(
            data / SPEED_COG, *Transformer.from_crs(3413, 4326, always_xy=True).transform(x, y)
        )
        yield dsn, data
    finally:
        with psycopg.connect(f"{MACHINE_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _write_speed_cog(path: Path, x: float, y: float) -> None:
    """1,000 m/yr over 12 km around the point (x, y) of EPSG:3413, in Web Mercator."""
    x, y = Transformer.from_crs(3413, 3857, always_xy=True).transform(x, y)
    path.parent.mkdir(parents=True, exist_ok=True)
    speed = np.full((400, 400), 1000.0, dtype="float32")
    write_cog(path, speed, Affine(30.0, 0, x - 6000, 0, -30.0, y + 6000), 3857)


@pytest.fixture(scope="module")
def parts(shared_catalog: tuple[str, Path], tmp_path_factory) -> Iterator[dict[str, str]]:
    """`glacierflow serve --only PART` for the three parts, each its own process."""
    dsn, data = shared_catalog
    env = {**os.environ, "DATABASE_URL": dsn, "GLACIERFLOW_DATA_DIR": str(data)}
    logs = tmp_path_factory.mktemp("parts-logs")
    servers: dict[str, subprocess.Popen] = {}
    try:
        for part in ("stac", "timeseries", "tiles"):
            port = free_port()
            with (logs / f"{part}.log").open("w") as output:
                servers[part] = subprocess.Popen(
                    [sys.executable, "-m", "glacierflow.cli", "serve", "--only", part, "--port",
                     str(port)],
                    env=env, stdout=output, stderr=subprocess.STDOUT,
                )  # fmt: skip
            servers[part].url = f"http://127.0.0.1:{port}"
        for part in ("stac", "timeseries"):
            wait_healthy(servers[part], servers[part].url, (logs / f"{part}.log").read_text)
        _wait_answering(servers["tiles"], f"{servers['tiles'].url}/legend/speed")
        yield {part: server.url for part, server in servers.items()}
    finally:
        for server in servers.values():
            server.terminate()
        for server in servers.values():
            server.wait(30)


def _wait_answering(server: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert server.poll() is None, "the tile server exited"
        try:
            if httpx.get(url, timeout=10).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within 180 s")


def test_a_users_path_search_then_time_series_then_tile_across_three_processes(
    parts: dict[str, str], granule_files: dict[str, Path]
) -> None:
    # a pixel every cube layer measured (the cube's granules are copies of this one's)
    x, y = measured_pixel(granule_files["july"])
    lon, lat = Transformer.from_crs(3413, 4326, always_xy=True).transform(x, y)
    # 1. find the cube over the point (the STAC API at the root of its own process)
    search = httpx.get(
        f"{parts['stac']}/search",
        params={
            "collections": "cubes",
            "bbox": f"{lon - 0.01},{lat - 0.01},{lon + 0.01},{lat + 0.01}",
        },
    )
    assert search.status_code == 200, search.text
    (cube,) = search.json()["features"]
    zarr = next(a["href"] for a in cube["assets"].values() if a["href"].endswith(".zarr"))
    assert zarr.startswith(f"{parts['stac']}/data/")  # a URL of that process, not a path
    # 2. the point's history from the time-series process
    series = httpx.get(f"{parts['timeseries']}/timeseries", params={"lon": lon, "lat": lat})
    assert series.status_code == 200, series.text
    answer = series.json()
    assert answer["cube"]["href"] == zarr.replace(parts["stac"], parts["timeseries"])
    assert answer["count"] == 12 == len(answer["time_series"]["v"])  # the cube's 12 layers
    # 3. the speed tile over the point from the tile process, coloured by the legend
    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 12)
    render = speed_render()
    png = httpx.get(
        f"{parts['tiles']}/cog/tiles/WebMercatorQuad/12/{tile.x}/{tile.y}.png",
        params={
            "url": SPEED_COG,
            "expression": render["expression"],
            "rescale": ",".join(str(v) for v in render["rescale"][0]),
            "colormap_name": render["colormap_name"],
        },
    )
    assert png.status_code == 200, png.text
    rgba = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGBA"))
    legend = httpx.get(f"{parts['tiles']}/legend/speed").json()
    assert (rgba[..., 3] == 255).any()
    stop = next(s for s in legend["stops"] if s["min"] is not None and s["min"] <= 1000 < s["max"])
    drawn = tuple(int(stop["color"][i : i + 2], 16) for i in (1, 3, 5))
    assert tuple(rgba[rgba[..., 3] == 255][0][:3]) == drawn


def test_each_part_answers_only_its_own_routes(parts: dict[str, str]) -> None:
    assert httpx.get(f"{parts['stac']}/timeseries", params={"lon": 0, "lat": 0}).status_code == 404
    assert httpx.get(f"{parts['timeseries']}/search").status_code == 404
    assert httpx.get(f"{parts['tiles']}/search").status_code == 404
    for part in ("stac", "timeseries"):
        assert httpx.get(f"{parts[part]}/healthz").json()["status"] == "up"
        docs = httpx.get(f"{parts[part]}/docs")
        assert docs.status_code == 200 and "cdn" not in docs.text.lower()


def test_the_uvicorn_factories_serve_the_same_parts(shared_catalog: tuple[str, Path]) -> None:
    dsn, data = shared_catalog
    env = {"DATABASE_URL": dsn, "GLACIERFLOW_DATA_DIR": str(data)}
    for factory, route in (
        ("glacierflow.services.stac:create_app_from_environment", "/collections"),
        ("glacierflow.services.app:create_timeseries_part_from_environment", "/healthz"),
    ):
        with serving_process(factory, env) as (url, _):
            answer = httpx.get(f"{url}{route}", timeout=30)
            assert answer.status_code == 200, (factory, answer.text)
