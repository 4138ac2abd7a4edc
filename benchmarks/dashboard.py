"""The dashboard in Debian's chromium, timed by the page itself (Performance API): first
load (cold cache, loopback) and click to chart for a point of a 20,000-layer cube, against
the same /timeseries request from Python in the same run.

    .venv/bin/python benchmarks/dashboard.py [--layers 20000] [--points 10] [--loads 5]

1. Writes cube_timeseries.py's synthetic cube (a seasonal speed field in a 50 x 50-pixel
   window, 30 % of values empty), catalogs it and runs `glacierflow serve` (one worker,
   as a person would) with the built dashboard.
2. First load: a fresh browser context each time (no cache): the page's load event and
   the moment it is usable (its settings, the cube outlines and the mosaics' years read,
   the outlines drawn); first with no mosaics (the baseline), then with a 2024 speed
   mosaic over the cube's tile catalogued (a Web-Mercator COG, 1 to 10,000 m/yr), and
   the moment the speed tiles in view are drawn. One page load before each, uncounted,
   warms the server (its first searches, its first tiles).
3. Click to chart, once the map is drawn (speed tiles too): a point typed in and added
   (the path a map click takes), from the
   handler's start to the frame that shows the chart (annual values and seasonal fit
   included, as the page asks by default); the /timeseries request inside it (Resource
   Timing) and the same request from httpx. One point at a time (removed after).
Uses DATABASE_URL when set, else a private cluster in a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cube_timeseries import TILE, WINDOW, build, lonlat, synthetic_layers
from support import (
    catalog_server,
    chromium_browser,
    fresh_catalog,
    serve,
    speed_item,
    write_speed_cog,
)

from glacierflow.catalog.loader import load_cubes, load_items
from glacierflow.processing.cubes.layout import CUBE_LAYOUT
from glacierflow.settings import Settings

SERVE = (
    "from glacierflow.services.server import run\n"
    "from glacierflow.settings import Settings\n"
    "run(Settings(), {dsn!r}, '127.0.0.1', {{port}}, say=lambda _: None, workers=1)\n"
)
CLICK = """(id) => {
  const [asked] = performance.getEntriesByName(`point-${id}-asked`);
  const [drawn] = performance.getEntriesByName(`point-${id}-drawn`);
  const fetches = performance.getEntriesByType("resource");
  const last = fetches.filter((e) => e.name.includes("/timeseries?")).pop();
  return [drawn.startTime - asked.startTime, last.responseEnd - last.startTime];
}"""


SPEED_DRAWN = """() => {
  const m = window.glacierflow.map;
  const drawn = m.getSource("speed") && m.isSourceLoaded("speed") && m.areTilesLoaded();
  return drawn ? performance.now() : 0;
}"""


def speed_mosaic(data_dir: Path) -> dict:
    """A 2024 speed mosaic over the cube's tile: a Web-Mercator COG (log-uniform speeds
    across its columns), and its item for the mosaics collection, as the dashboard reads it."""
    from pyproj import Transformer
    from rasterio.transform import from_bounds

    to_lonlat = Transformer.from_crs(3413, 4326, always_xy=True)
    west, south, east, north = to_lonlat.transform_bounds(
        TILE.x[0], TILE.y[-1], TILE.x[-1], TILE.y[0]
    )
    left, bottom, right, top = Transformer.from_crs(4326, 3857, always_xy=True).transform_bounds(
        west, south, east, north
    )
    side = 2048
    speed = np.repeat(10 ** np.linspace(0.0, 4.0, side)[None, :], side, axis=0)
    path = data_dir / "mosaics" / "speed_2024_v_3857.tif"
    path.parent.mkdir(parents=True)
    write_speed_cog(path, speed, "EPSG:3857", from_bounds(left, bottom, right, top, side, side))
    href = "mosaics/speed_2024_v_3857.tif"
    item = speed_item("speed-2024", href, (west, south, east, north), "mosaics")
    item["assets"]["v_3857"] = item["assets"].pop("v")
    item["properties"].update(year=2024, product="annual")
    return item


TILES = """() => performance.getEntriesByType("resource")
  .filter((e) => e.name.includes("/tiles/collections/"))
  .map((e) => [e.name, e.responseEnd - e.startTime])"""


def first_loads(browser, base: str, count: int, speed: bool) -> tuple[list, list, list, list]:
    """Load event, usable and (with `speed`) speed tiles drawn, ms from navigation, each;
    and the speed tiles' requests ([url, ms], Resource Timing)."""
    loads, usable, drawn, tiles = [], [], [], []
    for _ in range(count):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(base + "/")
        page.wait_for_function("performance.getEntriesByName('dashboard-ready').length > 0")
        page.wait_for_function("performance.getEntriesByType('navigation')[0].loadEventEnd > 0")
        if speed:
            drawn.append(page.wait_for_function(SPEED_DRAWN, timeout=30_000).json_value())
            tiles.extend(page.evaluate(TILES))
        loads.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))
        usable.append(page.evaluate("performance.getEntriesByName('dashboard-ready')[0].startTime"))
        context.close()
    return loads, usable, drawn, tiles


def clicks(browser, base: str, points: list[tuple[float, float]]) -> tuple[list, list, list]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(base + "/")
    page.wait_for_function("performance.getEntriesByName('dashboard-ready').length > 0")
    page.wait_for_function(SPEED_DRAWN, timeout=30_000)  # a person clicks the map they see
    totals, requests, counts = [], [], []
    for k, (lon, lat) in enumerate(points, start=1):
        page.fill("#goto input[name=lon]", f"{lon:.6f}")
        page.fill("#goto input[name=lat]", f"{lat:.6f}")
        page.click("#goto button[value=add]")
        page.wait_for_function(f"performance.getEntriesByName('point-{k}-drawn').length > 0")
        total, request = page.evaluate(CLICK, k)
        totals.append(total)
        requests.append(request)
        counts.append(page.evaluate("window.glacierflow.points[0].answer.count"))
        page.get_by_role("button", name=f"Remove P{k}", exact=True).click()
    context.close()
    return totals, requests, counts


def from_python(base: str, points: list[tuple[float, float]]) -> list[float]:
    times = []
    with httpx.Client(base_url=base, timeout=60) as http:
        for lon, lat in points:
            t0 = time.perf_counter()
            answer = http.get(
                "/timeseries", params={"lon": f"{lon:.5f}", "lat": f"{lat:.5f}", "fit": "true"}
            )
            times.append((time.perf_counter() - t0) * 1000)
            assert answer.status_code == 200, answer.text
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=20_000)
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(2)
    r0, r1, c0, c1 = WINDOW
    pixels = [(int(rng.integers(r0, r1)), int(rng.integers(c0, c1))) for _ in range(args.points)]
    points = [lonlat(r, c) for r, c in pixels]
    with tempfile.TemporaryDirectory() as tmp, catalog_server(Path(tmp)) as dsn:
        settings = Settings(data_dir=Path(tmp) / "data")
        seconds = build(settings.cube_store, synthetic_layers(args.layers), CUBE_LAYOUT)
        print(f"{args.layers} layers written in {seconds:.1f} s")
        own = fresh_catalog(dsn, "bench_dashboard")
        load_cubes(own, [settings.cube_store / TILE.name], "cubes", settings.data_href)
        mosaic = speed_mosaic(settings.data_dir)
        process, base = serve(
            SERVE.format(dsn=own), {"GLACIERFLOW_DATA_DIR": str(settings.data_dir)}
        )
        try:
            from_python(base, points[:2])  # warm: imports, the cube's metadata
            with chromium_browser() as browser:
                first_loads(browser, base, 1, speed=False)  # warm: the page's searches
                bare = first_loads(browser, base, args.loads, speed=False)
                load_items(own, [mosaic])
                first_loads(browser, base, 1, speed=True)  # warm: the first tiles
                loads, usable, speed, tiles = first_loads(browser, base, args.loads, speed=True)
                totals, requests, counts = clicks(browser, base, points)
            python = from_python(base, points)
            tile_urls = sorted({url for url, _ in tiles})
            with httpx.Client(timeout=60) as http:
                tiles_python = []
                for url in tile_urls:
                    t0 = time.perf_counter()
                    assert http.get(url).status_code == 200
                    tiles_python.append((time.perf_counter() - t0) * 1000)
        finally:
            process.terminate()
    print(
        f"first load, cold cache ({args.loads}), no mosaics (baseline): load event p50 "
        f"{np.median(bare[0]):.0f} ms, max {max(bare[0]):.0f} ms; usable (cube outlines) p50 "
        f"{np.median(bare[1]):.0f} ms, max {max(bare[1]):.0f} ms"
    )
    print(
        f"first load, cold cache ({args.loads}), speed layer: load event p50 "
        f"{np.median(loads):.0f} ms, max {max(loads):.0f} ms; usable (cube outlines, mosaic "
        f"years) p50 {np.median(usable):.0f} ms, max {max(usable):.0f} ms; speed tiles in view "
        f"drawn p50 {np.median(speed):.0f} ms, max {max(speed):.0f} ms"
    )
    print(
        f"  speed tiles: {len(tiles) / args.loads:.0f} a load, each p50 "
        f"{np.median([ms for _, ms in tiles]):.0f} ms in the browser (6 at a time); the same "
        f"{len(tile_urls)} one at a time from httpx: p50 {np.median(tiles_python):.0f} ms"
    )
    print(
        f"click to chart ({args.points} points, {int(np.median(counts))} observations each "
        f"(median), fit=true): p50 {np.percentile(totals, 50):.0f} ms, "
        f"p95 {np.percentile(totals, 95):.0f} ms"
    )
    print(
        f"  its /timeseries request (browser): p50 {np.median(requests):.0f} ms; "
        f"the same from httpx: p50 {np.median(python):.0f} ms"
    )
    print(
        f"  in the page (parse, chart, paint): p50 "
        f"{np.median(np.subtract(totals, requests)):.0f} ms"
    )


if __name__ == "__main__":
    main()
