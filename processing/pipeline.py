"""Image pair -> velocity granule: reading, tracking, velocity and writing, end to end.

This is the one place where the tracker's pixel world meets files and metres; the CLI,
the demo and the benchmarks all call `track_pair`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import CRS, Transformer
from rasterio.enums import Resampling
from rasterio.errors import CRSError, RasterioError
from rasterio.vrt import WarpedVRT

from glacierflow.processing.io.granule import (
    GranuleInputs,
    granule_dataset,
    granule_name,
    write_granule,
)
from glacierflow.processing.io.scenes import (
    MaskKind,
    SceneError,
    describe,
    open_pair,
    qa_mask_kind,
    remote_reading,
)
from glacierflow.processing.scenes import Pair, Scene
from glacierflow.processing.tracking.correlation import load_wisdom, save_wisdom
from glacierflow.processing.tracking.grid import NodeGrid, node_grid
from glacierflow.processing.tracking.preprocess import ImageFilter
from glacierflow.processing.tracking.presets import PRESETS, preset_for
from glacierflow.processing.tracking.tracker import (
    Reason,
    SubpixelMethod,
    TrackerOptions,
    search_limit,
    track,
)
from glacierflow.processing.tracking.velocity import DAYS_PER_YEAR, StableShift, to_velocity


@dataclass(frozen=True)
class TrackRequest:
    """A tracking job in the user's units (metres, m/yr), as the CLI takes it."""

    ref: str
    sec: str
    output: Path  # a .nc file, or a folder for an ITS_LIVE-named granule
    ref_time: str | None = None
    sec_time: str | None = None
    spacing_m: float = 120.0
    chip_min_m: float = 240.0
    chip_max_m: float = 960.0
    max_speed_m_per_yr: float = 10_000.0
    image_filter: ImageFilter = ImageFilter.HIGH_PASS
    subpixel: SubpixelMethod = SubpixelMethod.GAUSS_NEWTON
    prior_vx: str | None = None  # reference velocity: centres the search, and its slowest
    prior_vy: str | None = None  # 25 % are the stable ground when there is no stable mask
    stable_mask: str | None = None
    stable_shift: StableShift = StableShift.AUTO
    ref_mask: str | None = None  # non-zero where a REF pixel is unusable (cloud, shadow...)
    sec_mask: str | None = None
    mask_kind: MaskKind = MaskKind.NONZERO  # or a provider's QA band: Sentinel-2 SCL, QA_PIXEL
    threads: int = 1
    wisdom: Path | None = None
    memory_budget_bytes: int = 2 * 1024**3
    amplitude_db: bool = False  # radar backscatter: tracked in dB (the radar preset)
    ref_id: str | None = None  # the scenes' product names, where the files' are not them
    sec_id: str | None = None  # (a STAC asset's "B08.tif"): they name the granule


def scene_mask_kind(scene: Scene) -> MaskKind | None:
    """How a scene's mask reads (None: it has none): as its item says (`mask_kind` in
    `extra`: the catalog records it from the mask asset), else its platform's QA band."""
    if not scene.mask_href:
        return None
    if kind := scene.extra.get("mask_kind"):
        return MaskKind(kind)
    return qa_mask_kind(scene.platform)


def pair_masks(pair: Pair) -> dict[str, Any]:
    """The TrackRequest fields that make a pair's masks of its scenes' QA bands or cloud
    masks: both, when they read alike; the reference's alone when they do not (a
    Landsat x Sentinel-2 pair: a request reads its two masks one way)."""
    ref_kind, sec_kind = scene_mask_kind(pair.ref), scene_mask_kind(pair.sec)
    if ref_kind is None:
        return {"ref_mask": None, "sec_mask": None, "mask_kind": sec_kind or MaskKind.NONZERO}
    return {
        "ref_mask": pair.ref.mask_href,
        "sec_mask": pair.sec.mask_href if sec_kind is ref_kind else None,
        "mask_kind": ref_kind,
    }


def pair_request(pair: Pair, output: Path, **options: object) -> TrackRequest:
    """The request that tracks a pair of scenes (from the catalog or a generator): their
    hrefs, times and ids, their QA bands as masks (Sentinel-2 SCL, Landsat QA_PIXEL: clouds
    and shadows take no part), and the preset their sensor wants (radar: amplitude in dB
    and larger chips); `options` set any other field, or override these."""
    preset = PRESETS[preset_for(pair.ref.platform, pair.ref.instrument)]
    request = TrackRequest(
        ref=pair.ref.href,
        sec=pair.sec.href,
        output=output,
        ref_time=pair.ref.datetime.isoformat(),
        sec_time=pair.sec.datetime.isoformat(),
        chip_min_m=preset.chip_min_m,
        chip_max_m=preset.chip_max_m,
        amplitude_db=preset.amplitude_db,
        ref_id=pair.ref.id,
        sec_id=pair.sec.id,
        **pair_masks(pair),
    )
    return replace(request, **options)


@dataclass
class GranuleReport:
    """What a run produced, for the CLI to print and the benchmarks to time."""

    path: Path
    nodes: int
    valid_percentage: float
    reasons: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)


def _chip_ladder(chip_min_px: int, chip_max_px: int) -> tuple[int, ...]:
    sizes = [chip_min_px]
    while sizes[-1] * 2 <= chip_max_px:
        sizes.append(sizes[-1] * 2)
    return tuple(sizes)


def _even_pixels(metres: float, pixel: float, what: str) -> int:
    """A chip size in whole, even pixels (at least 4): even chips centre on a pixel edge."""
    if metres <= 0:
        raise SceneError(f"{what} must be positive, got {metres:g} m")
    return 2 * max(2, round(metres / pixel / 2))


def _sample_on_grid(path: str, crs: CRS, grid: NodeGrid, resampling: Resampling) -> np.ndarray:
    """Read a raster onto the node grid (any CRS), NaN outside it."""
    transform = rasterio.Affine(
        grid.spacing,
        0,
        grid.x[0] - grid.spacing / 2,
        0,
        -grid.spacing,
        grid.y[0] + grid.spacing / 2,
    )
    try:
        with (
            rasterio.open(path) as src,
            WarpedVRT(
                src,
                crs=crs,
                transform=transform,
                width=len(grid.x),
                height=len(grid.y),
                resampling=resampling,
                nodata=np.nan,
                dtype="float32",
            ) as vrt,
        ):
            return vrt.read(1)
    except (RasterioError, CRSError) as err:
        raise SceneError(f"{path}: cannot read it as a georeferenced raster ({err})") from err


def _prior_on_grid(
    vx_path: str, vy_path: str, crs: CRS, grid: NodeGrid
) -> tuple[np.ndarray, np.ndarray]:
    """A reference velocity on the node grid, its vectors along the grid's axes: a
    mosaic in another projection (ITS_LIVE's polar stereographic) has them along its
    own, turned by the grid convergence between the two."""
    vx = _sample_on_grid(vx_path, crs, grid, Resampling.bilinear)
    vy = _sample_on_grid(vy_path, crs, grid, Resampling.bilinear)
    try:
        with rasterio.open(vx_path) as src:
            source = CRS.from_wkt(src.crs.to_wkt())
    except (RasterioError, CRSError) as err:
        raise SceneError(f"{vx_path}: cannot read its projection ({err})") from err
    if source == crs:
        return vx, vy
    # imported here: the cubes package loads zarr, which tracking alone does not need
    from glacierflow.processing.cubes.reproject import jacobian, transform_vectors

    xs, ys = np.meshgrid(grid.x, grid.y)
    sx, sy = Transformer.from_crs(crs, source, always_xy=True).transform(xs, ys)
    jac = jacobian(Transformer.from_crs(source, crs, always_xy=True), sx, sy)
    return transform_vectors(vx, vy, jac)


def track_pair(
    req: TrackRequest, progress: Callable[[str], None] = lambda _: None
) -> GranuleReport:
    """Track one pair and write its granule; raises SceneError for unusable input. Scenes
    may be remote (http(s)://, s3://): they are read window by window."""
    with remote_reading():
        return _track_pair(req, progress)


def _track_pair(req: TrackRequest, progress: Callable[[str], None]) -> GranuleReport:
    clock = {"start": time.perf_counter()}
    ref_info = describe(req.ref, req.ref_time, req.ref_id)
    sec_info = describe(req.sec, req.sec_time, req.sec_id)
    dt_days = (sec_info.acquired - ref_info.acquired).total_seconds() / 86400
    if dt_days <= 0:
        raise SceneError(
            f"{req.sec} ({sec_info.acquired:%Y-%m-%dT%H:%M:%SZ}) is not after {req.ref} "
            f"({ref_info.acquired:%Y-%m-%dT%H:%M:%SZ}): the secondary image must be the later one"
        )
    if req.wisdom:
        load_wisdom(req.wisdom)
    with open_pair(
        req.ref, req.sec, req.ref_mask, req.sec_mask, req.amplitude_db, req.mask_kind
    ) as reader:
        geo = reader.geometry
        pixel = (abs(geo.transform.a), abs(geo.transform.e))
        if req.spacing_m < max(pixel):
            raise SceneError(
                f"--spacing {req.spacing_m:g} m is finer than {req.ref}'s {max(pixel):g} m "
                "pixels: give at least one pixel"
            )
        grid = node_grid(geo.transform, geo.shape, req.spacing_m)
        if 0 in grid.shape:
            raise SceneError(f"{req.ref}: smaller than one {req.spacing_m:g} m grid cell")
        chip_min = _even_pixels(req.chip_min_m, pixel[0], "--chip-min")
        chip_max = max(chip_min, _even_pixels(req.chip_max_m, pixel[0], "--chip-max"))
        if chip_min > min(geo.shape):
            raise SceneError(
                f"--chip-min {req.chip_min_m:g} m ({chip_min} px) is larger than {req.ref} "
                f"({geo.shape[1]} x {geo.shape[0]} px)"
            )
        wanted = max(2, math.ceil(req.max_speed_m_per_yr * dt_days / DAYS_PER_YEAR / pixel[0]) + 1)
        opts = TrackerOptions(
            chip_sizes_px=_chip_ladder(chip_min, chip_max),
            search_radius_px=wanted,
            coarse_chip_px=min(chip_max, 4 * chip_min),
            image_filter=req.image_filter,
            subpixel=req.subpixel,
            threads=req.threads,
            memory_budget_bytes=req.memory_budget_bytes,
        )
        limit = search_limit(opts, geo.shape, round(req.spacing_m / pixel[0]), wanted)
        search = limit.radius_px
        opts = replace(opts, search_radius_px=search, strip_rows=limit.strip_rows)
        if limit.clipped_by:
            progress(
                f"warning: search window clipped to +-{search} px by the {limit.clipped_by} "
                f"(--max-speed asks for +-{wanted} px"
                + (
                    f"; the budget is GLACIERFLOW_TRACK_MEMORY_BUDGET_MB="
                    f"{req.memory_budget_bytes // 2**20}"
                    if limit.clipped_by == "memory budget"
                    else ""
                )
                + "): faster motion is not measured"
            )
        crs = CRS.from_wkt(geo.crs.to_wkt())
        prior = reference_speed = None
        if req.prior_vx and req.prior_vy:
            years = dt_days / DAYS_PER_YEAR
            vx, vy = _prior_on_grid(req.prior_vx, req.prior_vy, crs, grid)
            prior = np.stack([-vy * years / pixel[1], vx * years / pixel[0]], axis=2)
            reference_speed = np.hypot(vx, vy)
        stable = None
        if req.stable_mask:
            stable = _sample_on_grid(req.stable_mask, crs, grid, Resampling.nearest) > 0
        progress(
            f"tracking {grid.shape[0]}x{grid.shape[1]} nodes, chips {opts.chip_sizes_px} px, "
            f"search +-{search} px, dt {dt_days:.2f} days"
        )
        clock["read"] = time.perf_counter()
        reported = [-1]

        def strips_done(done: int, total: int) -> None:
            tenth = 10 * done // total
            if tenth > reported[0] and total > 1:
                reported[0] = tenth
                progress(f"  {100 * done // total:3d} % ({done}/{total} strips)")

        result = track(reader, geo.shape, grid.rows, grid.cols, opts, prior, strips_done)
    clock["track"] = time.perf_counter()
    if req.wisdom:
        save_wisdom(req.wisdom)
    vel = to_velocity(result, pixel, dt_days, stable, reference_speed, req.stable_shift)
    chip_m = result.chip_px * pixel[0], result.chip_px * pixel[1]
    inputs = GranuleInputs(
        ref=ref_info,
        sec=sec_info,
        crs=crs,
        grid=grid,
        chip_size_m=chip_m,
        interpolated=result.interpolated,
        reason=result.reason,
        pixel_size_m=(float(pixel[0]), float(pixel[1])),
        parameters={
            "spacing_m": req.spacing_m,
            "chip_sizes_px": " ".join(map(str, opts.chip_sizes_px)),
            "search_radius_px": search,
            "search_radius_requested_px": wanted,
            "search_radius_clipped_by": limit.clipped_by or "none",
            "image_filter": str(req.image_filter),
            "subpixel": str(req.subpixel),
            "amplitude": "dB" if req.amplitude_db else "as read",
            "stable_shift": str(req.stable_shift),
            "masks": " ".join(
                name for name, path in (("ref", req.ref_mask), ("sec", req.sec_mask)) if path
            )
            or "none",
            "mask_kind": str(req.mask_kind),
            # the prior's file: a pair tracked with a reference velocity says which
            "reference_velocity": (
                Path(req.prior_vx).name if req.prior_vx and req.prior_vy else "none"
            ),
        },
    )
    ds = granule_dataset(vel, inputs)
    valid = vel.quality["valid_percentage"]
    path = req.output
    if path.suffix != ".nc":
        path = path / granule_name(ref_info, sec_info, req.spacing_m, valid)
    write_granule(ds, path)
    clock["write"] = time.perf_counter()
    counts = np.bincount(result.reason.ravel(), minlength=len(Reason))
    return GranuleReport(
        path=path,
        nodes=int(result.reason.size),
        valid_percentage=valid,
        reasons={r.name.lower(): int(counts[r]) for r in Reason},
        seconds={
            "read": clock["read"] - clock["start"],
            "track": clock["track"] - clock["read"],
            "write": clock["write"] - clock["track"],
            "total": clock["write"] - clock["start"],
        },
    )
