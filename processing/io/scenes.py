"""Reading scenes: single-band GeoTIFFs/COGs by path or URL, read window by window.

Everything a user can get wrong about an input is checked here, before any work, and
reported as a `SceneError` that names the file and the problem.

Remote scenes (http(s):// and s3:// hrefs, as STAC imports keep them) are read by GDAL's
/vsicurl/ and /vsis3/ with range requests, a window at a time: nothing is downloaded
whole. `remote_reading()` sets GDAL up for that.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from glacierflow.processing.tracking.tracker import padded_block


class SceneError(ValueError):
    """An input image that cannot be used, with the reason."""


@dataclass(frozen=True)
class SceneInfo:
    """What the granule needs to know about one image."""

    path: str
    scene_id: str
    acquired: datetime
    mission: str
    satellite: str
    sensor: str


# Landsat Collection-2 and Sentinel-2 product names carry the platform.
_LANDSAT = re.compile(r"^L([COTEM])0?(\d)_")
_SENTINEL2 = re.compile(r"^S2([ABC])_")
_SENTINEL1 = re.compile(r"^S1([ABC])_")

# GDAL's settings for reading COGs over HTTP(S) and S3, where the environment does not
# set them: no directory listing on open (a COG is one file), ranges merged into as few
# requests as may be, retries of a failed request, and a block cache of what was fetched
REMOTE_GDAL_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "VSI_CACHE": "TRUE",
}


@contextmanager
def remote_reading() -> Iterator[None]:
    """GDAL set up for remote scenes (REMOTE_GDAL_OPTIONS, where the environment leaves them
    unset); an S3-compatible store named by the standard AWS_ENDPOINT_URL (MinIO, Ceph)
    becomes GDAL's AWS_S3_ENDPOINT, path-style."""
    options = {k: v for k, v in REMOTE_GDAL_OPTIONS.items() if k not in os.environ}
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and "AWS_S3_ENDPOINT" not in os.environ:
        scheme, _, host = endpoint.partition("://")
        options |= {
            "AWS_S3_ENDPOINT": host.rstrip("/"),
            "AWS_HTTPS": "NO" if scheme == "http" else "YES",
            "AWS_VIRTUAL_HOSTING": "FALSE",
        }
    with rasterio.Env(**options):
        yield


def _platform(scene_id: str, tags: dict[str, str]) -> tuple[str, str, str]:
    """(mission, satellite, sensor) as ITS_LIVE writes them: ("L", "8", "C"), ("S", "2A", "MSI")."""
    if m := _LANDSAT.match(scene_id):
        return "L", m.group(2), m.group(1)
    if m := _SENTINEL2.match(scene_id):
        return "S", f"2{m.group(1)}", "MSI"
    if m := _SENTINEL1.match(scene_id):
        return "S", f"1{m.group(1)}", "C"
    return (
        tags.get("MISSION", "unknown"),
        tags.get("SATELLITE", "unknown"),
        tags.get("SENSOR", "unknown"),
    )


def parse_time(text: str) -> datetime:
    """ISO 8601 or TIFF ("YYYY:MM:DD HH:MM:SS") time; naive times are UTC."""
    text = text.strip()
    tiff = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}:\d{2}:\d{2}(?:\.\d+)?)", text)
    if tiff:
        text = f"{tiff.group(1)}-{tiff.group(2)}-{tiff.group(3)}T{tiff.group(4)}"
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise SceneError(
            f"cannot read the time {text!r}: use ISO 8601, e.g. 2024-07-01T12:00:00"
        ) from err
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _open(path: str) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except RasterioIOError as err:
        reason = "no such file" if "://" not in path and not Path(path).exists() else str(err)
        raise SceneError(f"{path}: cannot read it as an image ({reason})") from err


def _check_content(path: str, ds: rasterio.DatasetReader) -> None:
    """Reject images with no valid pixel or no texture.

    A 4 x 4 grid of small windows usually settles it; only an image that looks empty or
    flat there is read whole (decimated) before it is rejected.
    """
    try:
        size = 64
        rows = np.linspace(0, max(ds.height - size, 0), 4).astype(int)
        cols = np.linspace(0, max(ds.width - size, 0), 4).astype(int)
        windows = [
            Window(c, r, min(size, ds.width), min(size, ds.height)) for r in rows for c in cols
        ]
        samples = [ds.read(1, window=w, masked=True) for w in windows]
        if _has_texture(samples):
            return
        shape = (min(ds.height, 1024), min(ds.width, 1024))
        whole = ds.read(1, out_shape=shape, masked=True, resampling=Resampling.nearest)
    except RasterioIOError as err:
        raise SceneError(
            f"{path}: the image data cannot be read ({err}); is the file truncated?"
        ) from err
    values = whole.astype(np.float64).filled(np.nan)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise SceneError(f"{path}: every pixel is nodata or NaN; there is nothing to track")
    if np.ptp(finite) == 0:
        raise SceneError(f"{path}: the image has no texture (every pixel is {finite[0]:g})")


def _has_texture(samples: list[np.ma.MaskedArray]) -> bool:
    values = np.concatenate([s.astype(np.float64).filled(np.nan).ravel() for s in samples])
    finite = values[np.isfinite(values)]
    return finite.size > 0 and np.ptp(finite) > 0


def describe(path: str, time_override: str | None = None, scene_id: str | None = None) -> SceneInfo:
    """Open and check one scene; read its acquisition time from the flag or its tags.
    `scene_id`: the product's name where the file's is not it (a STAC asset "B08.tif")."""
    with _open(path) as ds:
        if ds.count != 1:
            raise SceneError(f"{path}: has {ds.count} bands; give a single-band image")
        if ds.crs is None or ds.transform.is_identity:
            raise SceneError(f"{path}: is not georeferenced (no CRS or geotransform)")
        tags = {k.upper(): v for k, v in ds.tags().items()}
        _check_content(path, ds)
    when = time_override or tags.get("TIFFTAG_DATETIME") or tags.get("ACQUISITION_TIME")
    if not when:
        raise SceneError(
            f"{path}: no acquisition time (TIFFTAG_DATETIME or ACQUISITION_TIME tag); "
            "pass it with --ref-time/--sec-time"
        )
    try:
        acquired = parse_time(when)
    except SceneError as err:
        raise SceneError(f"{path}: {err}") from err
    scene_id = scene_id or Path(path.split("?")[0]).name.rsplit(".", 1)[0]
    mission, satellite, sensor = _platform(scene_id, tags)
    return SceneInfo(path, scene_id, acquired, mission, satellite, sensor)


@dataclass(frozen=True)
class PairGeometry:
    """The reference grid that both images are read on."""

    crs: rasterio.crs.CRS
    transform: rasterio.Affine
    shape: tuple[int, int]


class MaskKind(StrEnum):
    """What a mask raster's values mean: which of them make a pixel unusable."""

    NONZERO = "nonzero"  # a mask made for the purpose: non-zero is unusable
    SCL = "scl"  # Sentinel-2 L2A scene classification (the `scl`/`SCL` asset)
    QA_PIXEL = "qa_pixel"  # Landsat Collection 2 QA_PIXEL bit flags


# SCL classes that hide the ground: no data, saturated or defective, cloud shadow, cloud of
# medium and high probability, thin cirrus (snow and ice, class 11, is what we track)
_SCL_UNUSABLE = (0, 1, 3, 8, 9, 10)
# QA_PIXEL bits 0-4: fill, dilated cloud, cirrus, cloud, cloud shadow
_QA_PIXEL_UNUSABLE = 0b11111


def unusable(values: np.ndarray, kind: MaskKind = MaskKind.NONZERO) -> np.ndarray:
    """Where a mask's values (NaN beyond its extent) mark a pixel unusable."""
    outside = ~np.isfinite(values)
    if kind is MaskKind.NONZERO:
        return outside | (values != 0)
    codes = np.where(outside, 0, values).astype(np.int64)
    if kind is MaskKind.SCL:
        return outside | np.isin(codes, _SCL_UNUSABLE)
    return outside | (codes & _QA_PIXEL_UNUSABLE != 0)


def qa_mask_kind(platform: str) -> MaskKind | None:
    """The kind of a platform's QA band, as STAC imports keep it (None: it has none)."""
    name = platform.lower()
    if name.startswith("sentinel-2"):
        return MaskKind.SCL
    if name.startswith("landsat"):
        return MaskKind.QA_PIXEL
    return None


def to_decibels(values: np.ndarray, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """Radar backscatter (linear power, as digital numbers with their scale and offset) in
    dB: speckle's multiplicative noise becomes additive, and bright targets no longer
    outweigh the rest of a chip. Zero or negative power has no dB: NaN, unusable."""
    linear = values.astype(np.float64) * scale + offset
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10.0 * np.log10(linear)
    db[~(linear > 0)] = np.nan
    return db.astype(np.float32)


class PairReader:
    """Reads matching windows of REF and of SEC resampled onto REF's grid, NaN where
    a pixel has no data or its image's mask marks it unusable. Callable as the tracker's
    `BlockReader`. `decibels`: (scale, offset) of REF's and SEC's digital numbers, to read
    radar amplitude in dB; None reads the values as they are."""

    def __init__(
        self,
        ref: rasterio.DatasetReader,
        sec: rasterio.io.DatasetReaderBase,
        paths: tuple[str, str],
        masks: tuple[rasterio.io.DatasetReaderBase | None, rasterio.io.DatasetReaderBase | None]
        | None = None,
        mask_paths: tuple[str | None, str | None] = (None, None),
        decibels: tuple[tuple[float, float], tuple[float, float]] | None = None,
        mask_kind: MaskKind = MaskKind.NONZERO,
    ):
        self._ref = ref
        self._mask_kind = mask_kind
        self._decibels = decibels
        self._sec = sec
        self._paths = paths
        self._masks = masks or (None, None)
        self._mask_paths = mask_paths
        self._lock = threading.Lock()  # a GDAL dataset must not be read from two threads
        self.geometry = PairGeometry(ref.crs, ref.transform, (ref.height, ref.width))

    @staticmethod
    def _read(ds, path: str, r0: int, r1: int, c0: int, c1: int, masked: bool = True) -> np.ndarray:
        def fetch(rr0: int, rr1: int, cc0: int, cc1: int) -> np.ndarray:
            window = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
            try:
                data = np.ma.asarray(ds.read(1, window=window, masked=masked))
            except RasterioIOError as err:
                raise SceneError(
                    f"{path}: rows {rr0}-{rr1}, columns {cc0}-{cc1} cannot be read ({err}); "
                    "is the file damaged?"
                ) from err
            return data.astype(np.float32).filled(np.nan)

        return padded_block((ds.height, ds.width), (r0, r1), (c0, c1), fetch)

    def __call__(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            images = (
                self._read(self._ref, self._paths[0], r0, r1, c0, c1),
                self._read(self._sec, self._paths[1], r0, r1, c0, c1),
            )
            if self._decibels:
                images = tuple(
                    to_decibels(image, *linear)
                    for image, linear in zip(images, self._decibels, strict=True)
                )
            for image, mask, path in zip(images, self._masks, self._mask_paths, strict=True):
                if mask is not None:
                    # as its kind says, and beyond the mask's extent (NaN): unusable
                    hidden = self._read(mask, path, r0, r1, c0, c1, masked=False)
                    image[unusable(hidden, self._mask_kind)] = np.nan
            return images


def _on_ref_grid(
    stack: ExitStack,
    ref: rasterio.DatasetReader,
    ds: rasterio.DatasetReader,
    paths: tuple[str, str],
    resampling: Resampling,
    src_nodata: float | None,
) -> rasterio.io.DatasetReaderBase:
    """`ds` as it lies on REF's grid: itself when it shares it, else warped (NaN outside)."""
    bounds = transform_bounds(ds.crs, ref.crs, *ds.bounds, densify_pts=21)
    rb = ref.bounds
    if (
        bounds[0] >= rb.right
        or bounds[2] <= rb.left
        or bounds[1] >= rb.top
        or bounds[3] <= rb.bottom
    ):
        raise SceneError(f"{paths[0]} and {paths[1]} do not overlap")
    if ds.crs == ref.crs and ds.transform == ref.transform and ds.shape == ref.shape:
        return ds
    return stack.enter_context(
        WarpedVRT(
            ds,
            crs=ref.crs,
            transform=ref.transform,
            width=ref.width,
            height=ref.height,
            resampling=resampling,
            src_nodata=src_nodata,
            nodata=np.nan,
            dtype="float32",
        )
    )


def _open_mask(path: str, what: str) -> rasterio.DatasetReader:
    """A mask raster, checked like a scene: readable, one band, georeferenced."""
    try:
        ds = _open(path)
    except SceneError as err:
        raise SceneError(f"{what}: {err}") from err
    if ds.count != 1 or ds.crs is None or ds.transform.is_identity:
        problem = f"has {ds.count} bands" if ds.count != 1 else "is not georeferenced"
        ds.close()
        raise SceneError(f"{what}: {path} {problem}; give a single-band georeferenced raster")
    return ds


def _north_up(ds: rasterio.DatasetReader, stack: ExitStack) -> rasterio.io.DatasetReaderBase:
    """A south-up image (rows running north) as the north-up image it is, read flipped
    pixel for pixel; any other image as it is."""
    t = ds.transform
    if t.b != 0 or t.d != 0 or t.e <= 0:
        return ds
    flipped = rasterio.Affine(t.a, 0.0, t.c, 0.0, -t.e, t.f + ds.height * t.e)
    vrt = WarpedVRT(
        ds,
        crs=ds.crs,
        transform=flipped,
        width=ds.width,
        height=ds.height,
        resampling=Resampling.nearest,
        src_nodata=ds.nodata,
        nodata=np.nan,
        dtype="float32",
    )
    return stack.enter_context(vrt)


@contextmanager
def open_pair(
    ref_path: str,
    sec_path: str,
    ref_mask: str | None = None,
    sec_mask: str | None = None,
    amplitude_db: bool = False,
    mask_kind: MaskKind = MaskKind.NONZERO,
) -> Iterator[PairReader]:
    """Open both scenes; SEC on another grid or CRS is warped onto REF's grid (cubic).
    South-up images are read as their north-up flip. `amplitude_db`: the scenes are radar
    backscatter, read in dB (their GeoTIFF scale and offset applied first). `mask_kind`:
    what the masks' values mean (non-zero unusable, or a provider's QA band).

    ref_mask, sec_mask: optional rasters, non-zero where a pixel of that image is unusable
    (cloud, shadow, no data, as QA bands mark them); on another grid or CRS they are
    warped onto REF's grid too (nearest). Their values count as they are (a declared
    nodata value is not special); REF pixels beyond a mask's extent count as unusable."""
    with ExitStack() as stack:
        ref_file = stack.enter_context(_open(ref_path))
        ref = _north_up(ref_file, stack)
        t = ref.transform
        if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
            raise SceneError(
                f"{ref_path}: the image is rotated or flipped east-west (geotransform "
                f"{tuple(t)[:6]}); give a north-up or south-up image"
            )
        sec_file = stack.enter_context(_open(sec_path))
        sec = _north_up(sec_file, stack)
        sec = _on_ref_grid(stack, ref, sec, (ref_path, sec_path), Resampling.cubic, sec.nodata)
        masks = tuple(
            None
            if path is None
            else _on_ref_grid(
                stack,
                ref,
                stack.enter_context(_open_mask(path, what)),
                (ref_path, path),
                Resampling.nearest,
                None,  # a mask's values count as they are, whatever nodata it declares
            )
            for path, what in ((ref_mask, "--ref-mask"), (sec_mask, "--sec-mask"))
        )
        decibels = None
        if amplitude_db:
            decibels = (
                (ref_file.scales[0], ref_file.offsets[0]),
                (sec_file.scales[0], sec_file.offsets[0]),
            )
        yield PairReader(
            ref, sec, (ref_path, sec_path), masks, (ref_mask, sec_mask), decibels, mask_kind
        )
