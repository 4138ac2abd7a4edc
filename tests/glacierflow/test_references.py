"""Reference velocities: which summary mosaic a pair gets as its prior, the scenes' masks
read the right way, and the demo region run twice on a real catalog: the first run has no
mosaic to use, the second tracks its new pair with the first's summary mosaic, which
brings it at least as close to the truth as tracking without one."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import let_postgres_traverse

from glacierflow.catalog.scenes import scene_from_item
from glacierflow.processing.io.scenes import MaskKind
from glacierflow.processing.pipeline import pair_masks, scene_mask_kind
from glacierflow.processing.scenes import Pair, Scene
from glacierflow.processing.scenes.pairing import PairRules, find_pairs
from glacierflow.processing.scenes.region import LANDSAT, Region
from glacierflow.references import (
    ReferenceMosaic,
    choose_reference,
    reference_effect,
    reference_from_item,
)
from glacierflow.run import TRACK_DEFAULTS, dask_client, finished_granule, pair_folder, run_pairs
from glacierflow.settings import Settings


def _box(west: float, south: float, east: float, north: float) -> dict:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def _mosaic(name: str, footprint: dict, day: int) -> ReferenceMosaic:
    return ReferenceMosaic(
        name, f"{name}_vx.tif", f"{name}_vy.tif", footprint, datetime(2025, 1, day, tzinfo=UTC)
    )


PAIR_FOOTPRINT = _box(-140.0, 60.0, -139.0, 60.5)


def test_the_newest_summary_covering_the_pair_is_its_reference() -> None:
    old = _mosaic("old", _box(-141, 59, -138, 61), 1)
    new = _mosaic("new", _box(-140.2, 59.9, -139.3, 60.6), 5)  # 70 % of the pair
    elsewhere = _mosaic("elsewhere", _box(-130, 59, -128, 61), 9)
    edge = _mosaic("edge", _box(-139.3, 59, -138, 61), 9)  # 30 %: does not cover it
    for order in ([old, new, elsewhere, edge], [edge, elsewhere, new, old]):
        assert choose_reference(order, PAIR_FOOTPRINT) is new
    assert choose_reference([old, edge], PAIR_FOOTPRINT) is old
    assert choose_reference([elsewhere, edge], PAIR_FOOTPRINT) is None
    assert choose_reference([], PAIR_FOOTPRINT) is None


def test_only_summary_mosaics_with_vx_and_vy_are_candidates(tmp_path: Path) -> None:
    assets = {k: {"href": f"mosaics/M_{k}.tif"} for k in ("v", "vx", "vy")}
    item = {
        "id": "M_0000",
        "geometry": PAIR_FOOTPRINT,
        "properties": {"product": "summary", "updated": "2025-01-03T00:00:00+00:00"},
        "assets": {**assets, "vy": {"href": "https://example.org/M_vy.tif"}},
    }
    found = reference_from_item(item, tmp_path)
    assert found is not None
    assert found.vx == str(tmp_path / "mosaics/M_vx.tif")  # relative: under the data dir
    assert found.vy == "https://example.org/M_vy.tif"
    assert found.updated == datetime(2025, 1, 3, tzinfo=UTC)
    annual = {**item, "properties": {"product": "annual", "updated": "2025-01-03T00:00:00Z"}}
    assert reference_from_item(annual, tmp_path) is None
    no_vx = {**item, "assets": {"v": assets["v"], "vy": assets["vy"]}}
    assert reference_from_item(no_vx, tmp_path) is None


def _item(platform: str, mask: str | None) -> dict:
    assets = {"band": {"href": f"{platform}.tif"}}
    properties = {"platform": platform, "datetime": "2025-01-01T00:00:00Z", "proj:epsg": 32607}
    properties["glacierflow:band"] = "band"
    if mask:
        assets[mask] = {"href": f"{platform}_{mask}.tif"}
        properties["glacierflow:mask"] = mask
    return {"id": platform, "geometry": PAIR_FOOTPRINT, "properties": properties, "assets": assets}


def test_each_source_s_mask_is_read_as_its_kind() -> None:
    scl = scene_from_item(_item("sentinel-2a", "scl"))
    upper = scene_from_item(_item("sentinel-2b", "SCL"))
    qa = scene_from_item(_item("landsat-8", "qa_pixel"))
    cloud = scene_from_item(_item("landsat-8", "cloud"))  # the demo region's, as catalogued
    bare = scene_from_item(_item("sentinel-1a", None))
    assert [scene_mask_kind(s) for s in (scl, upper, qa, cloud, bare)] == [
        MaskKind.SCL,
        MaskKind.SCL,
        MaskKind.QA_PIXEL,
        MaskKind.NONZERO,
        None,
    ]
    later = replace(scl, id="later", mask_href="later_scl.tif")
    assert pair_masks(Pair(scl, later)) == {
        "ref_mask": "sentinel-2a_scl.tif",
        "sec_mask": "later_scl.tif",
        "mask_kind": MaskKind.SCL,
    }
    # a pair whose masks read differently keeps the reference's, read its way
    assert pair_masks(Pair(qa, scl)) == {
        "ref_mask": "landsat-8_qa_pixel.tif",
        "sec_mask": None,
        "mask_kind": MaskKind.QA_PIXEL,
    }
    assert pair_masks(Pair(bare, bare))["ref_mask"] is None


# -- the demo region run twice ------------------------------------------------------------
REGION = Region(width_m=4_800, height_m=3_840, clear_days=1.0)
TEMPLATE = replace(TRACK_DEFAULTS, max_speed_m_per_yr=3_000)
# the composites fit pixels with at least 30 pairs: 17 scenes, 4 pairs each (fewer at the end)
FIRST_SEASON = (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 12, 1, tzinfo=UTC))
SEASON_RULES = PairRules(dt_days={("oli", "oli"): (16, 64)}, max_pairs_per_scene=4)
ICE_TOLERANCE = 40.0  # m/yr, median inside the ice
ROCK_TOLERANCE = 15.0  # m/yr, median on rock


def _later_pair(folder: Path, start: datetime, days: int) -> Pair:
    passes = REGION.acquisitions(start, start + timedelta(days=days + 16), [LANDSAT])
    return Pair(passes[0].write(folder), passes[days // 16].write(folder))


def _attrs(settings: Settings, pair: Pair) -> dict:
    granule = finished_granule(pair_folder(settings.data_dir / "granules", pair))
    assert granule is not None, pair.id
    with xr.open_dataset(granule) as ds:
        return dict(ds.attrs)


@pytest.fixture(scope="module")
def region_runs(tmp_path_factory: pytest.TempPathFactory, new_catalog) -> dict:
    """A first run on a season of pairs (no summary mosaic yet); then, on one cluster,
    a pair with --no-references and another with references."""
    folder = tmp_path_factory.mktemp("references")
    scenes = REGION.write_scenes(folder / "scenes", *FIRST_SEASON, [LANDSAT])
    first = find_pairs(scenes, SEASON_RULES)
    settings = Settings(data_dir=folder / "data", dask_workers=1)
    settings.data_dir.mkdir()
    let_postgres_traverse(settings.data_dir)
    dsn = new_catalog("references_run")
    from glacierflow.catalog.loader import init_catalog

    init_catalog(dsn, settings.collection_ids)
    off = _later_pair(folder / "scenes", datetime(2025, 3, 1, tzinfo=UTC), 32)
    on = _later_pair(folder / "scenes", datetime(2025, 3, 20, tzinfo=UTC), 32)
    with dask_client(workers=1) as client:
        say = lambda _: None  # noqa: E731
        common = {"template": TEMPLATE, "region": "DEMO", "client": client, "say": say}
        reports = {
            "first": run_pairs(settings, first, dsn, **common),
            "off": run_pairs(settings, [off], dsn, references=False, **common),
            "on": run_pairs(settings, [on], dsn, **common),
        }
    return {"settings": settings, "pairs": {"first": first, "off": off, "on": on}, **reports}


def test_a_first_run_has_no_reference_and_uses_the_cloud_masks(region_runs: dict) -> None:
    report, settings = region_runs["first"], region_runs["settings"]
    assert report.ok, report.table()
    assert len(report.tracked) == len(region_runs["pairs"]["first"]) >= 30
    assert report.referenced == {} and report.references == "on"
    assert "no summary mosaic covers them yet" in report.table()
    assert any(m.year == 0 for m in report.mosaics)
    attrs = _attrs(settings, region_runs["pairs"]["first"][0])
    assert attrs["parameter_reference_velocity"] == "none"
    assert (attrs["parameter_masks"], attrs["parameter_mask_kind"]) == ("ref sec", "nonzero")


def test_no_references_tracks_without_the_summary_mosaic(region_runs: dict) -> None:
    report, pair = region_runs["off"], region_runs["pairs"]["off"]
    assert report.ok and report.tracked == [pair.id]
    assert report.referenced == {} and "references off" in report.table()
    attrs = _attrs(region_runs["settings"], pair)
    assert attrs["parameter_reference_velocity"] == "none"


def test_a_later_run_tracks_new_pairs_with_the_summary_mosaic(
    region_runs: dict, tmp_path: Path
) -> None:
    report, settings = region_runs["on"], region_runs["settings"]
    pair = region_runs["pairs"]["on"]
    (summary,) = [m for m in region_runs["first"].mosaics if m.year == 0]
    assert report.ok and report.referenced == {pair.id: summary.netcdf.stem}
    assert f"1  prior: {summary.netcdf.stem}" in report.table()
    attrs = _attrs(settings, pair)
    assert attrs["parameter_reference_velocity"] == summary.cogs["vx"].name
    # the same pair tracked both ways, against the truth
    from glacierflow.references import mosaic_reference

    rows = reference_effect(REGION, [pair], mosaic_reference(summary), tmp_path, TEMPLATE)
    without, with_ = (row.figures for row in rows)
    assert with_["ice_median"] <= ICE_TOLERANCE and with_["rock_median"] <= ROCK_TOLERANCE
    assert with_["ice_median"] <= without["ice_median"] + 2.0
    assert with_["rock_median"] <= without["rock_median"] + 1.0
    assert with_["valid_fraction"] >= without["valid_fraction"] - 0.02
    # what the run wrote is what tracking with the reference gives
    granule = finished_granule(pair_folder(settings.data_dir / "granules", pair))
    with xr.open_dataset(granule) as ran:
        # the reference's slowest 25 % (the rock) are the stable ground
        assert ran["vx"].attrs["stable_shift_flag"] == 2
        figures = REGION.granule_figures(ran, pair.ref.datetime, pair.sec.datetime)
    np.testing.assert_allclose(figures["ice_median"], with_["ice_median"], atol=0.5)


def test_scene_without_mask_kind_reads_its_platform_s_qa_band() -> None:
    scene = Scene(
        "S2", "b.tif", datetime(2025, 1, 1, tzinfo=UTC), "sentinel-2a", "msi", 32607,
        PAIR_FOOTPRINT, mask_href="scl.tif",
    )  # fmt: skip
    assert scene_mask_kind(scene) is MaskKind.SCL
    assert scene_mask_kind(replace(scene, extra={"mask_kind": "nonzero"})) is MaskKind.NONZERO
