"""Scene items of the demo region: valid STAC shaped like Landsat / Sentinel-2 items, loaded
into pgstac idempotently, and back as the same `Scene`s through `scenes_from_catalog`
(filters by place, time and collection), ready for pairing.

Each test works on catalog databases of its own in the session's private cluster.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from stac_schemas import validate, validator

from glacierflow.catalog.loader import init_catalog
from glacierflow.catalog.scenes import (
    BAND_PROPERTY,
    MASK_PROPERTY,
    NotASceneError,
    load_scenes,
    scene_from_item,
    scene_item,
    scenes_from_catalog,
)
from glacierflow.processing.scenes import Scene
from glacierflow.processing.scenes.pairing import PairRules, find_pairs
from glacierflow.processing.scenes.region import Region
from glacierflow.services.data import DataFiles
from glacierflow.settings import Settings, get_settings

START, END = datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 7, 5, tzinfo=UTC)
CHECKER = validator()


@pytest.fixture(scope="module")
def region_scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[Scene]]:
    """A month of a small demo region's scenes, written in a data directory."""
    data_dir = tmp_path_factory.mktemp("scene-data")
    region = Region(width_m=2_400, height_m=1_920, clear_days=0.5)
    return Settings(data_dir=data_dir), region.write_scenes(data_dir / "scenes", START, END)


def _items(settings: Settings, scenes: list[Scene], collection: str = "scenes") -> list[dict]:
    return [
        scene_item(s, settings.data_href, collection).to_dict(include_self_link=False)
        for s in scenes
    ]


def _count(dsn: str, collection: str = "scenes") -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT count(*) FROM pgstac.items WHERE collection = %s", (collection,)
        ).fetchone()[0]


def test_scene_items_are_valid_stac_shaped_like_the_real_ones(region_scenes) -> None:
    settings, scenes = region_scenes
    files = DataFiles(settings)
    for scene, item in zip(scenes, _items(settings, scenes), strict=True):
        served = {
            **item,
            "links": [
                {"rel": "collection", "href": "http://127.0.0.1/stac/collections/scenes"},
            ],
        }
        used = validate(served, CHECKER)
        props = item["properties"]
        landsat = scene.platform == "landsat-8"
        assert any("landsat" in url for url in used) == landsat
        assert props["grid:code"] == ("WRS2-063018" if landsat else "MGRS-07VCG")
        assert props["eo:cloud_cover"] == scene.cloud_cover
        assert props["proj:code"] == "EPSG:32607"
        assert props["proj:shape"] == ([128, 160] if landsat else [192, 240])
        assert props["instruments"] == (["oli"] if landsat else ["msi"])
        assert 40 < props["view:sun_elevation"] < 60  # June afternoon sun at 60° N
        if landsat:
            assert props["landsat:wrs_path"] == "063" and props["landsat:wrs_row"] == "018"
        band, mask = props[BAND_PROPERTY], props[MASK_PROPERTY]
        assert band == ("pan" if landsat else "nir") and mask == "cloud"
        assert item["assets"][band]["roles"] == ["data"]
        assert "cloud" in item["assets"][mask]["roles"]
        for asset in item["assets"].values():
            # relative to the data directory, served under /data like every other file
            assert asset["href"].startswith(f"scenes/{scene.id}/")
            assert files.url(asset["href"], "http://h/data") == f"http://h/data/{asset['href']}"


def test_an_item_reads_back_as_its_scene(region_scenes) -> None:
    settings, scenes = region_scenes
    for scene, item in zip(scenes, _items(settings, scenes), strict=True):
        back = scene_from_item(item)
        assert Path(settings.data_dir, back.href) == Path(scene.href)
        assert Path(settings.data_dir, back.mask_href) == Path(scene.mask_href)
        assert replace(back, href=scene.href, mask_href=scene.mask_href) == replace(
            scene, collection="scenes"
        )


def test_loaded_scenes_come_back_from_the_catalog(new_catalog, region_scenes) -> None:
    settings, scenes = region_scenes
    dsn = new_catalog("scenes_catalog")
    items = _items(settings, scenes)
    assert load_scenes(dsn, items) == [s.id for s in scenes]
    assert load_scenes(dsn, items) == [s.id for s in scenes]  # again: the same rows
    assert _count(dsn) == len(scenes)

    found = scenes_from_catalog(dsn, collection="scenes", data_dir=settings.data_dir)
    assert found == [replace(s, collection="scenes") for s in scenes]  # in time order
    assert all(Path(s.href).is_file() and Path(s.mask_href).is_file() for s in found)

    here = (-140.75, 60.0, -140.6, 60.2)
    elsewhere = (10.0, 45.0, 11.0, 46.0)
    assert scenes_from_catalog(dsn, bbox=here, collection="scenes") != []
    assert scenes_from_catalog(dsn, bbox=elsewhere, collection="scenes") == []
    middle = datetime(2024, 6, 15, tzinfo=UTC)
    early = scenes_from_catalog(dsn, end=middle, collection="scenes")
    late = scenes_from_catalog(dsn, start=middle, collection="scenes")
    assert [s.id for s in early + late] == [s.id for s in scenes]
    assert all(s.datetime <= middle for s in early) and all(s.datetime >= middle for s in late)
    assert scenes_from_catalog(dsn, collection="granules") == []

    # ready for pairing: Landsat with Landsat, Sentinel-2 with Sentinel-2
    pairs = find_pairs(found, PairRules(max_cloud=100))
    assert {(p.ref.tile, p.sec.tile) for p in pairs} == {
        ("WRS2-063018", "WRS2-063018"),
        ("MGRS-07VCG", "MGRS-07VCG"),
    }


def test_the_scenes_collection_is_the_settings_one(
    new_catalog, region_scenes, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, scenes = region_scenes
    dsn = new_catalog("scenes_renamed")
    init_catalog(dsn, {"scenes": "demo-scenes"})
    load_scenes(dsn, _items(settings, scenes[:3], "demo-scenes"))
    monkeypatch.setenv("GLACIERFLOW_COLLECTION_IDS", '{"scenes": "demo-scenes"}')
    monkeypatch.setenv("GLACIERFLOW_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        found = scenes_from_catalog(dsn)
    finally:
        get_settings.cache_clear()
    assert [s.id for s in found] == [s.id for s in scenes[:3]]
    assert [s.href for s in found] == [s.href for s in scenes[:3]]


def test_items_that_are_not_scenes_load_nothing(new_catalog, region_scenes) -> None:
    settings, scenes = region_scenes
    dsn = new_catalog("scenes_refused")
    good, bad = _items(settings, scenes[:2])
    del bad["properties"][BAND_PROPERTY]
    with pytest.raises(NotASceneError, match=f"{bad['id']}.*{BAND_PROPERTY}"):
        load_scenes(dsn, [good, bad])
    assert _count(dsn) == 0
    with pytest.raises(ValueError, match="west, south, east, north"):
        scenes_from_catalog(dsn, bbox=(10.0, 0.0, 5.0, 1.0), collection="scenes")
