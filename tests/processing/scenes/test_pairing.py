"""Pairing rules on hand-made scenes: footprint (tile or overlap), clouds, dt windows per
sensor combination, the cap per scene, done pairs, and the same answer in any order."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from glacierflow.processing.scenes import Pair, Scene
from glacierflow.processing.scenes.pairing import PairRules, find_pairs

T0 = datetime(2024, 6, 1, 20, 40, tzinfo=UTC)


def _box(lon: float, lat: float, size: float = 1.0) -> dict:
    w, s, e, n = lon, lat, lon + size, lat + size
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _scene(
    name: str,
    day: float,
    instrument: str = "oli",
    tile: str | None = "WRS2-063018",
    cloud: float | None = 10.0,
    footprint: dict | None = None,
) -> Scene:
    platform = {"oli": "landsat-8", "msi": "sentinel-2a", "c-sar": "sentinel-1a"}[instrument]
    return Scene(
        id=name,
        href=f"/scenes/{name}.tif",
        datetime=T0 + timedelta(days=day),
        platform=platform,
        instrument=instrument,
        epsg=32607,
        footprint=footprint or _box(-141.0, 60.0),
        tile=tile,
        cloud_cover=cloud,
    )


def _ids(pairs: list[Pair]) -> list[str]:
    return [p.id for p in pairs]


def test_pairs_within_the_window_earlier_scene_first() -> None:
    scenes = [_scene(f"L{d:03d}", d) for d in (0, 16, 32, 600)]
    pairs = find_pairs(scenes)
    assert _ids(pairs) == ["L000_X_L016", "L000_X_L032", "L016_X_L032"]
    assert all(p.ref.datetime < p.sec.datetime for p in pairs)
    # the window's ends are inside it, a day beyond them is not
    rules = PairRules(dt_days={("oli", "oli"): (16.0, 32.0)})
    edge = [_scene("a", 0), _scene("b", 16), _scene("c", 32), _scene("d", 33)]
    assert _ids(find_pairs(edge, rules)) == ["a_X_b", "a_X_c", "b_X_c", "b_X_d"]


def test_same_tile_pairs_other_tiles_of_the_grid_do_not() -> None:
    scenes = [
        _scene("a", 0, tile="WRS2-063018"),
        _scene("b", 16, tile="WRS2-063019"),  # the next row: same footprint box here, still no
        _scene("c", 32, tile="WRS2-063018"),
    ]
    assert _ids(find_pairs(scenes)) == ["a_X_c"]


def test_without_tiles_footprints_must_overlap_enough() -> None:
    a = _scene("a", 0, tile=None, footprint=_box(-141.0, 60.0))
    half = _scene("b", 10, tile=None, footprint=_box(-140.5, 60.0))  # half of a
    apart = _scene("c", 20, tile=None, footprint=_box(-139.0, 60.0))  # not touching a
    assert _ids(find_pairs([a, half, apart], PairRules(min_overlap=0.4))) == ["a_X_b"]
    assert _ids(find_pairs([a, half, apart], PairRules(min_overlap=0.6))) == []


def test_footprints_across_the_antimeridian_are_compared_whole() -> None:
    west = [[179.5, 60.0], [180.0, 60.0], [180.0, 61.0], [179.5, 61.0], [179.5, 60.0]]
    east = [[-180.0, 60.0], [-179.5, 60.0], [-179.5, 61.0], [-180.0, 61.0], [-180.0, 60.0]]
    split = {"type": "MultiPolygon", "coordinates": [[west], [east]]}
    a = _scene("a", 0, tile=None, footprint=split)
    b = _scene("b", 16, tile=None, footprint=_box(179.6, 60.0, 0.8))  # inside a's west half
    c = _scene("c", 32, tile=None, footprint=split)
    assert _ids(find_pairs([a, b, c], PairRules(min_overlap=0.9))) == ["a_X_b", "a_X_c", "b_X_c"]


def test_cloudy_scenes_are_left_out_unknown_cover_is_not() -> None:
    scenes = [_scene("a", 0, cloud=60.0), _scene("b", 16, cloud=60.1), _scene("c", 32, cloud=None)]
    assert _ids(find_pairs(scenes)) == ["a_X_c"]
    assert _ids(find_pairs(scenes, PairRules(max_cloud=100))) == ["a_X_b", "a_X_c", "b_X_c"]


def test_windows_per_sensor_combination_and_cross_sensor_only_when_allowed() -> None:
    landsat = [_scene("L0", 0, "oli"), _scene("L1", 16, "oli")]
    sentinel = [_scene(f"S{d}", d + 1, "msi", tile="MGRS-07VCG") for d in (0, 5, 10)]
    scenes = landsat + sentinel
    # Sentinel-2 in its own window, Landsat in its own; 15 m with 10 m pixels: not by default
    rules = PairRules(
        dt_days={("oli", "oli"): (10.0, 20.0), ("msi", "msi"): (5.0, 5.0), ("msi", "oli"): (1, 4)}
    )
    assert _ids(find_pairs(scenes, rules)) == ["L0_X_L1", "S0_X_S5", "S5_X_S10"]
    # allowed: tiles of different grids, so the footprints decide (here the same box)
    crossed = PairRules(dt_days=rules.dt_days, cross_sensor=True)
    # (S10 is 5 days before L1: beyond the cross-sensor window)
    assert _ids(find_pairs(scenes, crossed)) == ["L0_X_S0", "L0_X_L1", "S0_X_S5", "S5_X_S10"]
    # a combination without a window is not paired, whatever cross_sensor says
    no_cross_window = PairRules(dt_days={("oli", "oli"): (10.0, 20.0)}, cross_sensor=True)
    assert _ids(find_pairs(scenes, no_cross_window)) == ["L0_X_L1"]


def test_each_scene_is_the_reference_of_at_most_the_cap_nearest_first() -> None:
    scenes = [_scene(f"S{d:02d}", d, "msi", tile="MGRS-07VCG") for d in range(0, 60, 5)]
    pairs = find_pairs(scenes, PairRules(max_pairs_per_scene=3))
    by_ref: dict[str, list[str]] = {}
    for pair in pairs:
        by_ref.setdefault(pair.ref.id, []).append(pair.sec.id)
    assert by_ref["S00"] == ["S05", "S10", "S15"]
    assert all(len(secs) <= 3 for secs in by_ref.values())
    assert len(pairs) == 3 * 9 + 2 + 1  # the last scenes have fewer partners left
    assert len(find_pairs(scenes, PairRules(max_pairs_per_scene=None))) == 66


def test_done_pairs_are_skipped_and_the_rest_unchanged() -> None:
    scenes = [_scene(f"S{d:02d}", d, "msi", tile="MGRS-07VCG") for d in range(0, 60, 5)]
    rules = PairRules(max_pairs_per_scene=3)
    every = find_pairs(scenes, rules)
    done = {p.id for p in every[::2]}
    rest = find_pairs(scenes, rules, done=done)
    assert _ids(rest) == [p.id for p in every if p.id not in done]
    assert find_pairs(scenes, rules, done=set(_ids(every))) == []


def test_the_same_pairs_in_any_order_and_duplicates_once() -> None:
    scenes = [_scene(f"L{d:03d}", d) for d in range(0, 200, 16)]
    scenes += [_scene(f"S{d:03d}", d + 0.5, "msi", tile="MGRS-07VCG") for d in range(0, 200, 5)]
    rules = PairRules(cross_sensor=True, max_pairs_per_scene=4)
    expected = find_pairs(scenes, rules)
    assert expected == sorted(expected, key=lambda p: (p.ref.datetime, p.ref.id, p.sec.datetime))
    for seed in range(5):
        shuffled = scenes + scenes[:7]  # repeated scenes count once
        random.Random(seed).shuffle(shuffled)
        assert find_pairs(shuffled, rules) == expected
    assert len(set(_ids(expected))) == len(expected)


def test_rules_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="sorted"):
        PairRules(dt_days={("oli", "msi"): (5.0, 10.0)})
    with pytest.raises(ValueError, match="0 < min <= max"):
        PairRules(dt_days={("oli", "oli"): (20.0, 10.0)})
    with pytest.raises(ValueError, match="min_overlap"):
        PairRules(min_overlap=0)
    with pytest.raises(ValueError, match="max_pairs_per_scene"):
        PairRules(max_pairs_per_scene=0)
