"""The dashboard's profile tool in Debian's chromium, timed by the page itself (Performance
API): from a finished line to the frame that shows its heatmap and date chart, on a
20,000-layer cube, against the same /profile request from Python in the same run.

    .venv/bin/python benchmarks/dashboard_profile.py [--layers 20000] [--lines 5]

1. Writes cube_timeseries.py's synthetic cube (a seasonal speed field in a 50 x 50-pixel
   window, 30 % of values empty), catalogs it and runs `glacierflow serve` (one worker).
2. Lines across the window (two random pixels of it, a bend between): each typed into the
   profile's line field and sent (the path a double-click on the map takes), timed from
   the line's end to the frame showing the heatmap; the /profile request inside it
   (Resource Timing) and the same request from httpx. One warm-up line first (the speed
   legend is read once per page).
Uses DATABASE_URL when set, else a private cluster in a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cube_timeseries import TILE, WINDOW, build, lonlat, synthetic_layers
from dashboard import SERVE
from support import catalog_server, chromium_browser, fresh_catalog, serve

from glacierflow.catalog.loader import load_cubes
from glacierflow.processing.cubes.layout import CUBE_LAYOUT
from glacierflow.settings import Settings

TIMED = """() => {
  const [asked] = performance.getEntriesByName("profile-asked");
  const [drawn] = performance.getEntriesByName("profile-drawn");
  const last = performance.getEntriesByType("resource")
    .filter((e) => e.name.includes("/profile?")).pop();
  const p = window.glacierflow.profile;
  return [drawn.startTime - asked.startTime, last.responseEnd - last.startTime,
    p.answer.mid_date.length, p.answer.distance_m.length, p.query];
}"""


def lines(count: int, seed: int = 3) -> list[list[tuple[float, float]]]:
    rng = np.random.default_rng(seed)
    r0, r1, c0, c1 = WINDOW
    out = []
    for _ in range(count + 1):
        pixels = [(int(rng.integers(r0, r1)), int(rng.integers(c0, c1))) for _ in range(3)]
        out.append([lonlat(r, c) for r, c in pixels])
    return out


def in_the_page(browser, base: str, asked: list) -> tuple[list, list, list, list]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(base + "/")
    page.wait_for_function("window.glacierflow && window.glacierflow.ready")
    totals, requests, shapes, queries = [], [], [], []
    for vertices in asked:
        page.evaluate("performance.clearMarks(); performance.clearResourceTimings()")
        if page.locator("#profile").is_hidden():
            page.click("#profile-mode")  # the profile's panel opens
        typed = ", ".join(f"{x:.5f} {y:.5f}" for x, y in vertices)
        page.fill("#profile-form input[name=line]", typed)
        page.click("#profile-form button")
        page.wait_for_function("performance.getEntriesByName('profile-drawn').length > 0")
        total, request, rows, columns, query = page.evaluate(TIMED)
        totals.append(total)
        requests.append(request)
        shapes.append((rows, columns))
        queries.append(query)
    context.close()
    return totals[1:], requests[1:], shapes[1:], queries[1:]  # the first: warm-up


def timed_gets(base: str, paths: list[str]) -> list[float]:
    """Milliseconds for each GET of `paths` (with their queries) from one httpx client."""
    times = []
    with httpx.Client(base_url=base, timeout=120) as http:
        for path in paths:
            t0 = time.perf_counter()
            answer = http.get(path)
            times.append((time.perf_counter() - t0) * 1000)
            assert answer.status_code == 200, answer.text
    return times


@contextmanager
def served_cube(layers: int) -> Iterator[str]:
    """cube_timeseries.py's synthetic cube, catalogued, under `glacierflow serve` (one
    worker) with the built dashboard; yields its URL."""
    with tempfile.TemporaryDirectory() as tmp, catalog_server(Path(tmp)) as dsn:
        settings = Settings(data_dir=Path(tmp) / "data")
        seconds = build(settings.cube_store, synthetic_layers(layers), CUBE_LAYOUT)
        print(f"{layers} layers written in {seconds:.1f} s")
        own = fresh_catalog(dsn, "bench_dashboard_profile")
        load_cubes(own, [settings.cube_store / TILE.name], "cubes", settings.data_href)
        process, base = serve(
            SERVE.format(dsn=own), {"GLACIERFLOW_DATA_DIR": str(settings.data_dir)}
        )
        try:
            yield base
        finally:
            process.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=20_000)
    parser.add_argument("--lines", type=int, default=5)
    args = parser.parse_args()
    with served_cube(args.layers) as base:
        with chromium_browser() as browser:
            totals, requests, shapes, queries = in_the_page(browser, base, lines(args.lines))
        python = timed_gets(base, [f"/{query}" for query in queries])
    rows, columns = np.median(shapes, axis=0)
    print(
        f"finished line to heatmap drawn ({args.lines} lines, {rows:.0f} dates x "
        f"{columns:.0f} samples (median)): p50 {np.median(totals):.0f} ms, "
        f"max {max(totals):.0f} ms"
    )
    print(
        f"  its /profile request (browser): p50 {np.median(requests):.0f} ms; "
        f"the same from httpx: p50 {np.median(python):.0f} ms"
    )
    print(
        f"  in the page (parse, heatmap, chart, paint): p50 "
        f"{np.median(np.subtract(totals, requests)):.0f} ms"
    )


if __name__ == "__main__":
    main()
