"""The tile server on loopback against a real catalog: a speed COG of known values, read as
XYZ tiles, WMTS (GDAL's driver, as QGIS reads it), item and mosaic tiles, and refused when
a request asks for what it may not have."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import morecantile
import numpy as np
import pytest
import rasterio
from conftest import free_port, serving, serving_process
from PIL import Image
from rasterio.transform import from_origin
from support import speed_item, write_speed_cog

from glacierflow.catalog.loader import load_items
from glacierflow.catalog.render import SPEED_COLORMAP_NAME, speed_render
from glacierflow.services.app import create_app
from glacierflow.services.tiles import create_tiles_app
from glacierflow.settings import Settings

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
ZOOM = 10
CORNER = WEB_MERCATOR.tile(-45.0, 70.0, ZOOM)  # the COG covers 2 x 2 tiles from here
COG = "mosaics/speed_v.tif"
NODATA_BLOCK = 64  # the COG's first 64 x 64 pixels are nodata


def known_speed() -> np.ndarray:
    """Speeds from 1 to 10,000 m/yr across the columns (log-uniform), a nodata corner."""
    columns = 10 ** np.linspace(0.0, 4.0, 512)
    speed = np.repeat(columns[None, :], 512, axis=0)
    speed[:NODATA_BLOCK, :NODATA_BLOCK] = np.nan
    return speed.astype("float32")


def render_query(**extra: str) -> dict[str, str]:
    """The speed render object as titiler query parameters."""
    render = speed_render()
    rescale = ",".join(str(v) for v in render["rescale"][0])
    return {
        "expression": render["expression"],
        "rescale": rescale,
        "colormap_name": render["colormap_name"],
        **extra,
    }


@pytest.fixture(scope="module")
def tiles_data(tmp_path_factory: pytest.TempPathFactory, new_catalog: Callable) -> dict:
    """A data directory with the speed COG, an item for it in a catalog of its own, and an
    item whose asset lies outside the data directory."""
    root = tmp_path_factory.mktemp("tiles")
    data = root / "data"
    (data / "mosaics").mkdir(parents=True)
    left, _, _, top = WEB_MERCATOR.xy_bounds(CORNER)
    pixel = (WEB_MERCATOR.xy_bounds(CORNER).right - left) / 256
    speed = known_speed()
    write_speed_cog(data / COG, speed, "EPSG:3857", from_origin(left, top, pixel, pixel))
    write_speed_cog(root / "outside.tif", speed, "EPSG:3857", from_origin(left, top, pixel, pixel))
    (data / "mosaics" / "escape.tif").symlink_to(root / "outside.tif")
    with rasterio.open(data / COG) as cog:
        west, south, east, north = rasterio.warp.transform_bounds(cog.crs, "EPSG:4326", *cog.bounds)
    dsn = new_catalog("tiles_test")
    bounds = (west, south, east, north)
    load_items(
        dsn,
        [
            speed_item("speed-2024", COG, bounds, "mosaics"),
            speed_item("escape", "../outside.tif", bounds, "mosaics"),
        ],
    )
    return {"root": root, "data": data, "dsn": dsn, "speed": speed}


@pytest.fixture(scope="module")
def tiles_url(tiles_data: dict) -> Iterator[str]:
    settings = Settings(data_dir=tiles_data["data"])
    with serving(create_tiles_app(settings, tiles_data["dsn"])) as url:
        yield url


def png_pixels(answer: httpx.Response) -> np.ndarray:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGBA"))


def legend_colour(legend: dict, speed: float) -> tuple[int, ...]:
    """The colour the legend gives `speed` (its stop's [min, max) holds it)."""
    for stop in legend["stops"]:
        if (stop["min"] is None or speed >= stop["min"]) and (
            stop["max"] is None or speed < stop["max"]
        ):
            return tuple(int(stop["color"][i : i + 2], 16) for i in (1, 3, 5))
    raise AssertionError(f"no legend stop holds {speed}")


def assert_colours_follow_legend(rgba: np.ndarray, speed: np.ndarray, legend: dict) -> None:
    """Every pixel: transparent where nodata, else the legend's colour of its speed. Pixels
    within 0.1 % of a stop's edge may take either neighbour (float32 vs float64 log10)."""
    assert rgba.shape[:2] == speed.shape
    assert (rgba[..., 3][np.isnan(speed)] == 0).all()
    checked = 0
    for (row, col), value in np.ndenumerate(speed[::7, ::5]):
        r, c = row * 7, col * 5
        if math.isnan(value):
            continue
        step = 4 / 255
        position = math.log10(value) / step
        if abs(position - round(position)) < 1e-3:
            continue
        assert rgba[r, c, 3] == 255
        assert tuple(rgba[r, c, :3]) == legend_colour(legend, float(value)), (r, c, value)
        checked += 1
    assert checked > speed[::7, ::5].size // 2


def tile_url(base: str, x: int, y: int, z: int = ZOOM, ext: str = ".png") -> str:
    return f"{base}/tiles/WebMercatorQuad/{z}/{x}/{y}{ext}"


# -- COG tiles, colours and the legend -------------------------------------------------------
def test_xyz_tile_colours_are_the_legend_colours_of_the_cog_values(
    tiles_url: str, tiles_data: dict
) -> None:
    legend = httpx.get(f"{tiles_url}/legend/speed").json()
    answer = httpx.get(
        tile_url(f"{tiles_url}/cog", CORNER.x, CORNER.y), params=render_query(url=COG)
    )
    assert answer.headers["cache-control"] == "public, max-age=3600"
    assert_colours_follow_legend(png_pixels(answer), tiles_data["speed"][:256, :256], legend)


def test_legend_json_ticks_and_png(tiles_url: str) -> None:
    legend = httpx.get(f"{tiles_url}/legend/speed").json()
    assert legend["units"] == "m/yr" and legend["scale"] == "log10"
    assert [t["value"] for t in legend["ticks"]] == [1, 10, 100, 1000, 10000]
    assert len(legend["stops"]) == 256
    for tick in legend["ticks"][1:-1]:
        colour = tuple(int(tick["color"][i : i + 2], 16) for i in (1, 3, 5))
        assert colour == legend_colour(legend, tick["value"] * 1.001)
    png = httpx.get(f"{tiles_url}/legend/speed.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    for unknown in ("viridis", "nope.png"):
        answer = httpx.get(f"{tiles_url}/legend/{unknown}")
        assert answer.status_code == 404 and "speed" in answer.json()["detail"]


def test_wmts_layer_read_by_gdal_matches_the_cog(tiles_url: str, tiles_data: dict) -> None:
    """GDAL's WMTS driver (QGIS's engine) reads the layer from the capabilities URL; its
    pixels over the COG are the legend's colours of the COG's values."""
    legend = httpx.get(f"{tiles_url}/legend/speed").json()
    query = urlencode(render_query(url=COG))
    layer = "speed_v_WebMercatorQuad_default"  # titiler: one layer per tile matrix set
    capabilities = f"{tiles_url}/cog/WMTSCapabilities.xml?{query}"
    with (
        rasterio.open(f"WMTS:{capabilities}", LAYER=layer, ZOOM_LEVEL=str(ZOOM)) as wmts,
        rasterio.open(tiles_data["data"] / COG) as cog,
    ):
        assert wmts.count == 4, wmts.subdatasets
        assert wmts.crs == cog.crs, (wmts.crs, wmts.transform, wmts.shape)
        window = rasterio.windows.from_bounds(*cog.bounds, transform=wmts.transform)
        window = window.round_offsets().round_lengths()
        rgba = np.moveaxis(wmts.read(window=window), 0, -1)
    assert_colours_follow_legend(rgba, tiles_data["speed"], legend)


def test_point_info_statistics_tilejson(tiles_url: str, tiles_data: dict) -> None:
    cog = f"{tiles_url}/cog"
    with rasterio.open(tiles_data["data"] / COG) as source:
        x, y = source.xy(300, 400)
        lon, lat = rasterio.warp.transform("EPSG:3857", "EPSG:4326", [x], [y])
    point = httpx.get(f"{cog}/point/{lon[0]},{lat[0]}", params={"url": COG}).json()
    assert point["values"][0] == pytest.approx(float(tiles_data["speed"][300, 400]), rel=1e-6)
    info = httpx.get(f"{cog}/info", params={"url": COG}).json()
    assert info["dtype"] == "float32" and info["width"] == 512
    stats = httpx.get(f"{cog}/statistics", params={"url": COG, "max_size": 512}).json()
    assert stats["b1"]["max"] == pytest.approx(1e4, rel=1e-5)
    tilejson = httpx.get(f"{cog}/WebMercatorQuad/tilejson.json", params=render_query(url=COG))
    assert tilejson.status_code == 200
    template = tilejson.json()["tiles"][0]
    assert "colormap_name=speed" in template and f"url={COG.replace('/', '%2F')}" in template
    for answer in (info, tilejson.json()):
        assert str(tiles_data["root"]) not in str(answer)


# -- outside the data ------------------------------------------------------------------------
def test_tiles_outside_data_are_transparent_png_or_404(tiles_url: str) -> None:
    far = (f"{tiles_url}/cog", CORNER.x + 20, CORNER.y)
    rgba = png_pixels(httpx.get(tile_url(*far), params=render_query(url=COG)))
    assert rgba.shape == (256, 256, 4) and (rgba[..., 3] == 0).all()
    retina = png_pixels(httpx.get(tile_url(*far), params=render_query(url=COG, tilesize="512")))
    assert retina.shape == (512, 512, 4) and (retina[..., 3] == 0).all()
    no_extension = httpx.get(tile_url(*far, ext=""), params=render_query(url=COG))
    assert no_extension.status_code == 200 and no_extension.headers["content-type"] == "image/png"
    jpeg = httpx.get(tile_url(*far, ext=".jpg"), params=render_query(url=COG))
    assert jpeg.status_code == 404
    point = httpx.get(f"{tiles_url}/cog/point/10,10", params={"url": COG})
    assert point.status_code == 404


# -- the catalog: items and mosaics ---------------------------------------------------------
def test_item_and_mosaic_tiles_draw_the_cog(tiles_url: str, tiles_data: dict) -> None:
    legend = httpx.get(f"{tiles_url}/legend/speed").json()
    speed = tiles_data["speed"][:256, :256]
    query = render_query(assets="v")
    item = f"{tiles_url}/collections/mosaics/items/speed-2024"
    assert_colours_follow_legend(
        png_pixels(httpx.get(tile_url(item, CORNER.x, CORNER.y), params=query)), speed, legend
    )
    registered = httpx.post(f"{tiles_url}/searches/register", json={"collections": ["mosaics"]})
    assert registered.status_code == 200, registered.text
    assert "cache-control" not in registered.headers
    search = f"{tiles_url}/searches/{registered.json()['id']}"
    for mosaic in (search, f"{tiles_url}/collections/mosaics"):
        # the escaping item's footprint is the same: first the good one must be drawn
        answer = httpx.get(
            tile_url(mosaic, CORNER.x, CORNER.y), params={**query, "ids": "speed-2024"}
        )
        assert_colours_follow_legend(png_pixels(answer), speed, legend)
        outside = httpx.get(tile_url(mosaic, CORNER.x + 20, CORNER.y), params=query)
        assert (png_pixels(outside)[..., 3] == 0).all()
    wmts = httpx.get(f"{search}/WMTSCapabilities.xml", params=query)
    assert wmts.status_code == 200 and "<Capabilities" in wmts.text
    # an item's WMTS needs no parameters: its render object makes the `speed` layer
    wmts = httpx.get(f"{item}/WMTSCapabilities.xml")
    assert "speed-2024_WebMercatorQuad_speed" in wmts.text
    assert "colormap_name=speed" in wmts.text and "expression=log10" in wmts.text


def test_item_asset_outside_the_data_directory_is_refused(tiles_url: str, tiles_data: dict) -> None:
    item = f"{tiles_url}/collections/mosaics/items/escape"
    for answer in (
        httpx.get(tile_url(item, CORNER.x, CORNER.y), params=render_query(assets="v")),
        httpx.get(f"{item}/info", params={"assets": "v"}),
    ):
        assert answer.status_code == 404, answer.text
        assert str(tiles_data["root"]) not in answer.text and "outside.tif" not in answer.text


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "../outside.tif",
        "mosaics/../../outside.tif",
        "/etc/passwd",
        "http://example.com/speed.tif",
        "/vsicurl/http://example.com/speed.tif",
        "file:///etc/passwd",
        "s3://bucket/speed.tif",
    ],
)
def test_cog_urls_outside_the_data_directory_are_400(
    tiles_url: str, tiles_data: dict, url: str
) -> None:
    answer = httpx.get(f"{tiles_url}/cog/info", params={"url": url})
    assert answer.status_code == 400, answer.text
    assert str(tiles_data["root"]) not in answer.text


@pytest.mark.parametrize(
    "url", ["mosaics/escape.tif", "mosaics/missing.tif", "postgres/x.tif", "mosaics/.hidden.tif"]
)
def test_unpublished_files_are_404(tiles_url: str, tiles_data: dict, url: str) -> None:
    answer = httpx.get(f"{tiles_url}/cog/info", params={"url": url})
    assert answer.status_code == 404, answer.text
    assert str(tiles_data["root"]) not in answer.text


def test_own_data_url_is_accepted(tiles_url: str) -> None:
    answer = httpx.get(f"{tiles_url}/cog/info", params={"url": f"{tiles_url}/data/{COG}"})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("path", "params", "words"),
    [
        (f"tiles/WebMercatorQuad/{ZOOM}/{2**ZOOM}/0.png", {}, "outside"),
        ("tiles/WebMercatorQuad/3/-1/0.png", {}, "outside"),
        ("tiles/WebMercatorQuad/31/0/0.png", {}, "zoom 31"),
        ("tiles/WebMercatorQuad/3/1/1.png", {"tilesize": "100000"}, "tilesize"),
        ("tiles/WebMercatorQuad/3/1/1.png", {"buffer": "1000"}, "buffer"),
        ("preview.png", {"max_size": "100000"}, "max_size"),
        ("bbox/-46,69,-44,71.png", {"width": "50000", "height": "10"}, "width"),
        ("bbox/-46,69,-44,71/10x50000.png", {}, "height"),
        ("statistics", {"histogram_bins": "100000000"}, "histogram_bins"),
        ("statistics", {"histogram_bins": ",".join(map(str, range(2000)))}, "histogram_bins"),
    ],
)
def test_out_of_range_requests_are_400(tiles_url: str, path: str, params: dict, words: str) -> None:
    answer = httpx.get(f"{tiles_url}/cog/{path}", params={"url": COG, **params})
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["detail"]


def test_search_bodies_are_bounded(tiles_url: str) -> None:
    huge = {"collections": ["mosaics"], "filter": {"op": "and", "args": ["x" * (2 << 20)]}}
    assert httpx.post(f"{tiles_url}/searches/register", json=huge).status_code == 413


def test_unknown_colormap_is_422_naming_speed(tiles_url: str) -> None:
    answer = httpx.get(
        tile_url(f"{tiles_url}/cog", CORNER.x, CORNER.y),
        params=render_query(url=COG, colormap_name="rainbowz"),
    )
    assert answer.status_code == 422
    assert "colormap_name" in answer.text and SPEED_COLORMAP_NAME in answer.text


def test_parts_are_bounded_by_default(tiles_url: str) -> None:
    answer = httpx.get(f"{tiles_url}/cog/bbox/-46,69,-44,71.png", params={"url": COG})
    image = Image.open(io.BytesIO(answer.content))
    assert max(image.size) <= 1024


# -- composed -----------------------------------------------------------------------------------
def test_tiles_in_the_composed_app(tiles_data: dict) -> None:
    settings = Settings(data_dir=tiles_data["data"])
    with serving(create_app(settings, tiles_data["dsn"])) as url:
        answer = httpx.get(
            tile_url(f"{url}/tiles/cog", CORNER.x, CORNER.y),
            params=render_query(url=f"{url}/data/{COG}"),
        )
        assert png_pixels(answer).shape == (256, 256, 4)
        item = f"{url}/tiles/collections/mosaics/items/speed-2024"
        assert httpx.get(f"{item}/info", params={"assets": "v"}).status_code == 200
        assert httpx.get(f"{url}/tiles/legend/speed").status_code == 200
        assert "/tiles/openapi.json" in httpx.get(f"{url}/tiles/docs").text
        tilejson = httpx.get(f"{url}/tiles/cog/WebMercatorQuad/tilejson.json", params={"url": COG})
        assert tilejson.json()["tiles"][0].startswith(f"{url}/tiles/cog/tiles/")


# -- served alone ------------------------------------------------------------------------------
def test_serve_only_tiles_and_the_uvicorn_factory(tiles_data: dict, tmp_path: Path) -> None:
    """`glacierflow serve --only tiles` and uvicorn's factory serve the tiles at the root,
    with the catalog from DATABASE_URL (a DSN without password: titiler-pgstac's own
    settings would fail on it)."""
    env = {"DATABASE_URL": tiles_data["dsn"], "GLACIERFLOW_DATA_DIR": str(tiles_data["data"])}
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "glacierflow.cli", "serve", "--only", "tiles", "--port",
             str(port)],
            env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    factory = "glacierflow.services.tiles:create_tiles_app_from_environment"
    try:
        with serving_process(factory, env) as (alone, _):
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, log.read_text()
                try:
                    httpx.get(f"http://127.0.0.1:{port}/legend/speed", timeout=2)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
            for base in (f"http://127.0.0.1:{port}", alone):
                tile = httpx.get(
                    tile_url(f"{base}/cog", CORNER.x, CORNER.y), params=render_query(url=COG)
                )
                assert png_pixels(tile).shape == (256, 256, 4)
                item = httpx.get(f"{base}/collections/mosaics/items/speed-2024/info?assets=v")
                assert item.status_code == 200, item.text
        assert "serving tiles on" in log.read_text()
    finally:
        server.terminate()
        server.wait(20)


def test_docs_work_offline(tiles_url: str) -> None:
    docs = httpx.get(f"{tiles_url}/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower()
    assert "/legend/{colormap_name}" in httpx.get(f"{tiles_url}/openapi.json").json()["paths"]


def test_catalog_database_away_is_503_and_cogs_still_serve(tiles_data: dict) -> None:
    settings = Settings(data_dir=tiles_data["data"], database_connect_timeout_s=0.5)
    nobody = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with serving(create_tiles_app(settings, nobody)) as url:
        start = time.monotonic()
        # an item no other test asked for: titiler-pgstac caches items for the process
        answer = httpx.get(f"{url}/collections/mosaics/items/never-asked/info?assets=v")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert "postgres" not in answer.text and time.monotonic() - start < 5
        tile = httpx.get(tile_url(f"{url}/cog", CORNER.x, CORNER.y), params=render_query(url=COG))
        assert png_pixels(tile).shape == (256, 256, 4)
