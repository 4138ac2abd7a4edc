"""Loading mosaics and composites into pgstac: one row per file, found by pgstac's own search
by place, time and year; a rebuild updates its item (never a second one); the collection's
extent follows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest
from mosaic_products import valid_values, write_mosaic

from glacierflow.catalog.loader import load_composites, load_mosaics
from glacierflow.processing.composites.build import build_composite, write_composite
from glacierflow.processing.composites.fit import Options
from glacierflow.processing.composites.synthetic import synthetic_cube, write_cube
from glacierflow.processing.mosaics import MosaicProducts, build_mosaics


def _items(dsn: str) -> dict[str, dict]:
    """id -> the item as pgstac hands it out (hydrated), for the mosaics collection."""
    with psycopg.connect(dsn, options="-c search_path=pgstac,public") as conn:
        rows = conn.execute(
            "SELECT id, pgstac.content_hydrate(items) FROM pgstac.items WHERE collection = %s",
            ("mosaics",),
        ).fetchall()
    return dict(rows)


def _search(dsn: str, **query: object) -> list[str]:
    with psycopg.connect(dsn, options="-c search_path=pgstac,public") as conn:
        (found,) = conn.execute(
            "SELECT pgstac.search(%s::jsonb)",
            (json.dumps({"collections": ["mosaics"], "limit": 100, **query}),),
        ).fetchone()
    return sorted(f["id"] for f in found["features"])


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> dict[str, MosaicProducts]:
    folder = tmp_path_factory.mktemp("mosaics")
    return {
        "2023": write_mosaic(folder, "TEST", 2023),
        "2024": write_mosaic(folder, "TEST", 2024, seed=1),
        "0000": write_mosaic(folder, "TEST", 0, seed=2),
    }


@pytest.fixture(scope="module")
def composite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cube, _ = synthetic_cube(n_pairs=400, years=(2022, 2024))
    data, _ = build_composite(cube, Options(window=(2022, 2024), intercept_year=2023))
    out = tmp_path_factory.mktemp("composite") / "cube_composite.nc"
    write_composite(data, out)
    return out


@pytest.fixture(scope="module")
def loaded(new_catalog, region: dict[str, MosaicProducts], composite: Path) -> str:
    dsn = new_catalog("mosaic_loader")
    ids = load_mosaics(dsn, region.values(), "mosaics")
    assert ids == [p.netcdf.stem for p in region.values()]
    assert load_composites(dsn, [composite], "mosaics") == [composite.stem]
    return dsn


def test_each_mosaic_and_composite_is_one_item(
    loaded: str, region: dict[str, MosaicProducts], composite: Path
) -> None:
    items = _items(loaded)
    assert sorted(items) == sorted([*(p.netcdf.stem for p in region.values()), composite.stem])
    stored = items[region["2023"].netcdf.stem]
    assert stored["properties"]["year"] == 2023
    assert stored["assets"]["v"]["bands"][0]["statistics"]["valid_percent"] > 50


def test_pgstac_finds_mosaics_by_place_time_and_year(
    loaded: str, region: dict[str, MosaicProducts], composite: Path
) -> None:
    annual, summary = region["2023"].netcdf.stem, region["0000"].netcdf.stem
    west, south, east, north = _items(loaded)[annual]["bbox"]
    inside = [(west + east) / 2 - 0.01, (south + north) / 2 - 0.01]
    inside += [inside[0] + 0.02, inside[1] + 0.02]
    found = _search(loaded, bbox=inside, datetime="2023-06-01T00:00:00Z")
    assert found == sorted([annual, summary]), "the year and the summary that spans it"
    assert _search(loaded, bbox=[0, 0, 1, 1]) == []
    year = {"op": "=", "args": [{"property": "year"}, 2024]}
    assert _search(loaded, filter=year, **{"filter-lang": "cql2-json"}) == [
        region["2024"].netcdf.stem
    ]
    product = {"op": "=", "args": [{"property": "product"}, "composite"]}
    assert _search(loaded, filter=product, **{"filter-lang": "cql2-json"}) == [composite.stem]


def test_a_rebuilt_mosaic_updates_its_item(new_catalog, tmp_path: Path) -> None:
    dsn = new_catalog("mosaic_rebuild")
    first = write_mosaic(tmp_path, "TEST", 2023)
    load_mosaics(dsn, [first], "mosaics")
    before = _items(dsn)
    load_mosaics(dsn, [first], "mosaics")
    assert _items(dsn) == before, "the same files: the same item"
    rebuilt = write_mosaic(tmp_path, "TEST", 2023, seed=9)  # the same names, new values
    os.utime(rebuilt.netcdf, (2e9, 2e9))
    load_mosaics(dsn, [rebuilt], "mosaics")
    after = _items(dsn)
    (name,) = after
    assert list(before) == [name]
    old, new = before[name], after[name]
    statistics = [i["assets"]["vx"]["bands"][0]["statistics"]["mean"] for i in (old, new)]
    assert statistics[0] != statistics[1]
    assert new["properties"]["updated"] == "2033-05-18T03:33:20+00:00"


def test_the_collection_extent_follows_the_items(loaded: str) -> None:
    with psycopg.connect(loaded) as conn:
        (extent,) = conn.execute(
            "SELECT content->'extent' FROM pgstac.collections WHERE id = 'mosaics'"
        ).fetchone()
    west, south, east, north = zip(*(item["bbox"] for item in _items(loaded).values()), strict=True)
    (bbox,) = extent["spatial"]["bbox"]
    assert bbox == pytest.approx([min(west), min(south), max(east), max(north)])
    ((start, end),) = extent["temporal"]["interval"]
    assert start.startswith("2022-01-01") and end.startswith("2024-12-31T23:59:59")


def test_mosaics_that_build_mosaics_made_register_and_describe_their_files(
    new_catalog, tmp_path: Path
) -> None:
    """The real thing: a synthetic cube's composite merged into a year and the summary."""
    cube, _ = synthetic_cube(n_pairs=400, years=(2022, 2024))
    write_cube(cube, str(tmp_path / "cube.zarr"))
    options = Options(window=(2022, 2024), intercept_year=2023)
    built = build_mosaics(
        [tmp_path / "cube.zarr"], [2023, 0], tmp_path / "out", "SYN", options=options
    )
    dsn = new_catalog("mosaic_built")
    ids = load_mosaics(dsn, built, "mosaics")
    assert ids == ["ITS_LIVE_velocity_120m_SYN_2023_v02", "ITS_LIVE_velocity_120m_SYN_0000_v02"]
    items = _items(dsn)
    summary = items["ITS_LIVE_velocity_120m_SYN_0000_v02"]
    assert summary["properties"]["climatology_years"] == [2022, 2024]
    assert summary["properties"]["end_datetime"].startswith("2024-12-31")
    for products in built:
        item = items[products.netcdf.stem]
        assert set(item["assets"]) == {*products.cogs, "v_3857", "data"}
        for name, path in products.cogs.items():
            values, _ = valid_values(path)
            statistics = item["assets"][name]["bands"][0]["statistics"]
            if values.size:
                assert statistics["mean"] == pytest.approx(values.mean(), rel=1e-12), name
