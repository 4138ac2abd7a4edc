"""The dashboard's profile tool in Debian's chromium against a real `glacierflow serve` on
demo-like data (a 12-layer cube, speeds varying by layer): a line drawn with the mouse on
the map gives the heatmap and the date chart of /profile's own answer, exports the API's
CSV, survives a share link; Escape cancels. Screenshots go to the basetemp's `screenshots/`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import test_dashboard
from playwright.sync_api import expect
from pyproj import Transformer
from test_dashboard import idle, said

from glacierflow.catalog.render import colour_index, speed_colormap

page = test_dashboard.page  # the fixture: a fresh dashboard, its console errors collected

# the profile as the page holds it
PROFILE = """() => {
  const p = window.glacierflow.profile;
  const source = window.glacierflow.map.getSource("profile");
  return { drawing: p.drawing, line: p.line, query: p.query, chosen: p.chosen,
    answer: p.answer, features: source ? source.serialize().data.features.length : 0 };
}"""

# the heatmap's pixel in the middle of every cell (answer row i, column j)
CELL_PIXELS = """() => {
  const p = window.glacierflow.profile;
  const ctx = document.getElementById("profile-heatmap").getContext("2d");
  return p.answer.mid_date.map((_, i) => p.answer.distance_m.map((_, j) => {
    const [x, y] = p.heatmap.centre(i, j);
    return Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3));
  }));
}"""

NO_DATA = [214, 219, 224]  # heatmap.js's colour of a cell without observation


@pytest.fixture(scope="module")
def vertices(served_region) -> list[tuple[float, float]]:
    """Three lon/lat vertices inside the cube: the region's line, with a bend below it."""
    ends = [tuple(map(float, pair.split())) for pair in served_region.line.split(",")]
    to_polar = Transformer.from_crs(4326, 3413, always_xy=True)
    (xa, ya), (xb, yb) = (to_polar.transform(*end) for end in ends)
    bend = Transformer.from_crs(3413, 4326, always_xy=True).transform(
        (xa + xb) / 2, (ya + yb) / 2 - 400
    )
    return [ends[0], bend, ends[1]]


def on_screen(page, vertices) -> list[tuple[float, float]]:
    """Fit the map to the vertices; their page coordinates."""
    page.evaluate(
        """(vs) => { const g = window.glacierflow;
          const lons = vs.map((v) => v[0]), lats = vs.map((v) => v[1]);
          const corners = [[Math.min(...lons), Math.min(...lats)],
            [Math.max(...lons), Math.max(...lats)]];
          g.map.fitBounds(corners, { padding: 120, duration: 0 }); }""",
        vertices,
    )
    page.wait_for_function("!window.glacierflow.map.isMoving()", timeout=10_000)
    box = page.locator("#map canvas").bounding_box()
    return [
        (box["x"] + x, box["y"] + y)
        for x, y in (
            page.evaluate("(v) => Object.values(window.glacierflow.map.project(v))", list(v))
            for v in vertices
        )
    ]


def draw_line(page, vertices) -> dict:
    """Profile mode, a click per vertex, a double-click on the last; the profile drawn."""
    spots = on_screen(page, vertices)
    page.click("#profile-mode")
    for x, y in spots[:-1]:
        page.mouse.click(x, y)
    page.mouse.dblclick(*spots[-1])
    page.wait_for_function("window.glacierflow.profile.answer", timeout=30_000)
    idle(page)
    return page.evaluate(PROFILE)


def api(server: str, query: str, **params) -> httpx.Response:
    url = httpx.URL(f"{server}/{query}").copy_merge_params(params)
    answer = httpx.get(url, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer


def expected_colour(v: float | None) -> list[int]:
    return NO_DATA if v is None else list(speed_colormap()[colour_index(v)][:3])


def test_a_drawn_line_draws_the_apis_profile(
    page, front_end_server: str, vertices, screenshots: Path, tmp_path: Path
) -> None:
    shown = draw_line(page, vertices)
    assert not shown["drawing"] and len(shown["line"]) == 3  # the double-click added none
    for (lon, lat), (want_lon, want_lat) in zip(shown["line"], vertices, strict=True):
        assert abs(lon - want_lon) < 1e-4 and abs(lat - want_lat) < 1e-4  # a screen pixel
    answer = api(front_end_server, shown["query"]).json()
    assert shown["answer"] == answer
    rows, columns = len(answer["mid_date"]), len(answer["distance_m"])
    assert rows == 12 and columns >= 15
    page.screenshot(path=screenshots / "dashboard_profile.png")
    # every cell in the speed colours of the tiles, at its value
    pixels = page.evaluate(CELL_PIXELS)
    assert len(pixels) == rows and all(len(row) == columns for row in pixels)
    expected = [[expected_colour(v) for v in row] for row in answer["values"]["v"]]
    assert pixels == expected
    assert sum(v is not None for row in answer["values"]["v"] for v in row) > rows * columns / 2
    # the layers' speeds differ (vx = 100 + 10 k): rows differ in colour
    assert len({tuple(row[-1]) for row in pixels}) > 6
    # a row clicked on the heatmap: its date's profile, as /profile answers for that date
    x, y = page.evaluate("window.glacierflow.profile.heatmap.centre(3, 2)")
    box = page.locator("#profile-heatmap").bounding_box()
    ratio = page.evaluate("window.devicePixelRatio")
    page.mouse.move(box["x"] + x / ratio, box["y"] + y / ratio)
    hover = page.locator("#profile-hover").inner_text()
    assert answer["mid_date"][3][:10] in hover and f"{answer['values']['v'][3][2]} m/yr" in hover
    marked = page.evaluate(
        "window.glacierflow.map.getSource('profile').serialize().data.features"
        ".filter((f) => f.properties.kind === 'hover').map((f) => f.geometry.coordinates)"
    )
    assert marked == [[answer["lon"][2], answer["lat"][2]]]  # the sample, on the map
    page.mouse.click(box["x"] + x / ratio, box["y"] + y / ratio)
    assert page.evaluate("window.glacierflow.profile.chosen") == 3
    assert page.locator("#profile-hover").inner_text() == hover  # still said after the redraw
    date = answer["mid_date"][3]
    that_day = api(front_end_server, shown["query"], start=date, end=date).json()
    assert that_day["mid_date"] == [date]
    drawn = page.evaluate("window.glacierflow.profile.chart.data[1].filter((v) => v != null)")
    assert drawn == [v for v in that_day["values"]["v"][0] if v is not None]
    assert page.locator("#profile-date-label").inner_text() == date[:10]
    # pointing at the chart says the value too
    x, y = page.evaluate(
        """(j) => { const u = window.glacierflow.profile.chart;
          const box = u.over.getBoundingClientRect();
          return [box.left + u.valToPos(u.data[0][j], "x"),
            box.top + u.valToPos(u.data[1][j], "y")]; }""",
        5,
    )
    page.mouse.move(x, y)
    said_there = page.locator("#profile-hover").inner_text()
    assert date[:10] in said_there and f"{answer['values']['v'][3][5]} m/yr" in said_there
    page.screenshot(path=screenshots / "dashboard_profile_date.png")
    # the date slider (keyboard): the next date
    page.focus("#profile-date")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("window.glacierflow.profile.chosen") == 4
    # exports: the API's CSV as it came, the API's NetCDF, a PNG of the heatmap
    for link, start in (("#profile-csv", b"distance,mid_date,"), ("#profile-netcdf", b"\x89HDF")):
        with page.expect_download() as started:
            page.click(link)
        saved = Path(started.value.path()).read_bytes()
        href = page.locator(link).evaluate("a => a.href")
        from_api = httpx.get(href, timeout=60)
        assert saved.startswith(start) and from_api.status_code == 200
        if link == "#profile-csv":
            assert saved == from_api.content
            assert saved == api(front_end_server, shown["query"], format="csv").content
    with page.expect_download() as started:
        page.click("#profile-png")
    assert Path(started.value.path()).read_bytes().startswith(b"\x89PNG")
    assert page.errors == []


def test_the_share_link_restores_the_line_and_date(
    page, chromium, front_end_server: str, vertices, screenshots: Path
) -> None:
    drawn = draw_line(page, vertices)
    page.evaluate("document.getElementById('profile-date').value = '7'")
    page.dispatch_event("#profile-date", "input")
    chosen = page.evaluate("window.glacierflow.profile.chosen")
    link = page.url
    assert "profile=" in link and "profile_date=" in link
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    try:
        other = context.new_page()
        errors = []
        other.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        other.goto(link)
        other.wait_for_function("window.glacierflow && window.glacierflow.ready", timeout=30_000)
        idle(other)
        restored = other.evaluate(PROFILE)
        assert restored["line"] == drawn["line"] and restored["chosen"] == chosen
        assert restored["answer"] == drawn["answer"] and restored["features"] == 4
        assert other.evaluate(CELL_PIXELS) == page.evaluate(CELL_PIXELS)
        # the line over the cubes' outlines, which are drawn too
        layers = other.evaluate("window.glacierflow.map.getLayersOrder()")
        assert "cube-outline" in layers and layers[-1] == "profile-hover"
        other.screenshot(path=screenshots / "dashboard_profile_shared.png")
        # out of range in a link: left out, as for the rest (one vertex left: no line)
        other.goto(f"{front_end_server}/#profile=999,0;-48.8,69.1;10,95&profile_date=yesterday")
        other.reload()
        other.wait_for_function("window.glacierflow && window.glacierflow.ready", timeout=30_000)
        assert other.evaluate("window.glacierflow.profile.line") is None
        assert other.locator("#profile").is_hidden()
        # at most 100 vertices are taken from a link
        many = ";".join(f"{lon:.5f},{lat:.5f}" for lon, lat in [vertices[0], vertices[2]] * 75)
        other.goto(f"{front_end_server}/#profile={many}")
        other.reload()
        other.wait_for_function("window.glacierflow && window.glacierflow.ready", timeout=30_000)
        idle(other)
        assert len(other.evaluate("window.glacierflow.profile.line")) == 100
        assert errors == []
    finally:
        context.close()


def test_escape_cancels_and_the_mode_is_keyboard_reachable(
    page, vertices, screenshots: Path
) -> None:
    spots = on_screen(page, vertices)
    page.focus("#profile-mode")
    page.keyboard.press("Enter")
    assert page.evaluate("window.glacierflow.profile.drawing")
    assert page.get_attribute("#profile-mode", "aria-pressed") == "true"
    for x, y in spots[:2]:
        page.mouse.click(x, y)
    # two vertices, the line between and the dashed line on to the pointer
    assert page.evaluate(PROFILE)["features"] == 4
    page.screenshot(path=screenshots / "dashboard_profile_drawing.png")
    page.keyboard.press("Escape")
    shown = page.evaluate(PROFILE)
    assert not shown["drawing"] and shown["line"] is None and shown["answer"] is None
    assert shown["features"] == 0
    assert page.get_attribute("#profile-mode", "aria-pressed") == "false"
    # out of the mode, a click on the map adds a point again
    page.mouse.click(*spots[2])
    page.wait_for_function("window.glacierflow.points.length === 1", timeout=10_000)
    idle(page)
    assert page.errors == []


def test_a_line_outside_the_cubes_bad_lines_and_empty_answers_say_so(
    page, vertices, screenshots: Path
) -> None:
    page.click("#profile-mode")
    form = page.locator("#profile-form input[name=line]")
    form.fill("10 10")
    form.press("Enter")
    expect_status(page, "a line needs at least two vertices")
    form.fill("10 10, 10.01 95")
    form.press("Enter")
    expect_status(page, '"10.01 95" is not "LON LAT" in range')
    form.fill("10 10, 10.01 10")
    form.press("Enter")
    idle(page)
    said(page, "No datacube covers any point of this line")
    assert page.locator("#profile-result").is_hidden()
    page.screenshot(path=screenshots / "dashboard_profile_outside.png")
    # a typed line inside the cube, then a date filter that leaves nothing
    form.fill(", ".join(f"{lon} {lat}" for lon, lat in vertices))
    form.press("Enter")
    page.wait_for_function("window.glacierflow.profile.answer", timeout=30_000)
    idle(page)
    assert page.locator("#profile-result").is_visible()
    page.fill("#filters input[name=start]", "2030-01-01")
    page.wait_for_function(
        "window.glacierflow.profile.answer && !window.glacierflow.profile.answer.mid_date.length",
        timeout=30_000,
    )
    idle(page)
    said(page, "No observations along this line with these filters")
    assert page.locator("#profile-result").is_hidden()
    assert "start=2030-01-01" in page.locator("#profile-csv").evaluate("a => a.href")
    # chromium logs the API's 404 for the line outside the cubes; nothing else went wrong
    assert page.errors == [
        "Failed to load resource: the server responded with a status of 404 (Not Found)"
    ]


def expect_status(page, text: str) -> None:
    expect(page.locator("#profile-status")).to_contain_text(text, timeout=10_000)
