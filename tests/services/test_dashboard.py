"""The dashboard at / in Debian's chromium against a real `glacierflow serve` on demo-like
data (a 12-layer cube: 8 Landsat 8 and 4 Sentinel-2A pairs): what a person sees and clicks
equals what the API answers. Screenshots are kept under the pytest basetemp's
`screenshots/`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from conftest import measured_pixel, serving
from fastapi import FastAPI
from playwright.sync_api import expect
from pydantic import ValidationError

from glacierflow.services.dashboard import add_front_ends
from glacierflow.settings import Settings

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


@pytest.fixture
def page(chromium, front_end_server: str) -> Iterator:
    """A fresh page at 1280 x 800 on the dashboard, ready (settings and cube outlines read);
    `page.errors` collects console errors and uncaught exceptions."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(f"uncaught: {e}"))
    page.goto(front_end_server + "/")
    page.wait_for_function("window.glacierflow && window.glacierflow.ready", timeout=30_000)
    try:
        yield page
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
    page.wait_for_timeout(500)  # the cube outlines' first frame
    page.screenshot(path=screenshots / "dashboard_loaded.png")
    assert page.errors == []
    assert page.locator("#message").is_hidden()
    outlines = page.evaluate("window.glacierflow.map.querySourceFeatures('cubes').length")
    assert outlines >= 1
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
