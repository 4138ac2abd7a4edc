"""STAC Browser at /browser/ in Debian's chromium against a real `glacierflow serve`: it
finds the catalog at /stac by itself, lists the collections, and opens a granule item with
its data asset and its thumbnail (the granule's browse image). Screenshots under the pytest
basetemp's `screenshots/`."""

from __future__ import annotations

from pathlib import Path

import httpx
from conftest import ServedRegion

COLLECTION_TITLES = {
    "granules": "Velocity granules",
    "cubes": "Velocity datacubes",
    "scenes": "Repeat satellite scenes",
    "mosaics": "Annual velocity mosaics",
}


def test_stac_browser_lists_the_collections_and_opens_a_granule(
    chromium, front_end_server: str, front_end_region: ServedRegion, screenshots: Path
) -> None:
    collections = httpx.get(f"{front_end_server}/stac/collections").json()["collections"]
    assert {c["id"]: c["title"] for c in collections} == COLLECTION_TITLES
    item = Path(front_end_region.data_file).stem  # one of ours, with a browse image
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{front_end_server}/browser/")
        for title in COLLECTION_TITLES.values():
            page.get_by_role("link", name=title, exact=True).wait_for(timeout=30_000)
        page.screenshot(path=screenshots / "stac_browser_catalog.png")

        page.get_by_role("link", name="Velocity granules", exact=True).click()
        page.wait_for_url("**/browser/collections/granules", timeout=30_000)
        link = page.locator("a", has_text=item).first
        link.wait_for(timeout=30_000)
        page.screenshot(path=screenshots / "stac_browser_granules.png")
        link.click()
        page.wait_for_url(f"**/browser/collections/granules/items/{item}*", timeout=30_000)
        page.get_by_role("heading", name=item, exact=True).wait_for(timeout=30_000)
        page.get_by_text("Velocity granule (NetCDF4)").first.wait_for(timeout=30_000)
        download = page.get_by_role("link", name="Download").first
        href = download.get_attribute("href")
        assert href == f"{front_end_server}/data/granules/{item}.nc"
        assert httpx.head(href).status_code == 200
        page.screenshot(path=screenshots / "stac_browser_item.png", full_page=True)
        # the thumbnail: the granule's browse image, loaded and drawn
        page.get_by_role("tab", name="Thumbnails").click()
        thumbnail = page.locator("img.thumbnail")
        thumbnail.wait_for(state="visible", timeout=30_000)
        page.wait_for_function("document.querySelector('img.thumbnail').complete", timeout=30_000)
        assert thumbnail.evaluate("img => img.naturalWidth") > 0
        src = thumbnail.get_attribute("src")
        assert src == f"{front_end_server}/data/granules/{item}.png"
        answer = httpx.get(src)
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        page.screenshot(path=screenshots / "stac_browser_thumbnail.png")
        assert errors == []
    finally:
        context.close()


def test_stac_browser_pages_load_from_any_path(front_end_server: str) -> None:
    """History mode: a page's own URL (reloaded, shared) answers STAC Browser's page, and
    its files come from its build; nothing outside the build folder is reachable."""
    index = httpx.get(f"{front_end_server}/browser/").text
    assert '<script src="/browser/config.js"></script>' in index
    for page in ("/browser/collections/granules", "/browser/search"):
        answer = httpx.get(front_end_server + page)
        assert answer.status_code == 200 and answer.text == index
    config = httpx.get(f"{front_end_server}/browser/config.js")
    assert config.status_code == 200 and "catalogUrl" in config.text
    # no basemap (offline), and ITS_LIVE's projections known without asking the internet
    assert "window.GLACIERFLOW_BASEMAP = null;" in config.text
    assert '"EPSG:3413": "PROJCS[' in config.text and '"EPSG:32760": "PROJCS[' in config.text
    escape = httpx.get(f"{front_end_server}/browser/..%2f..%2f__init__.py")
    assert escape.text == index
    redirect = httpx.get(f"{front_end_server}/browser")
    assert redirect.status_code == 307 and redirect.headers["location"] == "browser/"


def test_stac_browser_searches_items(
    chromium, front_end_server: str, front_end_region: ServedRegion, screenshots: Path
) -> None:
    """Its item search (POST /stac/search) finds the granules and the cube."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(f"{front_end_server}/browser/search")
        page.get_by_role("tab", name="Search for Items").click()
        with page.expect_response(lambda r: r.url.endswith("/stac/search")) as searched:
            page.get_by_role("button", name="Submit").last.click()
        assert searched.value.status == 200
        for item in (Path(front_end_region.data_file).stem, front_end_region.cube_item):
            page.locator("a", has_text=item).first.wait_for(timeout=30_000)
        page.screenshot(path=screenshots / "stac_browser_search.png")
    finally:
        context.close()
