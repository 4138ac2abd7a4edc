"""Which scenes to pair, as ITS_LIVE chooses them: same footprint, few clouds, a time
separation inside the window of the sensors' combination.

Two scenes share a footprint when they carry the same tile of one grid (Landsat WRS-2
path/row, Sentinel-2 MGRS tile: `Scene.tile`); otherwise (no tile, or tiles of different
grids, as in a Landsat/Sentinel-2 pair) when their footprints overlap by at least
`min_overlap` of the smaller one's area, measured in an equal-area projection. ITS_LIVE
pairs scenes up to 544 days apart with at most 60 % cloud; the windows here span 5 to
546 days by default (per combination of instruments), and cross-sensor pairs (which the
tracker handles by resampling the secondary onto the reference's grid) are off unless
asked for. A cap per scene keeps the work bounded: each scene is the reference of at most
`max_pairs_per_scene` pairs, its nearest later partners first. Pairs already done are
left out after that choice, so a rerun picks the same pairs and skips the done ones.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import shape

from glacierflow.processing.scenes.model import Pair, Scene

Combination = tuple[str, str]  # two instruments, sorted: ("msi", "oli")


def _default_windows() -> dict[Combination, tuple[float, float]]:
    return {
        ("oli", "oli"): (8.0, 546.0),  # Landsat 8 and 9: 8 days apart at the closest
        ("msi", "msi"): (5.0, 546.0),  # Sentinel-2A and 2B: 5 days
        ("msi", "oli"): (5.0, 546.0),  # only with cross_sensor
        ("c-sar", "c-sar"): (6.0, 546.0),  # Sentinel-1A and 1B: 6 days
    }


@dataclass(frozen=True)
class PairRules:
    """The rules a pair must meet.

    dt_days: the allowed separation [min, max] in days per combination of instruments
    (`Scene.instrument`, the key sorted); a combination without a window is not paired.
    max_cloud: percent; a scene above it is not paired (unknown cloud cover passes).
    min_overlap: the shared area as a fraction of the smaller footprint, for scenes
    without a common tile. max_pairs_per_scene: None for no cap.
    """

    dt_days: Mapping[Combination, tuple[float, float]] = field(default_factory=_default_windows)
    max_cloud: float = 60.0
    min_overlap: float = 0.5
    max_pairs_per_scene: int | None = 10
    cross_sensor: bool = False

    def __post_init__(self) -> None:
        for combination, (low, high) in self.dt_days.items():
            if tuple(sorted(combination)) != tuple(combination) or len(combination) != 2:
                raise ValueError(f"dt_days key {combination!r}: give two instruments, sorted")
            if not 0 < low <= high:
                raise ValueError(f"dt_days {combination}: need 0 < min <= max, got {low}, {high}")
        if not 0 < self.min_overlap <= 1:
            raise ValueError(f"min_overlap must be in (0, 1], got {self.min_overlap}")
        if self.max_pairs_per_scene is not None and self.max_pairs_per_scene < 1:
            raise ValueError(
                f"max_pairs_per_scene must be at least 1, got {self.max_pairs_per_scene}"
            )

    def window(self, ref: Scene, sec: Scene) -> tuple[float, float] | None:
        """The dt window of the two scenes' instruments; None when they are not paired."""
        if ref.instrument != sec.instrument and not self.cross_sensor:
            return None
        key = (ref.instrument, sec.instrument)
        return self.dt_days.get((min(key), max(key)))


def find_pairs(
    scenes: Iterable[Scene], rules: PairRules = PairRules(), done: Collection[str] = ()
) -> list[Pair]:
    """Every pair the rules allow, earlier scene as reference, sorted by the reference's
    time then the secondary's (and ids): the same list whatever the order of `scenes`.
    Pairs whose id is in `done` are chosen as usual, then left out."""
    usable = sorted(
        {s.id: s for s in sorted(scenes, key=_order, reverse=True)}.values(), key=_order
    )
    usable = [s for s in usable if s.cloud_cover is None or s.cloud_cover <= rules.max_cloud]
    longest = max((high for _, high in rules.dt_days.values()), default=0.0)
    footprints = _Footprints()
    pairs = []
    for i, ref in enumerate(usable):
        chosen: list[Pair] = []
        for sec in usable[i + 1 :]:
            pair = Pair(ref, sec)
            dt = pair.dt_days
            if dt > longest:
                break
            window = rules.window(ref, sec)
            if window is None or not window[0] <= dt <= window[1]:
                continue
            if not footprints.same(ref, sec, rules.min_overlap):
                continue
            chosen.append(pair)
            if rules.max_pairs_per_scene is not None and len(chosen) >= rules.max_pairs_per_scene:
                break
        pairs.extend(p for p in chosen if p.id not in done)
    return pairs


def _order(scene: Scene) -> tuple:
    return scene.datetime, scene.id


class _Footprints:
    """Footprint comparisons, with each footprint projected once per equal-area frame."""

    def __init__(self) -> None:
        self._projected: dict[tuple[str, tuple[int, int]], shapely.Geometry] = {}

    def same(self, a: Scene, b: Scene, min_overlap: float) -> bool:
        if a.tile and b.tile and _grid(a.tile) == _grid(b.tile):
            return a.tile == b.tile
        centre = _centre(a)
        pa, pb = self._project(a, centre), self._project(b, centre)
        smaller = min(pa.area, pb.area)
        return smaller > 0 and pa.intersection(pb).area >= min_overlap * smaller

    def _project(self, scene: Scene, centre: tuple[int, int]) -> shapely.Geometry:
        key = (scene.id, centre)
        if key not in self._projected:
            forward = _equal_area(centre)
            geometry = shape(scene.footprint)
            self._projected[key] = shapely.make_valid(
                shapely.transform(geometry, lambda xy: np.column_stack(forward.transform(*xy.T)))
            )
        return self._projected[key]


def _grid(tile: str) -> str:
    """The grid a tile code belongs to: "WRS2" of "WRS2-063018"."""
    return tile.split("-", 1)[0]


def _centre(scene: Scene) -> tuple[int, int]:
    """The whole degree (lon, lat) of the footprint's first ring's centroid: one frame for
    the scenes of one place (the first ring: a footprint split at 180° has two)."""
    geometry = shape(scene.footprint)
    first = geometry.geoms[0] if hasattr(geometry, "geoms") else geometry
    point = first.centroid
    return round(point.x), round(point.y)


@cache
def _equal_area(centre: tuple[int, int]) -> Transformer:
    """Lon/lat to a Lambert azimuthal equal-area projection centred on `centre`."""
    lon, lat = centre
    return Transformer.from_crs(
        "EPSG:4326", f"+proj=laea +lat_0={lat} +lon_0={lon} +datum=WGS84", always_xy=True
    )
