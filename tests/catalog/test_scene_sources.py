"""The per-collection table: items of the real providers' shapes become scenes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from local_servers import stac_item

from glacierflow.catalog.scene_sources import (
    SOURCE_API,
    SOURCE_COLLECTION,
    NotASceneError,
    UnknownShapeError,
    mgrs_tile,
    scene_item,
    source_for,
    wrs2_tile,
)
from glacierflow.catalog.scenes import BAND_PROPERTY, MASK_PROPERTY, scene_from_item

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
PLANETARY_COMPUTER = "https://planetarycomputer.microsoft.com/api/stac/v1"
LANDSATLOOK = "https://landsatlook.usgs.gov/stac-server"

# fixture, its API, and what the scene must say: band href's end, mask href's end, tile,
# platform, instrument, cloud cover
CASES = {
    "earth-search_sentinel-2-c1-l2a": (
        EARTH_SEARCH, "/B08.tif", "/SCL.tif", "MGRS-07VCG", "sentinel-2b", "msi", 12.4,
    ),
    "planetary-computer_sentinel-2-l2a": (
        PLANETARY_COMPUTER, "_B08_10m.tif", "_SCL_20m.tif", "MGRS-07VCG", "sentinel-2b", "msi",
        12.4,
    ),
    "earth-search_landsat-c2-l2": (
        EARTH_SEARCH, "_SR_B5.TIF", "_QA_PIXEL.TIF", "WRS2-063018", "landsat-9", "oli", 23.15,
    ),
    "planetary-computer_landsat-c2-l2": (
        PLANETARY_COMPUTER, "_SR_B5.TIF", "_QA_PIXEL.TIF", "WRS2-063018", "landsat-9", "oli",
        23.15,
    ),
    "landsatlook_landsat-c2l1": (
        LANDSATLOOK, "_B8.TIF", "_QA_PIXEL.TIF", "WRS2-063018", "landsat-9", "oli", 23.15,
    ),
    "planetary-computer_sentinel-1-rtc": (
        PLANETARY_COMPUTER, "iw-vv.rtc.tiff", None, None, "sentinel-1a", "c-sar", None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("from_host", [True, False], ids=["their-host", "local-mirror"])
def test_each_known_shape_becomes_a_scene(name: str, from_host: bool) -> None:
    api, band_end, mask_end, tile, platform, instrument, cloud = CASES[name]
    source_api = api if from_host else "http://127.0.0.1:8123/"
    item = stac_item(name)
    source = source_for(item, item["collection"], source_api)
    made = scene_item(item, source, "scenes", source_api)
    scene = scene_from_item(made)
    assert scene.id == item["id"]
    assert scene.href.endswith(band_end) and scene.href.startswith(("https://", "s3://"))
    assert (scene.mask_href or "").endswith(mask_end or "") and (mask_end is None) == (
        scene.mask_href is None
    )
    assert scene.tile == tile
    assert scene.epsg == 32607
    assert (scene.platform, scene.instrument) == (platform, instrument)
    assert scene.cloud_cover == cloud
    assert scene.datetime.tzinfo is not None and scene.datetime.year == 2024
    assert scene.collection == "scenes"
    props = made["properties"]
    assert props[SOURCE_COLLECTION] == item["collection"]
    assert props[SOURCE_API] == source_api
    assert props["proj:code"] == "EPSG:32607"
    # the source's shape is kept: every asset, every source property
    assert set(made["assets"]) == set(item["assets"])
    assert set(item["properties"]) <= set(props)
    assert [link["rel"] for link in made["links"]] in ([], ["via"])


def test_an_id_that_clashes_across_apis_is_told_apart_by_host_and_by_shape() -> None:
    pc, es = (
        stac_item("planetary-computer_sentinel-2-l2a"),
        stac_item("earth-search_sentinel-2-c1-l2a"),
    )
    es["collection"] = "sentinel-2-l2a"  # Earth Search's older collection: same band names
    assert source_for(pc, "sentinel-2-l2a", PLANETARY_COMPUTER).band == "B08"
    assert source_for(es, "sentinel-2-l2a", EARTH_SEARCH).band == "nir"
    # a mirror on another host: the item's own assets decide
    assert source_for(pc, "sentinel-2-l2a", "http://mirror.example/").band == "B08"
    assert source_for(es, "sentinel-2-l2a", "http://mirror.example/").band == "nir"
    # the host's entry does not read the other provider's shape
    with pytest.raises(UnknownShapeError, match="no 'nir' asset"):
        source_for(pc, "sentinel-2-l2a", EARTH_SEARCH)
    landsat = stac_item("earth-search_landsat-c2-l2")
    assert "Earth Search" in source_for(landsat, "landsat-c2-l2", EARTH_SEARCH).name
    assert "Planetary" in source_for(landsat, "landsat-c2-l2", PLANETARY_COMPUTER).name


def test_scale_and_offset_are_recorded_where_the_provider_omits_them() -> None:
    item = stac_item("planetary-computer_sentinel-2-l2a")
    made = scene_item(item, source_for(item, "sentinel-2-l2a", PLANETARY_COMPUTER), "scenes")
    assert made["assets"]["B08"]["raster:bands"] == [{"scale": 0.0001, "offset": -0.1}]
    item["properties"]["s2:processing_baseline"] = "03.01"  # before ESA's +1000 shift
    made = scene_item(item, source_for(item, "sentinel-2-l2a", PLANETARY_COMPUTER), "scenes")
    assert made["assets"]["B08"]["raster:bands"][0]["offset"] == 0.0
    es = stac_item("earth-search_sentinel-2-c1-l2a")
    kept = scene_item(es, source_for(es, "sentinel-2-c1-l2a", EARTH_SEARCH), "scenes")
    assert kept["assets"]["nir"]["raster:bands"] == es["assets"]["nir"]["raster:bands"]


def test_tile_keys_in_every_spelling() -> None:
    assert mgrs_tile({"mgrs:utm_zone": 7, "mgrs:latitude_band": "V", "mgrs:grid_square": "CG"}) == (
        "MGRS-07VCG"
    )
    assert mgrs_tile({"s2:mgrs_tile": "07VCG"}) == "MGRS-07VCG"
    assert mgrs_tile({"s2:mgrs_tile": "T33UUP"}) == "MGRS-33UUP"
    assert mgrs_tile({}) is None
    assert wrs2_tile({"landsat:wrs_path": "63", "landsat:wrs_row": 18}) == "WRS2-063018"
    assert wrs2_tile({"landsat:wrs_path": "063"}) is None


@pytest.mark.parametrize(
    ("damage", "error", "reason"),
    [
        (lambda i: i["assets"].pop("nir"), UnknownShapeError, "no 'nir' asset"),
        (lambda i: i["properties"].pop("proj:epsg"), NotASceneError, "no CRS"),
        (lambda i: i["properties"].pop("datetime"), NotASceneError, "no acquisition datetime"),
        (lambda i: i.pop("geometry"), NotASceneError, "no footprint"),
        (
            lambda i: i.update(geometry={"type": "Polygon", "coordinates": "x"}),
            NotASceneError,
            "no footprint",
        ),
        (lambda i: i.update(id=17), NotASceneError, "not a string"),
        (lambda i: i.update(id="x" * 300), NotASceneError, "not a string"),
        (lambda i: i["properties"].update({"proj:epsg": "32607"}), NotASceneError, "no CRS"),
    ],
    ids=[
        "no-band",
        "no-crs",
        "no-time",
        "no-geometry",
        "bad-geometry",
        "id-a-number",
        "id-too-long",
        "crs-not-an-integer",
    ],
)
def test_an_item_that_cannot_be_a_scene_says_why(damage, error, reason: str) -> None:
    item = stac_item("earth-search_sentinel-2-c1-l2a")
    damage(item)
    with pytest.raises(error, match=reason):
        scene_item(item, source_for(item, "sentinel-2-c1-l2a", EARTH_SEARCH), "scenes")


def test_an_unknown_collection_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(UnknownShapeError, match=r"'modis-09a1'.*sentinel-2-c1-l2a"):
        source_for(stac_item("earth-search_sentinel-2-c1-l2a"), "modis-09a1", EARTH_SEARCH)


def test_the_scene_item_keeps_the_band_and_mask_keys() -> None:
    item = stac_item("landsatlook_landsat-c2l1")
    made = scene_item(item, source_for(item, "landsat-c2l1", LANDSATLOOK), "scenes")
    assert made["properties"][BAND_PROPERTY] == "pan"
    assert made["properties"][MASK_PROPERTY] == "qa_pixel"
    assert scene_from_item(made).datetime == datetime(2024, 7, 12, 20, 44, 39, 804149, tzinfo=UTC)
