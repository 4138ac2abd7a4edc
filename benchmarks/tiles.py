"""Tile latency: a 256 x 256 PNG of speed (log10 + rescale + the speed colormap) from a
mosaic COG through glacierflow's /tiles, from plain titiler on the same COG (the baseline,
same run, requests interleaved), and from a pgstac search mosaic at zoom 8 and zoom 3.

    .venv/bin/python benchmarks/tiles.py [--size 4096] [--repeat 60]

The COG is a polar-stereographic (EPSG:3413) speed mosaic at 120 m, `--size` pixels square,
written as the mosaics are (rio-cogeo, 512 px blocks, overviews); its Web-Mercator copy is
the `v_3857` asset, read at low zooms. Uses DATABASE_URL when set, else a private cluster
in a temporary folder. Both servers run as uvicorn processes on loopback; one client sends
the requests in turn over keep-alive connections. Also prints the cost of the colormap
and PNG encoding alone (in-process): the log10 expression + 256-entry lookup against an
intervals colormap, and zlib level 6 (rio-tiler's default) against 1 (what /tiles uses).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import morecantile
import numpy as np
import rasterio
import rasterio.warp
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles
from rio_tiler.colormap import apply_cmap
from rio_tiler.models import ImageData
from rio_tiler.utils import render

from glacierflow.catalog.loader import load_items
from glacierflow.catalog.render import (
    SPEED_RESCALE,
    index_speed_range,
    speed_colormap,
    speed_render,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import catalog_server, fresh_catalog, serve, speed_item, write_speed_cog

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
# upper left corner of the mosaic in EPSG:3413: west Greenland, over Jakobshavn Isbrae
ORIGIN = (-400_000.0, -2_000_000.0)
PIXEL_M = 120.0

GLACIERFLOW = """
import uvicorn
from glacierflow.services.app import create_app
from glacierflow.settings import Settings
uvicorn.run(create_app(Settings(data_dir={data!r}), {dsn!r}), host="127.0.0.1",
            port={{port}}, log_level="warning")
"""
PLAIN_TITILER = """
import uvicorn
from fastapi import FastAPI
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.core.factory import TilerFactory
app = FastAPI()
add_exception_handlers(app, DEFAULT_STATUS_CODES)
app.include_router(TilerFactory(router_prefix="/cog").router, prefix="/cog")
app.get("/")(lambda: {{}})
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
"""


def speed_field(size: int, seed: int = 0) -> np.ndarray:
    """Speeds over four decades: slow interior, fast outlet channels; NaN sea in a corner."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size] / size
    channels = np.exp(-(((rows - 0.5 - 0.2 * np.sin(6 * cols)) / 0.03) ** 2))
    log_speed = 0.5 + 2.0 * cols + 1.5 * channels + rng.normal(0, 0.05, (size, size))
    speed = (10**log_speed).astype("float32")
    speed[(rows > 0.8) & (cols < 0.3)] = np.nan
    return speed


def web_mercator_copy(source: Path, target: Path) -> Path:
    """The Web-Mercator COG of the same speed, aligned with the tile grid (rio-cogeo)."""
    with rasterio.open(source) as src:
        cog_translate(
            src,
            str(target),
            cog_profiles.get("deflate"),
            tms=WEB_MERCATOR,
            resampling="nearest",
            overview_resampling="nearest",
            quiet=True,
        )
    return target


def tiles_at(zoom: int, cog: Path, limit: int = 16) -> list:
    """Up to `limit` tiles of the zoom whose centre is on the mosaic, from its middle out."""
    with rasterio.open(cog) as src:
        bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        tiles = list(WEB_MERCATOR.tiles(*bounds, zooms=[zoom]))
        centres = [WEB_MERCATOR.ul(t.x + 0.5, t.y + 0.5, t.z) for t in tiles]
        xs, ys = rasterio.warp.transform("EPSG:4326", src.crs, *zip(*centres, strict=True))
        left, bottom, right, top = src.bounds
        tiles = [
            t
            for t, x, y in zip(tiles, xs, ys, strict=True)
            if left < x < right and bottom < y < top
        ] or tiles[:1]
    mid_x = sum(t.x for t in tiles) / len(tiles)
    mid_y = sum(t.y for t in tiles) / len(tiles)
    tiles.sort(key=lambda t: (t.x - mid_x) ** 2 + (t.y - mid_y) ** 2)
    return tiles[:limit]


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def measure(client: httpx.Client, cases: dict[str, tuple[str, dict, list]], repeat: int) -> dict:
    """Every case's tiles in turn, round robin over the cases, `repeat` rounds; ms each."""
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for name, (template, params, tiles) in cases.items():  # warm every tile once
        for tile in tiles:
            answer = client.get(template.format(z=tile.z, x=tile.x, y=tile.y), params=params)
            assert answer.status_code == 200 and answer.content[:4] == b"\x89PNG", (
                name,
                answer.status_code,
                answer.text[:200],
            )
    for round_ in range(repeat):
        for name, (template, params, tiles) in cases.items():
            tile = tiles[round_ % len(tiles)]
            url = template.format(z=tile.z, x=tile.x, y=tile.y)
            start = time.perf_counter()
            answer = client.get(url, params=params)
            timings[name].append((time.perf_counter() - start) * 1000)
            assert answer.status_code == 200
    return timings


def render_cost(repeat: int = 30) -> dict[str, float]:
    """Rendering alone (no I/O), ms per 256 x 256 tile of the benchmark's speed field: the
    colormap as log10 + lookup table against an intervals colormap (PNG level 6, rio-tiler's
    default), and the PNG encoding alone at zlib level 6 and at level 1 (what /tiles uses)."""
    speed = np.ma.masked_invalid(speed_field(1024)[None, 300:556, 300:556])
    lut = speed_colormap()
    intervals = [
        (
            (
                index_speed_range(i)[0] if i else -np.inf,
                index_speed_range(i)[1] if i < 255 else np.inf,
            ),
            lut[i],
        )
        for i in range(256)
    ]
    indices = np.clip(np.log10(speed.filled(1)) / 4 * 255, 0, 255).astype("uint8")
    coloured, alpha = apply_cmap(indices, lut)

    def expression_and_lut() -> bytes:
        image = ImageData(speed.copy()).apply_expression(speed_render()["expression"])
        image.rescale([SPEED_RESCALE])
        return image.render(img_format="PNG", colormap=lut)

    cases = {
        "colormap log10 + LUT, PNG": expression_and_lut,
        "colormap intervals, PNG": lambda: ImageData(speed.copy()).render(
            img_format="PNG", colormap=intervals
        ),
        "PNG encoding, zlib level 6": lambda: render(coloured, alpha, img_format="PNG", zlevel=6),
        "PNG encoding, zlib level 1": lambda: render(coloured, alpha, img_format="PNG", zlevel=1),
    }
    costs = {}
    for name, case in cases.items():
        size = len(case())
        start = time.perf_counter()
        for _ in range(repeat):
            case()
        costs[f"{name} ({size / 1024:.0f} KiB)"] = (time.perf_counter() - start) / repeat * 1000
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="mosaic side (px, 120 m)")
    parser.add_argument("--repeat", type=int, default=60, help="requests per case")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    for name, cost in render_cost().items():
        print(f"in-process, {name}: {cost:.1f} ms per 256^2 tile")

    with tempfile.TemporaryDirectory() as tmp, catalog_server(Path(tmp)) as server_dsn:
        data = Path(tmp) / "data"
        (data / "mosaics").mkdir(parents=True)
        cog = data / "mosaics" / "bench_v.tif"
        write_speed_cog(
            cog, speed_field(args.size), "EPSG:3413", from_origin(*ORIGIN, PIXEL_M, PIXEL_M)
        )
        web_mercator_copy(cog, data / "mosaics" / "bench_v_3857.tif")
        with rasterio.open(cog) as src:
            bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        dsn = fresh_catalog(server_dsn, "bench_tiles")
        item = speed_item("bench-2024", "mosaics/bench_v.tif", bounds, "mosaics")
        item["assets"]["v_3857"] = {**item["assets"]["v"], "href": "mosaics/bench_v_3857.tif"}
        load_items(dsn, [item])

        ours, ours_url = serve(GLACIERFLOW.format(data=str(data), dsn=dsn), {})
        plain, plain_url = serve(PLAIN_TITILER, {})
        try:
            with httpx.Client(timeout=60) as client:
                search = client.post(
                    f"{ours_url}/tiles/searches/register", json={"collections": ["mosaics"]}
                ).json()["id"]
                render = speed_render()
                style = {
                    "expression": render["expression"],
                    "rescale": ",".join(map(str, render["rescale"][0])),
                    "colormap_name": render["colormap_name"],
                }
                path = "tiles/WebMercatorQuad/{z}/{x}/{y}.png"
                ours_cog = f"{ours_url}/tiles/cog/{path}"
                plain_cog = f"{plain_url}/cog/{path}"
                mosaic = f"{ours_url}/tiles/searches/{search}/{path}"
                native, mercator = "mosaics/bench_v.tif", "mosaics/bench_v_3857.tif"
                cases = {}
                for zoom in (8, 3):
                    tiles = tiles_at(zoom, cog)
                    cases |= {
                        f"COG z{zoom}, /tiles": (ours_cog, {"url": native, **style}, tiles),
                        f"COG z{zoom}, plain titiler": (
                            plain_cog,
                            {"url": str(cog), **style},
                            tiles,
                        ),
                        f"COG z{zoom} (3857), /tiles": (
                            ours_cog,
                            {"url": mercator, **style},
                            tiles,
                        ),
                        f"search mosaic z{zoom} (v)": (mosaic, {"assets": "v", **style}, tiles),
                        f"search mosaic z{zoom} (v_3857)": (
                            mosaic,
                            {"assets": "v_3857", **style},
                            tiles,
                        ),
                    }
                timings = measure(client, cases, args.repeat)
        finally:
            for process in (ours, plain):
                process.terminate()
                process.wait(10)

    print(
        f"mosaic COG {args.size} x {args.size} px (EPSG:3413, 120 m); {args.repeat} requests/case"
    )
    print(f"{'case':<28} {'p50 ms':>8} {'p95 ms':>8}")
    for name, samples in timings.items():
        p50, p95 = percentiles(samples)
        print(f"{name:<28} {p50:8.1f} {p95:8.1f}")
    for zoom in (8, 3):
        ours_p50 = percentiles(timings[f"COG z{zoom}, /tiles"])[0]
        plain_p50 = percentiles(timings[f"COG z{zoom}, plain titiler"])[0]
        print(f"COG z{zoom}: /tiles / plain titiler (p50) = {ours_p50 / plain_p50:.2f}")
    print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")


if __name__ == "__main__":
    main()
