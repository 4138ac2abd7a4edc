"""`scenes import`: a real pystac-client against a local STAC API serving items of the
providers' shapes, into a real pgstac catalog."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import rasterio
import xarray as xr
from affine import Affine
from conftest import free_port
from local_servers import QUERY, file_server, stac_api, stac_item
from rasterio.shutil import copy as copy_raster

from glacierflow.catalog.scene_import import (
    SceneImportError,
    SceneSearch,
    import_scenes,
    search_scenes,
)
from glacierflow.catalog.scenes import scene_from_item
from glacierflow.processing import synthetic
from glacierflow.processing.pipeline import pair_request, track_pair
from glacierflow.processing.scenes import Pair

SMALL_CHIPS = {"chip_min_m": 120.0, "chip_max_m": 480.0, "max_speed_m_per_yr": 2000.0}

S2 = "earth-search_sentinel-2-c1-l2a"


def _series(name: str, count: int, start: date = date(2024, 6, 1)) -> list[dict[str, Any]]:
    """`count` items of one fixture's shape, a day apart, cloud cover 0, 5, 10, ... %."""
    base = stac_item(name)
    items = []
    for k in range(count):
        item = copy.deepcopy(base)
        day = start + timedelta(days=k)
        item["id"] = f"{base['id']}_{k:03d}"
        item["properties"]["datetime"] = f"{day.isoformat()}T20:49:21.145000Z"
        if "eo:cloud_cover" in item["properties"]:
            item["properties"]["eo:cloud_cover"] = float(5 * k % 100)
        items.append(item)
    return items


def _scene_items(dsn: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(dsn, options="-c search_path=pgstac,public") as conn:
        rows = conn.execute(
            "SELECT id, content_hydrate(items) FROM items WHERE collection = 'scenes'"
        ).fetchall()
    return dict(rows)


def test_import_pages_through_the_search_and_a_reimport_duplicates_nothing(
    new_catalog: Callable[[str], str],
) -> None:
    dsn = new_catalog("scene_import_pages")
    items = _series(S2, 130) + _series("planetary-computer_sentinel-1-rtc", 3)
    with stac_api(items) as (url, searches):
        search = SceneSearch(url, "sentinel-2-c1-l2a", bbox=(-141.0, 59.5, -140.0, 60.0))
        report = import_scenes(dsn, search)
        assert len(searches) == 2  # 100 a page: two pages
        again = import_scenes(dsn, search)
    assert report.imported == again.imported == [i["id"] for i in items[:130]]
    assert report.skipped == {} and not report.truncated
    stored = _scene_items(dsn)
    assert len(stored) == 130
    scene = scene_from_item(stored[items[7]["id"]])
    assert scene.href == items[7]["assets"]["nir"]["href"]  # the remote href, kept
    assert scene.tile == "MGRS-07VCG" and scene.collection == "scenes"
    assert stored[items[7]["id"]]["properties"]["glacierflow:source_collection"] == (
        "sentinel-2-c1-l2a"
    )


def test_dates_box_and_max_items_bound_the_search() -> None:
    with stac_api(_series(S2, 40)) as (url, _):
        report = search_scenes(
            SceneSearch(url, "sentinel-2-c1-l2a", start=date(2024, 6, 5), end=date(2024, 6, 14))
        )
        assert [i["properties"]["datetime"][:10] for i in report.items] == [
            (date(2024, 6, 5) + timedelta(days=k)).isoformat() for k in range(10)
        ]
        capped = search_scenes(SceneSearch(url, "sentinel-2-c1-l2a", max_items=7))
        assert len(capped.items) == 7 and capped.truncated
        elsewhere = search_scenes(SceneSearch(url, "sentinel-2-c1-l2a", bbox=(10, 45, 11, 46)))
        assert elsewhere.items == []


def test_cloud_cover_is_asked_of_an_api_that_filters_and_checked_here_otherwise() -> None:
    items = _series(S2, 20) + _series("planetary-computer_sentinel-1-rtc", 2)
    for conformance in ((), (QUERY,)):
        with stac_api(items, ("https://api.stacspec.org/v1.0.0/item-search", *conformance)) as (
            url,
            searches,
        ):
            report = search_scenes(SceneSearch(url, "sentinel-2-c1-l2a", max_cloud=20))
            radar = search_scenes(SceneSearch(url, "sentinel-1-rtc", max_cloud=20))
        clouds = [i["properties"]["eo:cloud_cover"] for i in report.items]
        assert clouds == [0, 5, 10, 15, 20]
        if conformance:
            assert searches[0]["query"] == {"eo:cloud_cover": {"lte": 20}}
            assert report.cloudy == 0  # the API did it
        else:
            assert "query" not in searches[0] and report.cloudy == 15
        assert len(radar.items) == 2 and "query" not in searches[-1]  # radar: no clouds


def test_items_that_cannot_be_scenes_are_reported_and_the_rest_imported(
    new_catalog: Callable[[str], str],
) -> None:
    dsn = new_catalog("scene_import_bad_items")
    items = _series(S2, 6)
    del items[1]["assets"]["nir"]  # an unknown shape
    del items[2]["properties"]["proj:epsg"]
    items[3]["properties"]["datetime"] = None
    items[3]["properties"]["start_datetime"] = "2024-06-04T00:00:00Z"
    items[3]["properties"]["end_datetime"] = "2024-06-05T00:00:00Z"
    items[4]["assets"] = "not a mapping"
    with stac_api(items) as (url, _):
        report = import_scenes(dsn, SceneSearch(url, "sentinel-2-c1-l2a"))
    assert report.imported == [items[0]["id"], items[5]["id"]]
    reasons = report.skipped
    assert "no 'nir' asset" in reasons[items[1]["id"]]
    assert "no CRS" in reasons[items[2]["id"]]
    assert "no acquisition datetime" in reasons[items[3]["id"]]
    assert "malformed" in reasons[items[4]["id"]] or "no 'nir'" in reasons[items[4]["id"]]
    assert set(_scene_items(dsn)) == set(report.imported)


def test_an_api_that_is_down_is_named(new_catalog: Callable[[str], str]) -> None:
    dsn = new_catalog("scene_import_down")
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(SceneImportError, match=rf"^{url}: cannot connect"):
        import_scenes(dsn, SceneSearch(url, "sentinel-2-c1-l2a", timeout_s=5, retries=0))
    assert _scene_items(dsn) == {}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (lambda path: (200, "text/html", b"<html><body>Maintenance</body></html>"), "STAC API"),
        (lambda path: (200, "application/json", b'{"type": "Catalog", "id": '), "STAC API"),
        (lambda path: (503, "text/plain", b"Service Unavailable"), "answered an error (HTTP 503)"),
        (lambda path: (200, "application/json", b"[1, 2, 3]"), "STAC API"),
    ],
    ids=["html", "truncated-json", "http-503", "json-not-stac"],
)
def test_an_api_that_answers_garbage_is_named(answer, expected: str) -> None:
    with stac_api([], answer=answer) as (url, _), pytest.raises(SceneImportError) as caught:
        search_scenes(SceneSearch(url, "sentinel-2-c1-l2a", timeout_s=5, retries=1))
    assert str(caught.value).startswith(url) and expected in str(caught.value)


def test_a_search_that_breaks_half_way_imports_nothing(new_catalog: Callable[[str], str]) -> None:
    dsn = new_catalog("scene_import_half")
    searched = []

    def second_page_is_garbage(path: str) -> tuple[int, str, bytes] | None:
        searched.append(path == "/search")
        return (200, "text/html", b"<h1>Bad gateway</h1>") if sum(searched) == 2 else None

    with stac_api(_series(S2, 150), answer=second_page_is_garbage) as (url, searches):
        with pytest.raises(SceneImportError, match=f"^{url}: does not answer as a STAC API"):
            import_scenes(dsn, SceneSearch(url, "sentinel-2-c1-l2a", timeout_s=5))
        assert len(searches) == 1  # the first page came
    assert _scene_items(dsn) == {}


def test_an_unknown_collection_or_an_unbounded_search_is_refused_before_asking() -> None:
    with pytest.raises(SceneImportError, match=r"'sentinel-3-olci'.*not one this importer knows"):
        search_scenes(SceneSearch("http://127.0.0.1:9/", "sentinel-3-olci"))
    with pytest.raises(SceneImportError, match="give 1 to 10,000"):
        search_scenes(SceneSearch("http://127.0.0.1:9/", "landsat-c2l1", max_items=10**6))


def _cli(*args: str, dsn: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": dsn, "GLACIERFLOW_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run(
        [sys.executable, "-m", "glacierflow.cli", "scenes", "import", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_imports_reports_and_exits_by_what_happened(
    new_catalog: Callable[[str], str], tmp_path: Path
) -> None:
    dsn = new_catalog("scene_import_cli")
    items = _series("landsatlook_landsat-c2l1", 4)
    del items[2]["assets"]["pan"]
    with stac_api(items) as (url, _):
        run = _cli(
            "--from", url, "--collection", "landsat-c2l1", "--bbox", "-141", "59.5", "-140", "60",
            "--start", "2024-06-01", "--end", "2024-06-30", "--max-cloud", "50",
            dsn=dsn, tmp_path=tmp_path,
        )  # fmt: skip
        assert run.returncode == 1, run.stderr
        assert run.stdout.split() == [items[k]["id"] for k in (0, 1, 3)]
        assert f"skipped {items[2]['id']}: " in run.stderr and "'pan'" in run.stderr
        assert "imported 3 scene item(s) into collection 'scenes'" in run.stderr
        clean = _cli("--from", url, "--collection", "sentinel-1-rtc", dsn=dsn, tmp_path=tmp_path)
        assert clean.returncode == 0 and "imported 0 scene item(s)" in clean.stderr
    assert len(_scene_items(dsn)) == 3
    down = _cli(
        "--from", url, "--collection", "landsat-c2l1", "--timeout", "5", dsn=dsn, tmp_path=tmp_path
    )
    assert down.returncode == 2 and f"error: {url}: cannot connect" in down.stderr
    for bad, named in (
        (["--from", "ftp://x", "--collection", "landsat-c2l1"], "--from"),
        (["--from", url, "--collection", "landsat-c2l1", "--bbox", "0", "10", "1", "5"], "--bbox"),
        (["--from", url, "--collection", "c", "--start", "2024-07-01", "--end", "2024-06-01"],
         "--start"),
        (["--from", url, "--collection", "c", "--start", "July"], "--start"),
        (["--from", url, "--collection", "c", "--max-cloud", "120"], "--max-cloud"),
    ):  # fmt: skip
        refused = _cli(*bad, dsn=dsn, tmp_path=tmp_path)
        assert refused.returncode == 2 and named in refused.stderr, refused.stderr
    unknown = _cli("--from", url, "--collection", "modis", dsn=dsn, tmp_path=tmp_path)
    assert unknown.returncode == 2 and "'modis' is not one this importer knows" in unknown.stderr
    assert len(_scene_items(dsn)) == 3


def test_imported_scenes_are_tracked_from_their_remote_cogs(
    new_catalog: Callable[[str], str], tmp_path: Path
) -> None:
    """Earth Search's shape end to end: items from the STAC API, COGs from a file server,
    scenes from the catalog, the pair tracked over HTTP with the granule named by the ids."""
    dsn = new_catalog("scene_import_track")
    pair = synthetic.make_pair((300, 300), synthetic.uniform(0.4, -0.6), seed=45)
    pair.epsg, pair.origin = 32607, (420_000.0, 6_680_000.0)
    served = tmp_path / "cogs"
    tiffs = synthetic.write_geotiffs(pair, tmp_path / "tiffs", "s2")
    served.mkdir()
    for tiff in tiffs:
        copy_raster(tiff, served / tiff.name, driver="COG", blocksize=128)
    cloud = np.full((150, 150), 11, np.uint8)  # SCL at twice the pixel: snow and ice
    cloud[40:70, 50:90] = 9  # a cloud, high probability, in the second scene
    for name, classes in (("ref", np.full_like(cloud, 11)), ("sec", cloud)):
        with rasterio.open(
            served / f"{name}_SCL.tif", "w", driver="GTiff", width=150, height=150, count=1,
            dtype="uint8", crs="EPSG:32607", transform=pair.transform * Affine.scale(2),
        ) as dst:  # fmt: skip
            dst.write(classes, 1)
    with file_server(served) as files:
        items = _series(S2, 2, start=date(2024, 7, 1))
        for item, tiff, when, name in zip(
            items, tiffs, (pair.ref_time, pair.sec_time), ("ref", "sec"), strict=True
        ):
            item["assets"]["nir"]["href"] = f"{files.url}/{tiff.name}"
            item["assets"]["scl"]["href"] = f"{files.url}/{name}_SCL.tif"
            item["properties"]["datetime"] = f"{when.isoformat()}Z"
        with stac_api(items) as (url, _):
            import_scenes(dsn, SceneSearch(url, "sentinel-2-c1-l2a"))
        stored = _scene_items(dsn)
        ref, sec = sorted((scene_from_item(i) for i in stored.values()), key=lambda s: s.datetime)
        request = pair_request(Pair(ref, sec), tmp_path / "granules", **SMALL_CHIPS)
        report = track_pair(request)
        assert all(wanted.startswith("bytes=") for method, _, wanted in files.requests()
                   if method == "GET")  # fmt: skip
    assert report.path.name.startswith(f"{items[0]['id']}_X_{items[1]['id']}_G0120")
    with xr.open_dataset(report.path) as ds:
        assert synthetic.granule_accuracy(ds, pair).rmse_px < 0.05
        assert ds["img_pair_info"].attrs["satellite_img1"] == "2B"
        assert (ds.attrs["parameter_masks"], ds.attrs["parameter_mask_kind"]) == ("ref sec", "scl")
        # under the cloud (SEC rows 80-140, columns 100-180 at 7.5 m): no vector measured
        covered = ds["vx"].sel(x=slice(420_000 + 7.5 * 110, 420_000 + 7.5 * 170),
                               y=slice(6_680_000 - 7.5 * 90, 6_680_000 - 7.5 * 130))  # fmt: skip
        assert covered.size and covered.isnull().all()
