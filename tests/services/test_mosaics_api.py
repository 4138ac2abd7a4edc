"""Mosaics through the STAC API as users meet them: pystac-client finds them by place, time
and year; every asset href is a /data URL that GDAL opens over HTTP (range requests) and
reads the file's own pixels from; the items and the collection as served are valid STAC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from conftest import serving
from mosaic_products import MosaicProducts, write_mosaic
from pystac_client import Client
from rasterio.windows import Window
from stac_schemas import validate, validator

from glacierflow.catalog.loader import load_mosaics
from glacierflow.services.app import create_app
from glacierflow.settings import Settings

CHECKER = validator()


@pytest.fixture(scope="module")
def served(new_catalog, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Two years and the summary of a region under the data directory, loaded as
    `mosaic build` registers them (hrefs relative to it), served."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("mosaics-api") / "data")
    folder = settings.data_dir / "mosaics" / "TEST"
    region = {year: write_mosaic(folder, "TEST", year, seed=year % 7) for year in (2023, 2024, 0)}
    dsn = new_catalog("mosaics_api")
    load_mosaics(dsn, region.values(), settings.collection_id("mosaics"), settings.data_href)
    with serving(create_app(settings, dsn)) as url:
        yield {"url": url, "region": region}


@pytest.fixture(scope="module")
def client(served: dict) -> Client:
    return Client.open(f"{served['url']}/stac")


def test_pystac_client_finds_mosaics_by_place_time_and_year(served: dict, client: Client) -> None:
    region: dict[int, MosaicProducts] = served["region"]
    every = {p.netcdf.stem for p in region.values()}
    assert {i.id for i in client.search(collections=["mosaics"]).items()} == every
    (any_item,) = client.search(ids=[region[2023].netcdf.stem]).items()
    west, south, east, north = any_item.bbox
    centre = [(west + east) / 2, (south + north) / 2]
    found = client.search(
        collections=["mosaics"], bbox=[*centre, centre[0] + 0.01, centre[1] + 0.01],
        datetime="2024-03-01/2024-03-02",
    )  # fmt: skip
    assert {i.id for i in found.items()} == {region[2024].netcdf.stem, region[0].netcdf.stem}
    summary = client.search(
        collections=["mosaics"], filter={"op": "=", "args": [{"property": "year"}, 0]}
    )
    assert [i.id for i in summary.items()] == [region[0].netcdf.stem]


def test_asset_hrefs_are_data_urls_gdal_reads_the_pixels_from(served: dict, client: Client) -> None:
    products: MosaicProducts = served["region"][2023]
    (item,) = client.search(ids=[products.netcdf.stem]).items()
    files = {**products.cogs, "v_3857": products.web_mercator, "data": products.netcdf}
    assert set(item.assets) == set(files)
    for key, path in files.items():
        href = item.assets[key].href
        assert href == f"{served['url']}/data/mosaics/TEST/{path.name}", key
    window = Window(300, 250, 64, 48)  # inside the glacier: values, not only nodata
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        for key in (*products.cogs, "v_3857"):
            url = f"/vsicurl/{item.assets[key].href}"
            with rasterio.open(url) as remote, rasterio.open(files[key]) as local:
                grid = (local.shape, local.transform, local.crs, local.dtypes)
                assert (remote.shape, remote.transform, remote.crs, remote.dtypes) == grid
                ours = remote.read(1, window=window)
                np.testing.assert_array_equal(ours, local.read(1, window=window))
                assert np.isfinite(ours.astype(float)).any(), key
    netcdf = httpx.get(item.assets["data"].href, headers={"Range": "bytes=0-7"})
    assert netcdf.status_code == 206 and netcdf.content == products.netcdf.read_bytes()[:8]


def test_served_items_and_the_collection_are_valid_stac(served: dict) -> None:
    with httpx.Client(base_url=served["url"], timeout=30) as http:
        collection = http.get("/stac/collections/mosaics").json()
        assert {"v", "v_3857", "data"} <= set(collection["item_assets"])
        assert "speed" in collection["renders"]
        validate(collection, CHECKER)
        items = http.get("/stac/collections/mosaics/items").json()["features"]
        assert len(items) == 3
        for item in items:
            used = validate(item, CHECKER)
            assert any("/raster/" in url for url in used)
            assert item["properties"]["datetime"] is None  # a span: start and end


def test_no_server_path_in_the_answers(served: dict) -> None:
    body = httpx.get(f"{served['url']}/stac/search?collections=mosaics").text
    assert str(Path(served["region"][2023].netcdf).parent) not in body
