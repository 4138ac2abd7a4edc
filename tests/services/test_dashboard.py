"""The dashboard at / in Debian's chromium against a real `glacierflow serve` on demo-like
data (a 12-layer cube: 8 Landsat 8 and 4 Sentinel-2A pairs): what a person sees and clicks
equals what the API answers. Screenshots are kept under the pytest basetemp's
`screenshots/`."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import (
    FRONT_END_MOSAIC_SHAPE,
    FRONT_END_MOSAICS,
    ServedRegion,
    glacierflow_serve,
    measured_pixel,
    serving,
)
from fastapi import FastAPI
from playwright.sync_api import expect
from pydantic import ValidationError

from glacierflow.services.dashboard import add_front_ends
from glacierflow.settings import Settings

SPEED_TILES = "/tiles/collections/mosaics/tiles/WebMercatorQuad/"
SPEED_OPACITY = "window.glacierflow.map.getPaintProperty('speed', 'raster-opacity')"
SPEED_VISIBILITY = "window.glacierflow.map.getLayoutProperty('speed', 'visibility')"

# observations drawn in the chart, by series label (the page's uPlot instance)
DRAWN = """() => {
  const u = window.glacierflow.chart;
  const drawn = {};
  u.series.forEach((s, i) => {
    if (i && s.kind === "observations") drawn[s.label] = u.data[i].filter((v) => v != null).length;
  });
  return drawn;
}"""

# what the page shows: points, filters, view, observations drawn
STATE = """() => {
  const g = window.glacierflow;
  const f = document.getElementById("filters").elements;
  const form = Object.fromEntries(["variable", "colour", "min_dt", "max_dt", "start", "end"]
    .map((name) => [name, f[name].value]));
  const centre = g.map.getCenter();
  const observations = (s, i) => (i && s.kind === "observations" ? g.chart.data[i] : []);
  const drawn = g.chart ? g.chart.series.flatMap(observations).filter((v) => v != null).length : 0;
  return {
    form: { ...form, fit: f.fit.checked },
    points: g.points.map((p) => [p.lon, p.lat]),
    zoom: g.map.getZoom(), center: [centre.lng, centre.lat], drawn,
  };
}"""


@pytest.fixture(scope="module")
def measured(granule_files: dict[str, Path]) -> tuple[float, float]:
    """(lon, lat) of a pixel every layer of the served cube measured (all its layers are
    made from the july granule)."""
    from pyproj import Transformer

    x, y = measured_pixel(granule_files["july"])
    return Transformer.from_crs(3413, 4326, always_xy=True).transform(x, y)


def open_page(context, url: str):
    """A page of `context` at `url`, ready (settings, cube outlines and mosaic years read);
    `page.errors` collects console errors and uncaught exceptions, `page.tiles` the URLs of
    the speed tiles it asked for."""
    page = context.new_page()
    page.errors = []
    page.tiles = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(f"uncaught: {e}"))
    page.on("request", lambda r: page.tiles.append(r.url) if SPEED_TILES in r.url else None)
    page.goto(url)
    page.wait_for_function("window.glacierflow && window.glacierflow.ready", timeout=30_000)
    return page


@contextmanager
def fresh_page(chromium, url: str) -> Iterator:
    """A page at `url` in a browser context of its own at 1280 x 800, ready (see
    `open_page`); the context is closed after."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    try:
        yield open_page(context, url)
    finally:
        context.close()


@pytest.fixture
def page(chromium, front_end_server: str) -> Iterator:
    """A fresh page at 1280 x 800 on the dashboard, ready (see `open_page`)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    try:
        yield open_page(context, front_end_server + "/")
    finally:
        context.close()


def idle(page) -> None:
    """Until no request of the page's is pending (the loading indicator is hidden)."""
    page.wait_for_function("document.getElementById('loading').hidden", timeout=30_000)


def add_point(page, lon: float, lat: float) -> None:
    """Type lon/lat and press Add point, as a person would."""
    page.fill("#goto input[name=lon]", str(lon))
    page.fill("#goto input[name=lat]", str(lat))
    page.click("#goto button[value=add]")
    idle(page)


def said(page, text: str) -> None:
    """The message under the header says `text` (waiting for it: it follows the fetches)."""
    expect(page.locator("#message")).to_contain_text(text, timeout=10_000)


def click_map_at(page, lon: float, lat: float) -> None:
    """Go to (lon, lat) with the form, zoom in close (one screen pixel ~2 m: the click must
    hit the same 120 m cube pixel), then click the map there with the mouse."""
    page.fill("#goto input[name=lon]", str(lon))
    page.fill("#goto input[name=lat]", str(lat))
    page.click("#goto button[value=goto]")
    page.wait_for_function("!window.glacierflow.map.isMoving()", timeout=10_000)
    page.evaluate("window.glacierflow.map.setZoom(15)")
    x, y = page.evaluate(
        "([lon, lat]) => Object.values(window.glacierflow.map.project([lon, lat]))", [lon, lat]
    )
    box = page.locator("#map canvas").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_function("window.glacierflow.points.length > 0", timeout=10_000)
    idle(page)


def api_series(server: str, lon: float, lat: float, **params) -> dict:
    answer = httpx.get(
        f"{server}/timeseries", params={"lon": lon, "lat": lat, **params}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_page_loads_with_no_console_errors(page, screenshots: Path) -> None:
    page.wait_for_function(  # the cube outlines' first frame
        "window.glacierflow.map.querySourceFeatures('cubes').length >= 1", timeout=10_000
    )
    speed_drawn(page)
    page.screenshot(path=screenshots / "dashboard_loaded.png")
    assert page.errors == []
    assert page.locator("#message").is_hidden()
    for link in ("browser/", "stac/", "docs", "redoc", "openapi.json", "healthz"):
        assert page.locator(f'#help a[href="{link}"]').count() == 1, link


def test_a_click_draws_the_apis_series_by_mission(
    page, front_end_server: str, measured: tuple[float, float], screenshots: Path
) -> None:
    click_map_at(page, *measured)
    point = page.evaluate(
        "(({lon, lat, status}) => ({lon, lat, status}))(window.glacierflow.points[0])"
    )
    assert point["status"] == "ok"
    answer = api_series(front_end_server, point["lon"], point["lat"], fit="true")
    missions = answer["time_series"]["mission_img1"]
    assert answer["count"] == 12 and missions.count("L") == 8 and missions.count("S") == 4
    page.screenshot(path=screenshots / "dashboard_click.png")
    drawn = page.evaluate(DRAWN)
    assert drawn == {"P1 Landsat 8/9": 8, "P1 Sentinel-2": 4}
    assert sum(drawn.values()) == answer["count"]
    assert "12 observations" in page.locator("#points li").first.inner_text()
    cube = page.locator("#points li").first.get_by_role("link", name="cube", exact=True)
    item = answer["cube"]["name"].removesuffix(".zarr")
    assert cube.get_attribute("href") == f"browser/collections/cubes/items/{item}"
    # the values drawn are the API's, for each variable the switch offers
    for variable in ("v", "vx", "vy", "v_error"):
        page.select_option("#filters select[name=variable]", variable)
        values = page.evaluate(
            "window.glacierflow.chart.data.slice(1).flatMap((column, i) =>"
            " window.glacierflow.chart.series[i + 1].kind === 'observations' ? column : [])"
            ".filter((v) => v != null)"
        )
        assert sorted(values) == sorted(answer["time_series"][variable]), variable
    assert page.errors == []


def test_the_csv_and_netcdf_links_download_the_apis_files(
    page, front_end_server: str, measured: tuple[float, float], tmp_path: Path
) -> None:
    add_point(page, *measured)
    row = page.locator("#points li").first
    for label, expected_start in (("CSV", b"mid_date,lat,lon,v [m/yr]"), ("NetCDF", b"\x89HDF")):
        link = row.get_by_role("link", name=label, exact=True)
        with page.expect_download() as started:
            link.click()
        saved = Path(started.value.path()).read_bytes()
        api = httpx.get(link.evaluate("a => a.href"), timeout=30)
        assert api.status_code == 200
        assert saved.startswith(expected_start), label
        if label == "CSV":  # NetCDF files carry their own creation time
            assert saved == api.content
        else:
            assert len(saved) == len(api.content)
    # all points at once: the API's POST answer, as it came
    add_point(page, round(measured[0] + 0.0003, 5), measured[1])
    with page.expect_download() as started:
        page.click("#export-csv")
    saved = Path(started.value.path()).read_text()
    points = page.evaluate("window.glacierflow.points.map((p) => [p.lon, p.lat])")
    api = httpx.post(
        f"{front_end_server}/timeseries",
        json={"points": points, "format": "csv", "fit": True},
        timeout=30,
    )
    assert saved == api.text
    assert saved.count("\n2023-") == 24  # both points' 12 observations


def test_filters_refetch_and_an_empty_result_says_so(
    page, measured: tuple[float, float], screenshots: Path
) -> None:
    add_point(page, *measured)
    maximum = page.locator("#filters input[name=max_dt]")
    maximum.focus()
    page.keyboard.press("Home")  # 1 day: shorter than every 16-day pair
    page.wait_for_timeout(400)  # the filters' debounce
    idle(page)
    said(page, "No observations match these filters at P1")
    assert page.evaluate("window.glacierflow.chart") is None  # nothing to draw
    assert "no observations here" in page.locator("#points li").first.inner_text()
    page.screenshot(path=screenshots / "dashboard_empty_filter.png")
    page.keyboard.press("End")
    page.wait_for_timeout(400)
    idle(page)
    assert sum(page.evaluate(DRAWN).values()) == 12
    # a date range that keeps 2023's first quarter
    page.fill("#filters input[name=start]", "2023-01-01")
    page.fill("#filters input[name=end]", "2023-03-31")
    page.wait_for_timeout(400)
    idle(page)
    dates = page.evaluate("window.glacierflow.points[0].answer.time_series.mid_date")
    assert dates and all("2023-01" <= d[:7] <= "2023-03" for d in dates)
    assert sum(page.evaluate(DRAWN).values()) == len(dates)


def test_a_point_outside_every_cube_says_so(page, screenshots: Path) -> None:
    add_point(page, 10.0, 10.0)
    said(page, "No datacube covers lon 10, lat 10")
    assert page.locator("#points li").count() == 0
    assert page.locator(".maplibregl-marker").count() == 0
    page.screenshot(path=screenshots / "dashboard_outside.png")


def test_twenty_points_with_colours_and_remove_buttons(
    page, measured: tuple[float, float], screenshots: Path
) -> None:
    for k in range(20):
        add_point(page, round(measured[0] + 0.0005 * k, 5), measured[1])
    assert page.locator("#points li").count() == 20
    colours = page.evaluate("window.glacierflow.points.map((p) => p.colour)")
    assert len(set(colours)) == 20
    add_point(page, *measured)
    said(page, "At most 20 points")
    assert page.locator(".maplibregl-marker").count() == 20
    page.select_option("#filters select[name=colour]", "point")
    page.screenshot(path=screenshots / "dashboard_20_points.png")
    page.get_by_role("button", name="Remove P3", exact=True).click()
    assert page.locator("#points li").count() == 19
    assert page.locator(".maplibregl-marker").count() == 19
    assert "P3 " not in " ".join(page.evaluate(DRAWN))
    assert page.errors == []


# -- serving, without a browser ----------------------------------------------------------------
def test_the_dashboards_settings_reach_the_page(front_end_server: str) -> None:
    config = httpx.get(f"{front_end_server}/dashboard/config.json").json()
    assert config == {
        "cubes_collection": "cubes",
        "granules_collection": "granules",
        "mosaics_collection": "mosaics",
        "basemap_url": None,
        "basemap_attribution": "",
        "max_points": 100,
    }
    page = httpx.get(f"{front_end_server}/")
    assert page.status_code == 200 and 'src="dashboard/main.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN


def test_a_basemap_must_be_a_tile_url() -> None:
    url = "https://tiles.example.org/{z}/{x}/{y}.png"
    assert Settings(dashboard_basemap_url=url).dashboard_basemap_url == url
    for bad in ("https://tiles.example.org/tile.png", "ftp://x/{z}/{x}/{y}"):
        with pytest.raises(ValidationError, match=r"\{z\}, \{x\} and \{y\}"):
            Settings(dashboard_basemap_url=bad)


def test_unbuilt_front_ends_say_how_to_build_them(tmp_path: Path) -> None:
    app = FastAPI()
    add_front_ends(app, Settings(), dashboard=tmp_path / "none", browser=tmp_path / "none")
    with serving(app) as url:
        for path, folder in (
            ("/", "services/dashboard"),
            ("/browser/", "services/dashboard/stac-browser"),
        ):
            answer = httpx.get(url + path)
            assert answer.status_code == 503
            assert f"npm --prefix {folder} ci" in answer.text and "./run demo" in answer.text
            assert str(tmp_path) not in answer.text
        assert json.loads(httpx.get(f"{url}/dashboard/config.json").text)["max_points"] == 100


def test_the_share_link_restores_view_points_and_filters(
    page, chromium, front_end_server: str, measured: tuple[float, float], screenshots: Path
) -> None:
    add_point(page, *measured)
    add_point(page, round(measured[0] + 0.0003, 5), measured[1])
    page.select_option("#filters select[name=variable]", "vx")
    page.select_option("#filters select[name=colour]", "point")
    page.locator("#filters input[name=min_dt]").focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")  # 4 days
    page.fill("#filters input[name=start]", "2023-02-01")
    page.wait_for_timeout(400)
    idle(page)
    page.click("#share")
    said(page, "link to this view")
    link = page.url
    shown = page.evaluate(STATE)
    assert shown["points"] == [
        [*map(lambda v: round(v, 5), measured)],
        [round(measured[0] + 0.0003, 5), round(measured[1], 5)],
    ]
    assert 0 < shown["drawn"] < 24  # February on: some of each point's 12

    other = chromium.new_context(viewport={"width": 1280, "height": 800})
    try:
        opened = other.new_page()
        opened.goto(link)
        opened.wait_for_function("window.glacierflow && window.glacierflow.ready", timeout=30_000)
        idle(opened)
        restored = opened.evaluate(STATE)
        opened.screenshot(path=screenshots / "dashboard_shared_link.png")
    finally:
        other.close()
    assert restored["form"] == shown["form"] == {
        "variable": "vx", "colour": "point", "min_dt": "4", "max_dt": "546",
        "start": "2023-02-01", "end": "", "fit": True,
    }  # fmt: skip
    assert restored["points"] == shown["points"] and restored["drawn"] == shown["drawn"]
    assert restored["zoom"] == pytest.approx(shown["zoom"], abs=0.01)
    assert restored["center"] == pytest.approx(shown["center"], abs=1e-4)


def test_a_shared_link_with_nonsense_is_ignored(page, front_end_server: str) -> None:
    page.goto(f"{front_end_server}/#map=99/1000/x&points=1,2,3;500,1;abc&variable=evil&min_dt=-5")
    page.reload()
    page.wait_for_function("window.glacierflow && window.glacierflow.ready", timeout=30_000)
    idle(page)
    state = page.evaluate(STATE)
    assert state["points"] == [] and state["form"]["variable"] == "v"
    assert state["form"]["min_dt"] == "1"
    assert page.errors == []


def test_points_imported_from_a_csv_file(
    page, measured: tuple[float, float], tmp_path: Path, screenshots: Path
) -> None:
    lon, lat = measured
    points = tmp_path / "points.csv"
    points.write_text(
        f"name;latitude;longitude\nA;{lat};{lon}\nB;{lat};{lon + 0.0003}\nC;abc;1\nD;95;10\n"
    )
    page.set_input_files("#import-csv", points)
    page.wait_for_function("window.glacierflow.points.length === 2", timeout=10_000)
    idle(page)
    assert page.evaluate(STATE)["drawn"] == 24
    said(page, "From points.csv: line(s) 4, 5 are not lon,lat in range")
    page.screenshot(path=screenshots / "dashboard_csv_import.png")
    headless = tmp_path / "bare.csv"
    headless.write_text("\n".join(f"{lon + 0.0001 * k},{lat}" for k in range(25)))
    page.set_input_files("#import-csv", headless)
    page.wait_for_function("window.glacierflow.points.length === 20", timeout=30_000)
    idle(page)
    said(page, "7 point(s) left out: at most 20 at once")
    no_columns = tmp_path / "names.csv"
    no_columns.write_text("place,x,y\nA,1,2\n")
    page.set_input_files("#import-csv", no_columns)
    said(page, "names.csv cannot be read: its header has no lon")


def test_granule_footprints_of_the_view_on_demand(
    page, front_end_server: str, screenshots: Path
) -> None:
    page.click("#footprints")
    idle(page)
    found = page.evaluate("window.glacierflow.footprints")
    search = httpx.get(
        f"{front_end_server}/stac/search",
        params={"collections": "granules", "bbox": ",".join(map(str, found["bbox"])), "limit": 100},
    ).json()
    assert found["shown"] == len(search["features"]) >= 3 and not found["more"]
    assert page.evaluate("window.glacierflow.map.querySourceFeatures('footprints').length") > 0
    said(page, f"{found['shown']} granule footprint(s) in view")
    page.screenshot(path=screenshots / "dashboard_footprints.png")


def test_a_chosen_observation_links_its_granule(
    page, front_end_server: str, measured: tuple[float, float], screenshots: Path
) -> None:
    add_point(page, *measured)
    # the chart position of P1's first Sentinel-2 observation, clicked with the mouse
    x, y, when = page.evaluate(
        """() => {
          const u = window.glacierflow.chart;
          const i = u.series.findIndex((s) => s.label === "P1 Sentinel-2");
          const at = u.data[i].findIndex((v) => v != null);
          return [u.valToPos(u.data[0][at], "x"), u.valToPos(u.data[i][at], "y"), u.data[0][at]];
        }"""
    )
    over = page.locator("#chart .u-over").bounding_box()
    page.mouse.move(over["x"] + x, over["y"] + y)
    page.mouse.click(over["x"] + x, over["y"] + y)
    granule = page.locator("#observation a")
    granule.wait_for(timeout=10_000)
    answer = api_series(front_end_server, *measured, variables="granule_url,mission_img1")
    series = answer["time_series"]
    chosen = [d[:19] for d in series["mid_date"]].index(
        datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    )
    assert series["mission_img1"][chosen] == "S"
    assert granule.get_attribute("href") == series["granule_url"][chosen]
    assert "S2A, 16 days" in page.locator("#observation").inner_text()
    page.screenshot(path=screenshots / "dashboard_observation.png")


def test_usable_on_a_phone_sized_viewport(
    page, measured: tuple[float, float], screenshots: Path
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    add_point(page, *measured)
    page.wait_for_timeout(400)  # the chart follows the new width
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    chart = page.locator("#chart canvas").bounding_box()
    assert chart["width"] <= 390
    for control in ("#goto button[value=add]", "#filters select[name=variable]", "#share"):
        assert page.locator(control).is_visible(), control
    page.screenshot(path=screenshots / "dashboard_phone.png")
    assert page.errors == []


# -- the speed layer: the mosaics of a year from /tiles ----------------------------------------
def speed_drawn(page) -> None:
    """Until the speed tiles in view are loaded and drawn."""
    page.wait_for_function(
        "(() => { const m = window.glacierflow.map; return m.getSource('speed')"
        " && m.isSourceLoaded('speed') && m.areTilesLoaded() && !m.isMoving(); })()",
        timeout=30_000,
    )
    page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")


def mosaic_centre(year: int) -> tuple[float, float]:
    """(x, y) in EPSG:3413 of the centre of the front end's mosaic of `year`: the middle of
    its glacier's fast centre line (~2,000 m/yr)."""
    (x0, y0), _ = FRONT_END_MOSAICS[year]
    rows, cols = FRONT_END_MOSAIC_SHAPE
    return x0 + 120.0 * cols / 2, y0 - 120.0 * rows / 2


def mosaic_speed(
    region: ServedRegion, year: str, lon: float, lat: float
) -> tuple[float, tuple[float, float]]:
    """The speed the Web-Mercator COG of `year` ('2024', '0000') holds at (lon, lat), and
    the (lon, lat) of that pixel's centre."""
    import rasterio
    from pyproj import Transformer

    cog = region.data_dir / "mosaics" / f"ITS_LIVE_velocity_120m_FRONT_{year}_v02_v_3857.tif"
    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(lon, lat)
    with rasterio.open(cog) as src:
        row, col = src.index(x, y)
        value = src.read(1, window=((row, row + 1), (col, col + 1)))[0, 0]
        centre = src.xy(row, col)
    return float(value), Transformer.from_crs(3857, 4326, always_xy=True).transform(*centre)


def legend_rgb(legend: dict, speed: float) -> np.ndarray:
    """The colour the tile server's legend gives `speed` (its stop's [min, max))."""
    for stop in legend["stops"]:
        if (stop["min"] is None or speed >= stop["min"]) and (
            stop["max"] is None or speed < stop["max"]
        ):
            return np.array([int(stop["color"][i : i + 2], 16) for i in (1, 3, 5)])
    raise AssertionError(f"no legend stop holds {speed}")


def map_pixels(page, lonlats: list[tuple[float, float]], path: Path | None = None) -> list:
    """The RGB drawn at each (lon, lat) on the map (a screenshot of its canvas; the median of
    the 3 x 3 pixels around the point), and the screenshot (RGB array)."""
    from PIL import Image

    speed_drawn(page)
    canvas = page.locator("#map canvas")
    shot = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")).astype(int)
    if path:
        page.screenshot(path=path)
    ratio = shot.shape[1] / canvas.bounding_box()["width"]
    colours = []
    for lon, lat in lonlats:
        x, y = page.evaluate(
            "([lon, lat]) => Object.values(window.glacierflow.map.project([lon, lat]))", [lon, lat]
        )
        r, c = round(y * ratio), round(x * ratio)
        colours.append(np.median(shot[r - 1 : r + 2, c - 1 : c + 2].reshape(-1, 3), axis=0))
    return colours, shot


def to_lonlat(x: float, y: float) -> tuple[float, float]:
    from pyproj import Transformer

    return Transformer.from_crs(3413, 4326, always_xy=True).transform(x, y)


def set_range(page, selector: str, value: int) -> None:
    """Move a slider to `value` with the keyboard (Home, then steps to the right)."""
    slider = page.locator(selector)
    slider.focus()
    page.keyboard.press("Home")
    for _ in range(value // int(slider.get_attribute("step") or 1)):
        page.keyboard.press("ArrowRight")
    assert slider.input_value() == str(value)


def test_speed_tiles_are_drawn_in_the_legends_colours(
    page, front_end_server: str, front_end_region: ServedRegion, screenshots: Path
) -> None:
    legend = httpx.get(f"{front_end_server}/tiles/legend/speed").json()
    centre = to_lonlat(*mosaic_centre(2024))
    outside = to_lonlat(mosaic_centre(2024)[0] + 30_000, mosaic_centre(2024)[1])  # in the cube
    speed, _ = mosaic_speed(front_end_region, "2024", *centre)
    assert 1800 < speed < 2200
    expected = legend_rgb(legend, speed)
    form = page.locator("#speed")
    assert form.locator("select[name=year]").input_value() == "2024"  # the latest year
    options = form.locator("select[name=year] option").all_inner_texts()
    assert options == ["2024", "2023", "climatology 2023\u20132024"]
    assert form.locator(".ticks").inner_text().split() == ["1", "10", "100", "1,000", "10,000"]
    assert "m/yr" in form.locator(".legend .title").inner_text()

    (_, beside), shot = map_pixels(page, [centre, outside], screenshots / "dashboard_speed.png")
    assert page.tiles and all("filter=year%3D2024" in url for url in page.tiles)
    assert all("assets=v_3857" in url for url in page.tiles)
    # the glacier is coloured: many pixels far from the map's background and the cube tint
    plain = np.abs(shot - beside).sum(axis=2) > 60
    assert plain.sum() > 5_000
    set_range(page, "#speed input[name=opacity]", 100)
    (opaque,), _ = map_pixels(page, [centre])
    assert np.abs(opaque - expected).max() <= 12, (opaque, expected)
    set_range(page, "#speed input[name=opacity]", 50)
    (half,), _ = map_pixels(page, [centre])
    page.check("#speed input[name=show]")
    page.uncheck("#speed input[name=show]")
    (hidden,), _ = map_pixels(page, [centre], screenshots / "dashboard_speed_hidden.png")
    assert np.abs(hidden - beside).max() <= 3  # only the cube's tint where the glacier was
    assert np.abs(half - (expected + hidden) / 2).max() <= 12, (half, expected, hidden)
    assert "speed=0" in page.url and "opacity=50" in page.url
    assert page.errors == []


def test_another_year_asks_for_its_tiles_and_draws_them(
    page, front_end_region: ServedRegion, front_end_server: str, screenshots: Path
) -> None:
    legend = httpx.get(f"{front_end_server}/tiles/legend/speed").json()
    # one pixel of the 2023 mosaic, close up (a pixel ~9 screen pixels wide)
    speed, centre = mosaic_speed(front_end_region, "2023", *to_lonlat(*mosaic_centre(2024)))
    assert 50 < speed < 400  # the 2023 glacier lies further north: its margin is here
    page.evaluate("(centre) => window.glacierflow.map.jumpTo({center: centre, zoom: 12})", centre)
    set_range(page, "#speed input[name=opacity]", 100)
    (before,), _ = map_pixels(page, [centre])
    page.tiles.clear()
    page.select_option("#speed select[name=year]", "2023")
    (drawn,), _ = map_pixels(page, [centre], screenshots / "dashboard_speed_2023.png")
    assert page.tiles and all("filter=year%3D2023" in url for url in page.tiles)
    assert np.abs(drawn - legend_rgb(legend, speed)).max() <= 12, (drawn, speed)
    assert np.abs(drawn - before).max() > 50  # 2024's fast centre line was here
    page.tiles.clear()
    page.select_option("#speed select[name=year]", "0000")
    map_pixels(page, [centre])
    assert page.tiles and all("filter=year%3D0" in url for url in page.tiles)
    assert "year=0000" in page.url
    assert page.errors == []


def test_the_share_link_restores_the_speed_layer(page, chromium, front_end_server: str) -> None:
    page.select_option("#speed select[name=year]", "2023")
    set_range(page, "#speed input[name=opacity]", 40)
    page.click("#share")
    said(page, "link to this view")
    link = page.url
    with fresh_page(chromium, link) as opened:
        speed_drawn(opened)
        form = opened.locator("#speed")
        assert form.locator("select[name=year]").input_value() == "2023"
        assert form.locator("input[name=opacity]").input_value() == "40"
        assert form.locator("input[name=show]").is_checked()
        assert opened.evaluate(SPEED_OPACITY) == pytest.approx(0.4)
        assert opened.tiles and all("filter=year%3D2023" in url for url in opened.tiles)
        # a year the catalog has no mosaic of: the latest, and the control says so
        opened.goto(link.replace("year=2023", "year=1999").replace("opacity=40", "opacity=400"))
        opened.reload()
        opened.wait_for_function("window.glacierflow && window.glacierflow.ready", timeout=30_000)
        assert form.locator("select[name=year]").input_value() == "2024"
        assert form.locator("input[name=opacity]").input_value() == "80"
        expect(form.locator(".note")).to_have_text("No mosaic of 1999: showing 2024.")
        opened.select_option("#speed select[name=year]", "0000")
        assert form.locator(".note").is_hidden()
        assert opened.errors == []


def serve_url(region: ServedRegion, tmp_path_factory, name: str) -> Iterator[str]:
    """`glacierflow serve` over `region` (its log in a new folder `name`): its URL."""
    log = tmp_path_factory.mktemp(name) / "serve.log"
    with glacierflow_serve(region, log=log) as process:
        yield process.url


@pytest.fixture(scope="module")
def no_mosaics_server(served_region: ServedRegion, tmp_path_factory) -> Iterator[str]:
    """`glacierflow serve` over the served region, whose catalog has no mosaics."""
    yield from serve_url(served_region, tmp_path_factory, "no-mosaics-serve")


def test_without_mosaics_the_control_says_so(
    chromium, no_mosaics_server: str, screenshots: Path
) -> None:
    with fresh_page(chromium, no_mosaics_server + "/") as page:
        form = page.locator("#speed")
        expect(form.locator(".note")).to_have_text(
            "No mosaics in the catalog yet: glacierflow mosaic build makes them."
        )
        for control in ("show", "year", "opacity"):
            assert form.locator(f"[name={control}]").is_disabled(), control
        assert form.locator(".legend").is_hidden()
        page.wait_for_timeout(500)
        page.screenshot(path=screenshots / "dashboard_no_mosaics.png")
        assert page.tiles == [] and page.errors == []
        assert page.locator("#message").is_hidden()
        assert "year=" not in page.url


def test_the_main_controls_are_reached_and_worked_with_the_keyboard(
    page, measured: tuple[float, float]
) -> None:
    """Tab from the top of the page reaches every control, and each works from the keyboard."""
    reached = []
    page.locator("body").focus()
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate(
                "(() => { const e = document.activeElement; return e.name || e.id"
                " || e.getAttribute('aria-label') || e.textContent.trim(); })()"
            )
        )
    for control in (
        "lon", "lat", "action", "footprints", "share", "Help & API", "show", "year", "opacity",
        "Zoom in", "variable", "colour", "fit", "min_dt", "max_dt", "start", "end", "import-csv",
    ):  # fmt: skip
        assert control in reached, (control, reached)
    assert reached.index("lon") < reached.index("show") < reached.index("variable")
    # a point typed in and added, Enter on the button
    page.locator("#goto input[name=lon]").focus()
    page.keyboard.type(str(round(measured[0], 5)))
    page.keyboard.press("Tab")
    page.keyboard.type(str(round(measured[1], 5)))
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Add point"
    page.keyboard.press("Enter")
    page.wait_for_function("window.glacierflow.points.length === 1", timeout=10_000)
    idle(page)
    # the speed layer: another year, hidden and shown again, dimmed
    page.locator("#speed select[name=year]").focus()
    page.keyboard.press("ArrowDown")
    assert page.locator("#speed select[name=year]").input_value() == "2023"
    assert "year=2023" in page.url
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Space")
    assert page.evaluate(SPEED_VISIBILITY) == "none"
    page.keyboard.press("Space")
    assert page.evaluate(SPEED_VISIBILITY) == "visible"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Home")
    assert page.evaluate(SPEED_OPACITY) == 0
    # the chart's variable
    page.locator("#filters select[name=variable]").focus()
    page.keyboard.press("ArrowDown")
    assert page.evaluate("window.glacierflow.chart.series[0].label") is not None
    assert page.locator("#filters select[name=variable]").input_value() == "vx"
    assert page.errors == []


@pytest.fixture(scope="module")
def broken_mosaic_server(
    front_end_region: ServedRegion, new_catalog, tmp_path_factory
) -> Iterator[str]:
    """`glacierflow serve` on a catalog whose one mosaic's Web-Mercator COG was damaged after
    it was catalogued (the tile server cannot read it: 500)."""
    from mosaic_products import write_mosaic

    from glacierflow.catalog.loader import load_mosaics
    from glacierflow.settings import Settings

    settings = Settings(data_dir=front_end_region.data_dir)
    folder = settings.data_dir / "broken-mosaics"
    products = write_mosaic(folder, "BROKEN", 2024, origin=FRONT_END_MOSAICS[2024][0])
    dsn = new_catalog("front_end_broken")
    load_mosaics(dsn, [products], "mosaics", settings.data_href)
    products.web_mercator.write_bytes(b"not a GeoTIFF")
    region = dataclasses.replace(front_end_region, dsn=dsn)
    yield from serve_url(region, tmp_path_factory, "broken-mosaic-serve")


def test_speed_tiles_the_server_cannot_draw_are_said(
    chromium, broken_mosaic_server: str, screenshots: Path
) -> None:
    with fresh_page(chromium, broken_mosaic_server + "/") as page:
        said(page, "The speed tiles of 2024 could not be drawn (the tile server answered 500).")
        idle(page)  # the loading indicator goes once the map has given up
        page.screenshot(path=screenshots / "dashboard_speed_broken.png")
        assert page.tiles
        # chromium's own line per failed request, nothing else
        assert all("status of 500" in error for error in page.errors), page.errors
