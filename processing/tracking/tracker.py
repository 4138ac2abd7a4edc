"""Coarse-to-fine feature tracking over a grid of nodes (pure computation, no file I/O).

1. A sparse coarse grid searches the whole window (+-`search_radius_px`) with large chips;
   incoherent coarse vectors are dropped and the rest, interpolated, seed the fine grid.
2. Every fine node then searches only a small window around its seed, sized by how much
   the seeds vary around it, with the smallest chip of the ladder; nodes whose result is
   imprecise are tried again with the next (larger) chip.
3. The sub-pixel estimator refines the peak; a normalized median (NDC-style) test rejects
   incoherent vectors.
4. Where the field varies too much across a chip for a rigid chip to match (shear
   margins) or no vector was found, SEC is warped by the field found so far and those
   nodes search again for the residual (window deformation), three passes.
5. Regions of vectors cut off from the surface's field by a jump (a drifting cloud) are
   flagged as a second motion; small gaps are interpolated and flagged.

Images are read strip by strip through a `BlockReader`, so memory stays flat as the
scene grows, and strips run on a thread pool (numpy and FFTW release the GIL).
Every node that yields no vector carries a `Reason`.

Unusable pixels (nodata, or masked by the caller: cloud, shadow) are NaN in what the
reader returns, and take no part in any correlation: chips that hold some are matched by
masked NCC and refined on their usable pixels only. A chip whose usable overlap with its
match is below `min_valid_fraction`, or whose centre is unusable, gives no vector
(`Reason.NODATA`). Beyond the image's edge the image is mirrored (chips slide inward
there), and a match may reach only `_MAX_OFF_IMAGE` of its pixels off it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
from functools import cached_property

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import interpolate, ndimage

from glacierflow.processing.tracking.correlation import (
    BoxVariance,
    fft_size,
    masked_ncc_surfaces,
    ncc_surfaces,
    plan_bytes,
)
from glacierflow.processing.tracking.outliers import (
    fill_small_gaps,
    incoherent,
    second_motions,
)
from glacierflow.processing.tracking.preprocess import ImageFilter, prefilter, wiener_denoise
from glacierflow.processing.tracking.subpixel import (
    Refinement,
    gauss_newton,
    peak_fit,
    peak_oversample,
)


class Reason(IntEnum):
    """Why a node has no measured vector (0: it has one)."""

    VALID = 0
    NODATA = 1  # too little of the chip or its match is usable (nodata, masked, off the image)
    NO_TEXTURE = 2  # the reference chip is flat
    LOW_CORRELATION = 3  # the best match is too weak
    AMBIGUOUS = 4  # a second, distant peak is nearly as strong (coarse search)
    SEARCH_EDGE = 5  # the best match is on the edge of the search window
    IMPRECISE = 6  # the sub-pixel fit did not converge or is too uncertain at every chip size
    INCOHERENT = 7  # disagrees with its neighbours (normalized median test)
    SECOND_MOTION = 8  # a coherent motion cut off from the surface's (a drifting cloud)


REASON_MEANINGS = " ".join(r.name.lower() for r in Reason)
_MAX_OFF_IMAGE = 0.1  # of a matched chip's pixels that may lie beyond the image's edge


class SubpixelMethod(StrEnum):
    """How the correlation peak is located below one pixel (see subpixel.py)."""

    GAUSS_NEWTON = "gauss-newton"
    FIT = "fit"
    OVERSAMPLE = "oversample"


@dataclass(frozen=True)
class TrackerOptions:
    """Tracking parameters in pixels (the CLI converts metres to pixels)."""

    chip_sizes_px: tuple[int, ...] = (16, 32, 64)
    search_radius_px: int = 25
    coarse_stride: int = 4
    coarse_chip_px: int = 64
    coarse_decimation: int = 2
    image_filter: ImageFilter = ImageFilter.HIGH_PASS
    filter_width_px: int = 21
    denoise: bool = True
    subpixel: SubpixelMethod = SubpixelMethod.GAUSS_NEWTON
    gn_iterations: int = 4
    min_zncc: float = 0.15
    min_peak_ratio: float = 1.15
    escalate_sigma_px: float = 0.1
    reject_sigma_px: float = 0.5
    min_valid_fraction: float = 0.5
    ndc_threshold: float = 2.0
    ndc_noise_px: float = 0.1
    max_strain: float = 0.6
    max_gap_nodes: int = 4
    deform_passes: int = 3
    deform_residual_px: float = 0.5
    threads: int = 1
    strip_rows: int = 32
    memory_budget_bytes: int = 2 * 1024**3  # for all threads together; see search_limit

    def __post_init__(self) -> None:
        if not self.chip_sizes_px or min(self.chip_sizes_px) < 4:
            raise ValueError("chip sizes must be at least 4 pixels")
        if self.search_radius_px < 1:
            raise ValueError("the search radius must be at least 1 pixel")
        if not 0 < self.min_valid_fraction <= 1:
            raise ValueError("the minimum valid fraction of a chip must be in (0, 1]")


BlockReader = Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]]
"""read(row0, row1, col0, col1) -> (ref, sec) float32 blocks, NaN where a pixel is unusable:
off the image, nodata, or masked."""


def padded_block(
    shape: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
    fetch: Callable[[int, int, int, int], np.ndarray],
) -> np.ndarray:
    """Rows/cols of an image of `shape` as float32, NaN where they fall off it;
    `fetch(r0, r1, c0, c1)` reads the part that lies on the image."""
    block = np.full((rows[1] - rows[0], cols[1] - cols[0]), np.nan, dtype=np.float32)
    rr0, rr1 = max(rows[0], 0), min(rows[1], shape[0])
    cc0, cc1 = max(cols[0], 0), min(cols[1], shape[1])
    if rr1 > rr0 and cc1 > cc0:
        block[rr0 - rows[0] : rr1 - rows[0], cc0 - cols[0] : cc1 - cols[0]] = fetch(
            rr0, rr1, cc0, cc1
        )
    return block


def array_reader(
    ref: np.ndarray,
    sec: np.ndarray,
    ref_mask: np.ndarray | None = None,
    sec_mask: np.ndarray | None = None,
) -> BlockReader:
    """A BlockReader over two in-memory images of the same shape (NaN = no data); the
    optional masks, of that shape too, are non-zero where a pixel is unusable (cloud...)."""
    for name, array in (("SEC", sec), ("the REF mask", ref_mask), ("the SEC mask", sec_mask)):
        if array is not None and array.shape != ref.shape:
            raise ValueError(f"{name} differs in shape from REF: {array.shape} and {ref.shape}")

    def part(image: np.ndarray, mask: np.ndarray | None, rows, cols) -> np.ndarray:
        block = padded_block(image.shape, rows, cols, lambda a, b, c, d: image[a:b, c:d])
        if mask is not None:
            hidden = padded_block(mask.shape, rows, cols, lambda a, b, c, d: mask[a:b, c:d] != 0)
            block[hidden != 0] = np.nan  # off the image it is NaN already
        return block

    def read(r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        return part(ref, ref_mask, (r0, r1), (c0, c1)), part(sec, sec_mask, (r0, r1), (c0, c1))

    return read


@dataclass
class TrackResult:
    """Displacements (pixels, +rows down, +cols right) on the node grid, per-node metadata."""

    rows: np.ndarray
    cols: np.ndarray
    sigma_rows: np.ndarray
    sigma_cols: np.ndarray
    zncc: np.ndarray
    chip_px: np.ndarray
    reason: np.ndarray
    interpolated: np.ndarray
    coarse_valid_fraction: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.rows) & np.isfinite(self.cols)


@dataclass
class _Matches:
    """Per-node results of one search pass."""

    shift: np.ndarray  # (N, 2) rows, cols
    sigma: np.ndarray  # (N, 2)
    zncc: np.ndarray
    reason: np.ndarray

    @classmethod
    def empty(cls, n: int) -> _Matches:
        return cls(
            np.full((n, 2), np.nan),
            np.full((n, 2), np.nan),
            np.zeros(n, np.float32),
            np.full(n, Reason.NODATA, np.uint8),
        )


@dataclass
class _Block:
    """A pre-filtered window of both images plus what the sub-pixel step needs."""

    row0: int
    col0: int
    image_shape: tuple[int, int]
    ref: np.ndarray
    sec: np.ndarray
    ref_nan: np.ndarray  # unusable: nodata, masked or off the image
    sec_nan: np.ndarray
    sec_hole: np.ndarray  # unusable on the image (beyond it, `_fill` mirrors the image)
    ref_raw: np.ndarray
    inside: tuple[slice, slice]  # where the image lies in the block

    @classmethod
    def load(
        cls,
        read: BlockReader,
        rows: tuple[int, int],
        cols: tuple[int, int],
        image_shape: tuple[int, int],
        opts: TrackerOptions,
        factor: int = 1,
    ) -> _Block:
        """Read, denoise and filter a block; rows/cols/image_shape count pixels reduced
        `factor` times (2x2 means), as the coarse search reads them."""
        f = factor
        ref_raw, sec_raw = read(rows[0] * f, rows[1] * f, cols[0] * f, cols[1] * f)
        if opts.denoise:  # before reducing: the noise floor is measured at full resolution
            ref_raw, sec_raw = wiener_denoise(ref_raw), wiener_denoise(sec_raw)
        if f > 1:
            ref_raw, sec_raw = _reduce(ref_raw, f), _reduce(sec_raw, f)
        width = max(3, opts.filter_width_px // f) | 1
        ref = prefilter(ref_raw, opts.image_filter, width)
        sec = prefilter(sec_raw, opts.image_filter, width)
        ref_nan, sec_nan = np.isnan(ref), np.isnan(sec)
        inside = (
            slice(max(0, -rows[0]), max(0, min(rows[1], image_shape[0]) - rows[0])),
            slice(max(0, -cols[0]), max(0, min(cols[1], image_shape[1]) - cols[0])),
        )
        return cls(
            rows[0],
            cols[0],
            image_shape,
            _fill(ref, ref_nan, inside),
            _fill(sec, sec_nan, inside),
            ref_nan,
            sec_nan,
            sec_nan & _on_image(sec_nan.shape, inside),
            np.where(np.isnan(ref_raw), 0.0, ref_raw).astype(np.float32, copy=False),
            inside,
        )

    @cached_property
    def ref_unusable(self) -> _Counts:
        return _Counts.of(self.ref_nan & _on_image(self.ref_nan.shape, self.inside), self.inside)

    @cached_property
    def sec_unusable(self) -> _Counts:
        return _Counts.of(self.sec_hole, self.inside)

    @cached_property
    def ref_coef(self) -> np.ndarray:
        """Cubic B-spline coefficients of the filtered reference (for sub-pixel fits)."""
        return ndimage.spline_filter(self.ref, order=3, mode="mirror", output=np.float32)

    @cached_property
    def sec_coef(self) -> np.ndarray:
        return ndimage.spline_filter(self.sec, order=3, mode="mirror", output=np.float32)

    def cropped(self, rows: slice, cols: slice) -> _Block:
        """The part of this block at rows, cols (block pixels, steps of 1), with the values
        this block has there (filtered over the whole block)."""
        height, width = rows.stop - rows.start, cols.stop - cols.start

        def shifted(inside: slice, part: slice, n: int) -> slice:
            return slice(
                min(max(inside.start - part.start, 0), n), min(max(inside.stop - part.start, 0), n)
            )

        arrays = (self.ref, self.sec, self.ref_nan, self.sec_nan, self.sec_hole, self.ref_raw)
        return _Block(
            self.row0 + rows.start,
            self.col0 + cols.start,
            self.image_shape,
            *(a[rows, cols] for a in arrays),
            (shifted(self.inside[0], rows, height), shifted(self.inside[1], cols, width)),
        )

    def warped(self, predictor: np.ndarray, where: np.ndarray) -> _Block:
        """This block with SEC resampled at p + predictor(p) (predictor: (2, H, W) pixels at
        every pixel of the block) at the pixels `where`, so that chips that deform with the
        flow match rigidly there; elsewhere SEC is left as it was, unread by the caller."""
        ii, jj = np.nonzero(where)
        coords = np.stack([ii + predictor[0][where], jj + predictor[1][where]])
        sec = self.sec.copy()
        sec[where] = ndimage.map_coordinates(
            self.sec_coef, coords, order=3, prefilter=False, mode="mirror"
        )
        masks = []
        for mask in (self.sec_nan, self.sec_hole):
            moved = mask.copy()
            if mask.any():  # a mask without unusable pixels stays so
                moved[where] = ndimage.map_coordinates(mask, coords, order=0, mode="nearest")
            masks.append(moved)
        out = _Block(
            self.row0,
            self.col0,
            self.image_shape,
            self.ref,
            sec,
            self.ref_nan,
            *masks,
            self.ref_raw,
            self.inside,
        )
        if "ref_coef" in self.__dict__:
            out.__dict__["ref_coef"] = self.ref_coef
        return out

    def sec_box_variance(self, chip: int) -> np.ndarray:
        """NCC denominators of every chip-sized square of SEC, computed once per chip size."""
        cache = self.__dict__.setdefault("_box_variance", {})
        if chip not in cache:
            cache[chip] = self._sec_variance(chip).astype(np.float32)
        return cache[chip]

    @cached_property
    def _sec_variance(self) -> BoxVariance:
        return BoxVariance(self.sec)


@dataclass(frozen=True)
class _Counts:
    """Counts of the unusable pixels in squares of a block, O(1) per square: holes on the
    image from a summed-area table (built only where there are any), and pixels beyond the
    image's edge from the geometry."""

    table: np.ndarray | None
    inside: tuple[slice, slice]

    @classmethod
    def of(cls, holes: np.ndarray, inside: tuple[slice, slice]) -> _Counts:
        if not holes.any():
            return cls(None, inside)
        table = np.zeros((holes.shape[0] + 1, holes.shape[1] + 1), dtype=np.int32)
        np.cumsum(np.cumsum(holes, axis=0, dtype=np.int32), axis=1, out=table[1:, 1:])
        return cls(table, inside)

    def holes(self, top: np.ndarray, left: np.ndarray, size: int) -> np.ndarray:
        """Holes in each size x size square (top-left corners in block pixels)."""
        if self.table is None:
            return np.zeros(np.shape(top), dtype=np.int64)
        t = self.table
        top = np.clip(top, 0, t.shape[0] - 1 - size)
        left = np.clip(left, 0, t.shape[1] - 1 - size)
        bottom, right = top + size, left + size
        return t[bottom, right] - t[top, right] - t[bottom, left] + t[top, left]

    def off_image(self, top: np.ndarray, left: np.ndarray, size: int) -> np.ndarray:
        """Pixels of each size x size square that lie beyond the image's edge."""
        (r, c), top, left = self.inside, np.asarray(top), np.asarray(left)
        on_rows = np.clip(np.minimum(top + size, r.stop) - np.maximum(top, r.start), 0, size)
        on_cols = np.clip(np.minimum(left + size, c.stop) - np.maximum(left, c.start), 0, size)
        return size * size - on_rows * on_cols

    def unusable(self, top: np.ndarray, left: np.ndarray, size: int) -> np.ndarray:
        return self.holes(top, left, size) + self.off_image(top, left, size)

    def centre_unusable(self, top: np.ndarray, left: np.ndarray, chip: int) -> np.ndarray:
        """Whether any of the 2 x 2 pixels at each chip's centre is unusable: a chip that
        straddles a cloud's edge could still match on its clear part, but the node's own
        ground is not seen there, and its vector would be its neighbours' motion."""
        return self.unusable(top + chip // 2 - 1, left + chip // 2 - 1, 2) > 0


def _on_image(shape: tuple[int, int], inside: tuple[slice, slice]) -> np.ndarray:
    on = np.zeros(shape, dtype=bool)
    on[inside] = True
    return on


def _fill(image: np.ndarray, holes: np.ndarray, inside: tuple[slice, slice]) -> np.ndarray:
    """Fill holes (NaN) with 0 (the filtered images' mean) and mirror the image beyond its
    edge, so that no step at the edge rings into the spline coefficients of chips near it."""
    filled = np.where(holes, 0.0, image).astype(np.float32, copy=False) if holes.any() else image
    core = filled[inside]
    if core.size == 0 or core.shape == filled.shape:
        return filled
    pads = [(sl.start, n - sl.stop) for sl, n in zip(inside, filled.shape, strict=True)]
    return np.pad(core, pads, mode="symmetric")


def _reduce(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of factor x factor pixels (NaN if any is NaN): one level of an image pyramid."""
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    total = sum(image[i:h:factor, j:w:factor] for i in range(factor) for j in range(factor))
    return total / (factor * factor)


def _patches(image: np.ndarray, top: np.ndarray, left: np.ndarray, size: int) -> np.ndarray:
    return sliding_window_view(image, (size, size))[top, left]


def _bucket(radius: np.ndarray, cap: int) -> np.ndarray:
    """Round search radii up to a few sizes, so that chips batch together under one plan."""
    sizes = np.array([4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256])
    sizes = np.unique(np.minimum(np.append(sizes, cap), cap))
    return sizes[np.searchsorted(sizes, np.minimum(radius, cap))]


# Bytes per pixel of a strip's block while it is read and filtered: both images raw,
# filtered and filled, their NaN masks, spline coefficients, box variances and their
# integral images, and the temporaries of filtering (tracemalloc: 61 before the integral
# images were kept, so 16 more; 1000 x 3000 px, three chips).
_BLOCK_BYTES_PER_PX = 80
# Bytes per correlation-surface pixel of one node in a batch: its box variance, the
# surface and the temporaries of normalising it and of the peak ratio (the window itself
# is counted apart).
_SURFACE_BYTES_PER_PX = 32


@dataclass(frozen=True)
class SearchLimit:
    """The search radius and strip height the tracker can afford on an image, and why
    the radius is smaller than the one asked for (None: it is not)."""

    radius_px: int
    strip_rows: int
    requested_px: int
    clipped_by: str | None = None  # "image size" or "memory budget"


def _thread_budget(opts: TrackerOptions) -> int:
    return opts.memory_budget_bytes // max(1, opts.threads)


def _strip_bytes(
    opts: TrackerOptions, image_width: int, node_spacing: int, radius: int, strip_rows: int
) -> int:
    """What one thread holds whatever its batches: a strip's block (the coarse strips read
    as much at full resolution) and the FFT plans it keeps for every window size."""
    rows = max(strip_rows, opts.coarse_stride) * node_spacing
    margin = radius + max((*opts.chip_sizes_px, opts.coarse_chip_px)) // 2
    margin += opts.filter_width_px + 8 * opts.coarse_decimation
    block = (rows + 2 * margin) * (image_width + 2 * margin) * _BLOCK_BYTES_PER_PX
    f = opts.coarse_decimation
    coarse = max(8, opts.coarse_chip_px // f) + 2 * (-(-radius // f) + 1)
    windows = {fft_size(coarse)} | {
        fft_size(chip + 2 * int(r))
        for chip in opts.chip_sizes_px
        for r in np.unique(_bucket(np.arange(1, radius + 1), radius))
    }
    return block + sum(plan_bytes(size) for size in windows)


def search_limit(
    opts: TrackerOptions, image_shape: tuple[int, int], node_spacing: int, requested_px: int
) -> SearchLimit:
    """Bound the search radius by the image (no match lies farther than the image is
    long) and by the memory budget. Each thread keeps its strip's block and its FFT plans
    within 3/4 of its share (strips get fewer rows first, then the radius shrinks); the
    nodes' windows and surfaces are batched into the last quarter (`batch_nodes`). The
    estimate is an upper bound: a strip may need less."""
    radius = max(2, min(requested_px, max(image_shape) - min(opts.chip_sizes_px)))
    clipped_by = "image size" if radius < requested_px else None
    budget = _thread_budget(opts) * 3 // 4
    rows = opts.strip_rows

    def fits(r: int) -> bool:
        return _strip_bytes(opts, image_shape[1], node_spacing, r, rows) <= budget

    while rows > 1 and not fits(radius):
        rows //= 2
    if not fits(radius):
        low, high = 2, radius  # the largest radius that fits (2 if none does)
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if fits(mid) else (low, mid - 1)
        radius, clipped_by = low, "memory budget"
    return SearchLimit(radius, rows, requested_px, clipped_by)


def batch_nodes(chip: int, radius: int, opts: TrackerOptions) -> int:
    """How many nodes one correlation batch takes at this chip and radius: as many as fit
    in a quarter of a thread's share of the memory budget."""
    per_node = 4 * (chip + 2 * radius) ** 2 + _SURFACE_BYTES_PER_PX * (2 * radius + 1) ** 2
    return max(1, _thread_budget(opts) // 4 // per_node)


def _batches(
    nodes: np.ndarray, radius: np.ndarray, chip: int, opts: TrackerOptions
) -> Iterator[tuple[int, np.ndarray]]:
    """(radius, nodes) groups of one radius, each small enough for the memory budget."""
    for r in np.unique(radius):
        group = nodes[radius == r]
        size = batch_nodes(chip, int(r), opts)
        for i in range(0, len(group), size):
            yield int(r), group[i : i + size]


def _search(
    block: _Block,
    node_rows: np.ndarray,
    node_cols: np.ndarray,
    seed: np.ndarray,
    radius: np.ndarray,
    chip: int,
    opts: TrackerOptions,
    coarse: bool,
) -> _Matches:
    """Match the chips centred on the given nodes; seeds and radii in whole pixels."""
    n = len(node_rows)
    out = _Matches.empty(n)
    # chips centre on their node, but slide inward at the image's edge rather than reach
    # off it, in REF and at the seeded match in SEC (the node then takes the displacement
    # of the nearest chip that can be matched)
    height, width = block.image_shape
    top = np.floor(node_rows - chip / 2 + 0.5).astype(np.int64)
    left = np.floor(node_cols - chip / 2 + 0.5).astype(np.int64)
    top = np.clip(top, np.maximum(-seed[:, 0], 0), height - chip - np.maximum(seed[:, 0], 0))
    left = np.clip(left, np.maximum(-seed[:, 1], 0), width - chip - np.maximum(seed[:, 1], 0))
    top = np.clip(top, 0, max(height - chip, 0)) - block.row0
    left = np.clip(left, 0, max(width - chip, 0)) - block.col0
    min_valid = int(np.ceil(opts.min_valid_fraction * chip * chip))
    ref_bad = block.ref_unusable.unusable(top, left, chip)
    hidden = block.ref_unusable.centre_unusable(top, left, chip)
    if not coarse:  # where the seed puts the node's ground in SEC must be seen too
        hidden |= block.sec_unusable.centre_unusable(top + seed[:, 0], left + seed[:, 1], chip)
    nodata = (chip * chip - ref_bad < min_valid) | hidden
    raw = _patches(block.ref_raw, top, left, chip)
    flat = raw.max(axis=(1, 2)) == raw.min(axis=(1, 2))
    out.reason[flat] = Reason.NO_TEXTURE
    out.reason[nodata] = Reason.NODATA
    todo = np.flatnonzero(~nodata & ~flat)
    templates = _patches(block.ref, top[todo], left[todo], chip)
    integer = np.zeros((n, 2), dtype=np.int64)
    start = np.zeros((n, 2))  # where the sub-pixel refinement starts
    for r, sel in _batches(todo, radius[todo], chip, opts):
        span = chip + 2 * r
        w_top, w_left = top[sel] + seed[sel, 0] - r, left[sel] + seed[sel, 1] - r
        tpl = templates[np.searchsorted(todo, sel)]
        # masked NCC costs four times the FFTs: only for chips that hold unusable pixels
        masked = (ref_bad[sel] > 0) | (block.sec_unusable.holes(w_top, w_left, span) > 0)
        surfaces = np.empty((len(sel), 2 * r + 1, 2 * r + 1), dtype=np.float32)
        if not masked.all():
            c = ~masked
            windows = _patches(block.sec, w_top[c], w_left[c], span)
            window_var = _patches(block.sec_box_variance(chip), w_top[c], w_left[c], 2 * r + 1)
            surfaces[c] = ncc_surfaces(tpl[c], windows, window_var)
        if masked.any():
            m = sel[masked]
            surfaces[masked] = masked_ncc_surfaces(
                tpl[masked],
                ~_patches(block.ref_nan, top[m], left[m], chip),
                _patches(block.sec, w_top[masked], w_left[masked], span),
                ~_patches(block.sec_hole, w_top[masked], w_left[masked], span),
                min_valid,
            )
        flat_idx = surfaces.reshape(len(sel), -1).argmax(axis=1)
        peak = np.stack(np.divmod(flat_idx, surfaces.shape[2]), axis=1)
        integer[sel] = seed[sel] - r + peak
        on_edge = np.any((peak == 0) | (peak == 2 * r), axis=1)
        out.reason[sel] = Reason.VALID
        out.reason[sel[on_edge]] = Reason.SEARCH_EDGE
        out.zncc[sel] = surfaces[np.arange(len(sel)), peak[:, 0], peak[:, 1]]
        if coarse:
            ratio = _peak_ratio(surfaces, peak, exclusion=max(2, chip // 8))
            out.reason[sel[(ratio < opts.min_peak_ratio) & ~on_edge]] = Reason.AMBIGUOUS
        elif opts.subpixel is not SubpixelMethod.GAUSS_NEWTON:  # needs the surfaces
            estimate = peak_fit if opts.subpixel is SubpixelMethod.FIT else peak_oversample
            start[sel] = seed[sel] - r + estimate(surfaces, peak)
    measured = todo[out.reason[todo] == Reason.VALID]
    match = top[measured] + integer[measured, 0], left[measured] + integer[measured, 1]
    out.reason[measured[block.sec_unusable.centre_unusable(*match, chip)]] = Reason.NODATA
    measured = todo[out.reason[todo] == Reason.VALID]
    low = measured[out.zncc[measured] < opts.min_zncc]
    out.reason[low] = Reason.LOW_CORRELATION
    measured = todo[out.reason[todo] == Reason.VALID]
    if coarse:
        out.shift[measured] = integer[measured]
        return out

    if opts.subpixel is SubpixelMethod.GAUSS_NEWTON:
        start = integer.astype(np.float64)
    iterations = opts.gn_iterations if opts.subpixel is SubpixelMethod.GAUSS_NEWTON else 0
    m_top, m_left = top[measured], left[measured]
    at = integer[measured]
    # chips with unusable pixels in REF, or within the spline's reach of their SEC match
    masked = (ref_bad[measured] > 0) | (
        block.sec_unusable.holes(m_top + at[:, 0] - 2, m_left + at[:, 1] - 2, chip + 4) > 0
    )
    fit = Refinement(
        np.full((len(measured), 2), np.nan),
        np.full((len(measured), 2), np.nan),
        np.zeros(len(measured), np.float32),
        np.zeros(len(measured), bool),
    )
    for group, weigh in ((~masked, False), (masked, True)):
        if group.any():
            weights = (
                _usable_weights(block, m_top[group], m_left[group], at[group], chip)
                if weigh
                else None
            )
            part = _refine(
                block,
                m_top[group],
                m_left[group],
                chip,
                start[measured][group],
                iterations,
                weights,
            )
            for name in ("shift", "sigma", "zncc", "converged"):
                getattr(fit, name)[group] = getattr(part, name)
    moved = np.max(np.abs(fit.shift - integer[measured]), axis=1)
    ok = fit.converged & (moved <= 1.5) & np.all(np.isfinite(fit.sigma), axis=1)
    # the matched SEC chip must lie on the image, and overlap REF's chip on enough pixels
    safe_shift = np.where(np.isfinite(fit.shift), fit.shift, 0.0)
    match_top = m_top + np.rint(safe_shift[:, 0]).astype(np.int64)
    match_left = m_left + np.rint(safe_shift[:, 1]).astype(np.int64)
    inside = (
        (match_top >= 0)
        & (match_left >= 0)
        & (match_top + chip <= block.sec.shape[0])
        & (match_left + chip <= block.sec.shape[1])
    )
    sec_nodata = ok & ~inside
    off_image = block.sec_unusable.off_image(match_top, match_left, chip)
    # chips slide inward at the edge: a match that reaches far off the image is a chance one
    sec_nodata |= off_image > _MAX_OFF_IMAGE * chip * chip
    unusable = off_image + block.sec_unusable.holes(match_top, match_left, chip)
    check = np.flatnonzero(ok & inside & (masked | (unusable > 0)))
    both = ~_patches(block.ref_nan, m_top[check], m_left[check], chip) & ~_patches(
        block.sec_nan, match_top[check], match_left[check], chip
    )
    sec_nodata[check] |= (both.sum(axis=(1, 2)) < min_valid) | (
        block.sec_unusable.centre_unusable(match_top[check], match_left[check], chip)
    )
    out.reason[measured[~ok]] = Reason.IMPRECISE
    out.reason[measured[sec_nodata]] = Reason.NODATA
    good = ok & ~sec_nodata
    out.shift[measured[good]] = fit.shift[good]
    out.sigma[measured[good]] = fit.sigma[good]
    out.zncc[measured] = fit.zncc
    return out


def _usable_weights(
    block: _Block, top: np.ndarray, left: np.ndarray, at: np.ndarray, chip: int
) -> np.ndarray:
    """(N, chip, chip) 1/0 weights of the pixels a masked chip's refinement may use: usable
    in REF and at the integer match `at` in SEC, and far enough from unusable ones that the
    splines there do not feel the holes (1 px in REF, 2 in SEC, where the chip moves)."""

    def clear(nan: np.ndarray, rows: np.ndarray, cols: np.ndarray, reach: int) -> np.ndarray:
        near = ndimage.maximum_filter(
            _patches(nan, rows - reach, cols - reach, chip + 2 * reach),
            size=(1, 2 * reach + 1, 2 * reach + 1),
        )
        return ~near[:, reach:-reach, reach:-reach]

    usable = clear(block.ref_nan, top, left, 1) & clear(
        block.sec_hole, top + at[:, 0], left + at[:, 1], 2
    )
    return usable.astype(np.float32)


def _refine(
    block: _Block,
    top: np.ndarray,
    left: np.ndarray,
    chip: int,
    start: np.ndarray,
    iterations: int,
    weights: np.ndarray | None = None,
) -> Refinement:
    """Gauss-Newton in slices small enough for the CPU cache: faster, and it lets two
    threads share the memory bus instead of queueing on it. `weights` (N, chip, chip):
    the pixels each chip may use (all when None)."""
    size = max(64, 2**18 // (chip + 3) ** 2)
    # at least one (possibly empty) slice, so that the result always has its fields
    parts = [
        gauss_newton(
            block.ref,
            block.ref_coef,
            block.sec_coef,
            top[i : i + size],
            left[i : i + size],
            chip,
            start[i : i + size],
            iterations,
            None if weights is None else weights[i : i + size],
        )
        for i in range(0, max(len(top), 1), size)
    ]
    return Refinement(
        *(
            np.concatenate([getattr(p, f) for p in parts])
            for f in ("shift", "sigma", "zncc", "converged")
        )
    )


def _peak_ratio(surfaces: np.ndarray, peak: np.ndarray, exclusion: int) -> np.ndarray:
    """Best peak over the best value farther than `exclusion` pixels from it."""
    n, h, w = surfaces.shape
    rr = np.arange(h)[None, :, None]
    cc = np.arange(w)[None, None, :]
    near = (np.abs(rr - peak[:, 0, None, None]) <= exclusion) & (
        np.abs(cc - peak[:, 1, None, None]) <= exclusion
    )
    second = np.where(near, -np.inf, surfaces).reshape(n, -1).max(axis=1)
    best = surfaces[np.arange(n), peak[:, 0], peak[:, 1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(second > 0, best / second, np.inf)


def _block_for(
    read: BlockReader,
    image_shape: tuple[int, int],
    node_rows: np.ndarray,
    node_cols: np.ndarray,
    reach: int,
    opts: TrackerOptions,
    factor: int = 1,
) -> _Block:
    """Read the window that holds every chip and search window of these nodes."""
    chip = max((*opts.chip_sizes_px, opts.coarse_chip_px)) // factor
    margin = reach + chip // 2 + opts.filter_width_px // factor + 8
    rows = (int(np.floor(node_rows.min())) - margin, int(np.ceil(node_rows.max())) + margin)
    cols = (int(np.floor(node_cols.min())) - margin, int(np.ceil(node_cols.max())) + margin)
    return _Block.load(read, rows, cols, image_shape, opts, factor)


def _coarse_strip(
    read: BlockReader,
    image_shape: tuple[int, int],
    rows: np.ndarray,
    cols: np.ndarray,
    seed: np.ndarray,
    opts: TrackerOptions,
) -> np.ndarray:
    """Whole-window search of some coarse nodes on the reduced image; (N, 2) integer
    displacements in full-resolution pixels, NaN where rejected."""
    f = opts.coarse_decimation
    rr, cc = np.meshgrid(rows / f, cols / f, indexing="ij")
    n = rr.size
    radius = -(-opts.search_radius_px // f) + 1
    seed_reduced = np.rint(seed.reshape(n, 2) / f).astype(np.int64)
    reach = int(np.abs(seed_reduced).max(initial=0)) + radius
    shape = (image_shape[0] // f, image_shape[1] // f)
    block = _block_for(read, shape, rr.ravel(), cc.ravel(), reach, opts, f)
    found = _search(
        block,
        rr.ravel(),
        cc.ravel(),
        seed_reduced,
        np.full(n, radius),
        max(8, opts.coarse_chip_px // f),
        opts,
        coarse=True,
    )
    return found.shift * f


def _coarse_field(
    read: BlockReader,
    image_shape: tuple[int, int],
    node_rows: np.ndarray,
    node_cols: np.ndarray,
    prior: np.ndarray | None,
    opts: TrackerOptions,
    pool: ThreadPoolExecutor,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Integer displacement seeds (ny, nx, 2) on the fine grid, per-node search radii and
    the fraction of coarse nodes that found a coherent match."""
    stride = opts.coarse_stride
    offset = min(stride // 2, len(node_rows) - 1, len(node_cols) - 1)
    c_rows, c_cols = node_rows[offset::stride], node_cols[offset::stride]
    prior_coarse = np.zeros((len(c_rows), len(c_cols), 2), dtype=np.int64)
    if prior is not None:
        prior_coarse = np.rint(
            np.nan_to_num(prior[offset::stride, offset::stride][: len(c_rows), : len(c_cols)])
        ).astype(np.int64)
    rows_per_strip = max(1, opts.strip_rows // stride)
    parts = list(
        pool.map(
            lambda s: _coarse_strip(
                read,
                image_shape,
                c_rows[s : s + rows_per_strip],
                c_cols,
                prior_coarse[s : s + rows_per_strip],
                opts,
            ),
            range(0, len(c_rows), rows_per_strip),
        )
    )
    shift = np.concatenate(parts).reshape(len(c_rows), len(c_cols), 2)
    good = np.all(np.isfinite(shift), axis=2)
    bad = incoherent(shift[..., 0], shift[..., 1], opts.ndc_threshold, 1.0)
    good &= ~bad
    coarse_valid = float(good.mean()) if good.size else 0.0
    ny, nx = len(node_rows), len(node_cols)
    full = opts.search_radius_px
    if not good.any():
        seed = (
            np.zeros((ny, nx, 2), dtype=np.int64)
            if prior is None
            else np.rint(np.nan_to_num(prior)).astype(np.int64)
        )
        return seed, np.full((ny, nx), full), coarse_valid
    # fill rejected coarse nodes from their nearest good neighbour
    _, (ir, ic) = ndimage.distance_transform_edt(~good, return_indices=True)
    filled = shift[ir, ic]
    spread = np.zeros(good.shape)
    for k in range(2):
        spread = np.maximum(
            spread,
            ndimage.maximum_filter(filled[..., k], 3, mode="nearest")
            - ndimage.minimum_filter(filled[..., k], 3, mode="nearest"),
        )
    near_bad = ndimage.maximum_filter((~good).astype(np.uint8), 3, mode="nearest") > 0
    # fine node (i, j) sits at coarse index (i - offset) / stride
    fi = (np.arange(ny) - offset) / stride
    fj = (np.arange(nx) - offset) / stride
    gi, gj = np.meshgrid(fi, fj, indexing="ij")
    coords = np.stack([gi, gj])
    seed = np.stack(
        [
            ndimage.map_coordinates(filled[..., k], coords, order=1, mode="nearest")
            for k in range(2)
        ],
        axis=2,
    )
    near = np.rint(coords).astype(np.int64)
    near[0] = np.clip(near[0], 0, good.shape[0] - 1)
    near[1] = np.clip(near[1], 0, good.shape[1] - 1)
    radius = np.ceil(spread[near[0], near[1]]).astype(np.int64) + 3
    radius[near_bad[near[0], near[1]]] = full
    return np.rint(seed).astype(np.int64), np.minimum(radius, full), coarse_valid


@dataclass(frozen=True)
class _Predictor:
    """A displacement field everywhere from one on the node grid: bilinear between nodes,
    the nearest node's value beyond them."""

    grid: np.ndarray  # (2, ny, nx) displacement (rows, cols) in pixels at the nodes
    node_rows: np.ndarray
    node_cols: np.ndarray

    def at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(2, ...) displacement at the positions (rows[i], cols[i])."""
        coords = np.stack(
            [_node_index(np.asarray(rows), self.node_rows), _node_index(cols, self.node_cols)]
        )
        return np.stack(
            [ndimage.map_coordinates(g, coords, order=1, mode="nearest") for g in self.grid]
        )

    def raster(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(2, len(rows), len(cols)) displacement at every crossing of rows and cols: the
        values of `at` there, interpolated along one axis and then the other (bilinear
        interpolation is separable), a few times faster than `at` on a block's pixels."""
        r0, r1, fr = _lerp(_node_index(rows, self.node_rows), len(self.node_rows))
        c0, c1, fc = _lerp(_node_index(cols, self.node_cols), len(self.node_cols))
        along = self.grid[:, r0] * (1 - fr)[:, None] + self.grid[:, r1] * fr[:, None]
        return along[:, :, c0] * (1 - fc) + along[:, :, c1] * fc


def _node_index(positions: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Positions (pixels) as fractional indices of the evenly spaced nodes."""
    step = nodes[1] - nodes[0] if len(nodes) > 1 else 1.0
    return (np.asarray(positions, dtype=np.float64) - nodes[0]) / step


def _lerp(index: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two nodes either side of each fractional index and the second one's weight,
    clamped to the grid as map_coordinates' mode="nearest" does."""
    index = np.clip(index, 0, n - 1)
    low = np.minimum(np.floor(index).astype(np.int64), max(n - 2, 0))
    return low, np.minimum(low + 1, n - 1), index - low


# Pixels around a node's chip and search window that deformation must also warp: the
# sub-pixel fit moves up to 1.5 px and its cubic splines reach 2 px, and SEC's spline
# coefficients feel unwarped pixels with a weight of 0.27 per pixel (0.27^8 < 3e-5).
_WARP_MARGIN_PX = 12


def _deformed(
    block: _Block, predictor: _Predictor, rows: np.ndarray, cols: np.ndarray, reach_px: int
) -> _Block:
    """The part of `block` that the chips and search windows of the nodes at rows, cols
    (image pixels) reach within `reach_px`, with SEC warped by the predictor there."""
    height, width = block.sec.shape
    marks = np.zeros((height, width), dtype=bool)
    marks[
        np.clip(np.floor(rows).astype(np.int64) - block.row0, 0, height - 1),
        np.clip(np.floor(cols).astype(np.int64) - block.col0, 0, width - 1),
    ] = True
    size = 2 * (reach_px + _WARP_MARGIN_PX) + 1
    where = ndimage.maximum_filter(marks, size=size, mode="constant")
    used_rows, used_cols = np.flatnonzero(where.any(axis=1)), np.flatnonzero(where.any(axis=0))
    crop = slice(used_rows[0], used_rows[-1] + 1), slice(used_cols[0], used_cols[-1] + 1)
    part = block.cropped(*crop)
    field = predictor.raster(
        np.arange(crop[0].start, crop[0].stop) + block.row0 + 0.5,
        np.arange(crop[1].start, crop[1].stop) + block.col0 + 0.5,
    )
    return part.warped(field, where[crop])


def _fine_strip(
    read: BlockReader,
    image_shape: tuple[int, int],
    rows: np.ndarray,
    cols: np.ndarray,
    seed: np.ndarray,
    radius: np.ndarray,
    opts: TrackerOptions,
    predictor: _Predictor | None = None,
    todo: np.ndarray | None = None,
) -> tuple[_Matches, np.ndarray]:
    """Track one strip of fine nodes up the chip ladder; also returns the chip used.

    With a `predictor`, SEC is first warped by it and the nodes in `todo` (a boolean grid;
    the others keep reason NODATA) search for the residual around zero: the chips then
    deform with the predicted flow (window deformation, as in PIV)."""
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    n = rr.size
    best = _Matches.empty(n)
    chip_used = np.zeros(n, dtype=np.int64)
    pending = np.arange(n) if todo is None else np.flatnonzero(todo.ravel())
    if pending.size == 0:
        return best, chip_used
    seed_flat = seed.reshape(n, 2)
    radius_flat = _bucket(radius.ravel(), opts.search_radius_px)
    reach = int((np.abs(seed_flat[pending]).max(axis=1) + radius_flat[pending]).max())
    # only what the nodes to track reach is read: a few bands of nodes where the field
    # is deformed again
    at_rows, at_cols = rr.ravel()[pending], cc.ravel()[pending]
    block = _block_for(read, image_shape, at_rows, at_cols, reach, opts)
    if predictor is not None:
        # chips slide up to half a chip inward at the image's edge: a whole chip covers them
        reach_px = max(opts.chip_sizes_px) + int(radius_flat[pending].max())
        block = _deformed(block, predictor, at_rows, at_cols, reach_px)
    for step, chip in enumerate(opts.chip_sizes_px):
        if pending.size == 0:
            break
        m = _search(
            block,
            rr.ravel()[pending],
            cc.ravel()[pending],
            seed_flat[pending],
            radius_flat[pending],
            chip,
            opts,
            coarse=False,
        )
        sigma = m.sigma.max(axis=1)  # NaN where there is no measurement
        precise = (m.reason == Reason.VALID) & (sigma <= opts.escalate_sigma_px)
        # a larger chip's answer replaces the smaller one's only if it is better: valid
        # where that was not, or more precise (a failure keeps the first reason found)
        before = best.reason[pending] == Reason.VALID
        before_sigma = best.sigma[pending].max(axis=1)
        better = (m.reason == Reason.VALID) & (~before | (sigma < before_sigma))
        if step == 0:
            better[:] = True
        take = pending[better]
        best.shift[take] = m.shift[better]
        best.sigma[take] = m.sigma[better]
        best.zncc[take] = m.zncc[better]
        best.reason[take] = m.reason[better]
        chip_used[take] = chip
        retry = ~precise & (m.reason != Reason.NODATA)
        pending = pending[retry]
    sigma = best.sigma.max(axis=1)
    best.reason[(best.reason == Reason.VALID) & ~(sigma <= opts.reject_sigma_px)] = Reason.IMPRECISE
    invalid = best.reason != Reason.VALID
    best.shift[invalid] = np.nan
    best.sigma[invalid] = np.nan
    if predictor is not None:  # the residual r was found at p + r in the warped SEC
        ok = ~invalid
        at_r, at_c = rr.ravel()[ok] + best.shift[ok, 0], cc.ravel()[ok] + best.shift[ok, 1]
        best.shift[ok] += predictor.at(at_r, at_c).T
    return best, chip_used


def _node_predictor(
    node_rows: np.ndarray, node_cols: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> _Predictor:
    """The field of the valid vectors, filled at the other nodes (linear between valid
    ones, nearest beyond them). One triangulation serves both components, and only the
    nodes without a vector are looked up in it."""
    valid = np.isfinite(rows) & np.isfinite(cols)
    grid = np.stack([rows, cols]).astype(np.float64)
    missing = np.argwhere(~valid)
    if len(missing):
        points = np.argwhere(valid)
        values = np.stack([rows[valid], cols[valid]], axis=1)
        filled = np.full((len(missing), 2), np.nan)
        if len(points) >= 3 and np.ptp(points[:, 0]) > 0 and np.ptp(points[:, 1]) > 0:
            filled = interpolate.LinearNDInterpolator(points, values)(missing)
        beyond = np.isnan(filled).any(axis=1)
        if beyond.any():
            filled[beyond] = interpolate.NearestNDInterpolator(points, values)(missing[beyond])
        grid[:, missing[:, 0], missing[:, 1]] = filled.T
    return _Predictor(grid, node_rows, node_cols)


def _reject_incoherent(
    rows: np.ndarray, cols: np.ndarray, reason: np.ndarray, opts: TrackerOptions
) -> None:
    """The normalized median test, in place; removing outliers can leave others exposed,
    so it repeats until stable (three rounds at most)."""
    for _ in range(3):
        bad = incoherent(rows, cols, opts.ndc_threshold, opts.ndc_noise_px)
        if not bad.any():
            break
        reason[bad] = Reason.INCOHERENT
        rows[bad] = np.nan
        cols[bad] = np.nan


def _spacing(node_rows: np.ndarray, node_cols: np.ndarray) -> float:
    """Distance between neighbouring nodes, pixels (1 for a single node)."""
    if len(node_rows) > 1:
        return float(node_rows[1] - node_rows[0])
    return float(node_cols[1] - node_cols[0]) if len(node_cols) > 1 else 1.0


def _steepest(rows: np.ndarray, cols: np.ndarray, spacing: float) -> np.ndarray:
    """The largest displacement gradient (px per px) at each node, 0 where unknown."""
    steepest = np.zeros(rows.shape)
    for field_ in (rows, cols):
        for axis in range(2):
            if field_.shape[axis] > 1:
                slope = np.abs(np.gradient(field_, spacing, axis=axis))
                steepest = np.maximum(steepest, np.nan_to_num(slope))
    return steepest


def _deform_pass(
    read: BlockReader,
    image_shape: tuple[int, int],
    node_rows: np.ndarray,
    node_cols: np.ndarray,
    opts: TrackerOptions,
    pool: ThreadPoolExecutor,
    rows: np.ndarray,
    cols: np.ndarray,
    reason: np.ndarray,
    chip: np.ndarray,
    matches: _Matches,
) -> bool:
    """Track again, with chips deformed by the field found so far, the nodes where that
    field varies by more than `deform_residual_px` across the smallest chip (a rigid chip
    cannot match there) or where no vector was found; updates the grids in place and says
    whether any node was tracked again."""
    missing = ~np.isin(reason, (Reason.VALID, Reason.NODATA, Reason.NO_TEXTURE))
    spacing = _spacing(node_rows, node_cols)
    limit = opts.deform_residual_px / min(opts.chip_sizes_px)  # px of motion per px
    if not np.isfinite(rows).any():
        return False
    if not missing.any() and _steepest(rows, cols, spacing).max() <= limit:
        return False  # nothing to do: skip building the predictor
    ny, nx = rows.shape
    predict = _node_predictor(node_rows, node_cols, rows, cols)
    grid = predict.grid
    spread = np.zeros((ny, nx))
    for k in range(2):
        spread = np.maximum(
            spread,
            ndimage.maximum_filter(grid[k], 3, mode="nearest")
            - ndimage.minimum_filter(grid[k], 3, mode="nearest"),
        )
    todo = (_steepest(grid[0], grid[1], spacing) > limit) | missing
    if not todo.any():
        return False
    radius = np.minimum(np.ceil(spread / 2).astype(np.int64) + 3, opts.search_radius_px)
    zero = np.zeros((ny, nx, 2), dtype=np.int64)
    strips = [s for s in range(0, ny, opts.strip_rows) if todo[s : s + opts.strip_rows].any()]
    # larger chips would straddle what the predictor still gets wrong: the smallest only
    small = replace(opts, chip_sizes_px=opts.chip_sizes_px[:1])
    parts = pool.map(
        lambda s: _fine_strip(
            read,
            image_shape,
            node_rows[s : s + opts.strip_rows],
            node_cols,
            zero[s : s + opts.strip_rows],
            radius[s : s + opts.strip_rows],
            small,
            predict,
            todo[s : s + opts.strip_rows],
        ),
        strips,
    )
    sigma = matches.sigma.reshape(ny, nx, 2)
    zncc = matches.zncc.reshape(ny, nx)
    for s, (found, used) in zip(strips, parts, strict=True):
        sl = slice(s, s + opts.strip_rows)
        new_zncc = found.zncc.reshape(rows[sl].shape)
        new_valid = found.reason.reshape(rows[sl].shape) == Reason.VALID
        # a rigid smallest chip that matched better than the warped one keeps its vector:
        # where the motion jumps (a 1 px margin) the warp, linear between nodes, is wrong
        rigid_better = (
            (reason[sl] == Reason.VALID)
            & (chip[sl] == min(opts.chip_sizes_px))
            & (~new_valid | (zncc[sl] >= new_zncc))
        )
        again = todo[sl] & ~rigid_better
        shift = found.shift.reshape(*again.shape, 2)
        rows[sl][again] = shift[..., 0][again]
        cols[sl][again] = shift[..., 1][again]
        reason[sl][again] = found.reason.reshape(again.shape)[again]
        chip[sl][again] = used.reshape(again.shape)[again]
        sigma[sl][again] = found.sigma.reshape(*again.shape, 2)[again]
        zncc[sl][again] = found.zncc.reshape(again.shape)[again]
    _reject_incoherent(rows, cols, reason, opts)
    return True


def track(
    read: BlockReader,
    image_shape: tuple[int, int],
    node_rows: np.ndarray,
    node_cols: np.ndarray,
    opts: TrackerOptions,
    prior: np.ndarray | None = None,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> TrackResult:
    """Track every node (pixel-edge coordinates of chip centres) of one image pair.

    prior: optional (ny, nx, 2) displacement guess in pixels (rows, cols) from an earlier
    velocity field; the coarse search is then centred on it.
    progress: called with (strips done, strips in all) as the fine search advances.
    """
    ny, nx = len(node_rows), len(node_cols)
    with ThreadPoolExecutor(max_workers=max(1, opts.threads)) as pool:
        seed, radius, coarse_valid = _coarse_field(
            read, image_shape, node_rows, node_cols, prior, opts, pool
        )
        strips = list(range(0, ny, opts.strip_rows))
        done = [0]
        lock = threading.Lock()

        def fine(s: int) -> tuple[_Matches, np.ndarray]:
            out = _fine_strip(
                read,
                image_shape,
                node_rows[s : s + opts.strip_rows],
                node_cols,
                seed[s : s + opts.strip_rows],
                radius[s : s + opts.strip_rows],
                opts,
            )
            with lock:
                done[0] += 1
                progress(done[0], len(strips))
            return out

        parts = list(pool.map(fine, strips))
        matches = _Matches(
            np.concatenate([p[0].shift for p in parts]),
            np.concatenate([p[0].sigma for p in parts]),
            np.concatenate([p[0].zncc for p in parts]),
            np.concatenate([p[0].reason for p in parts]),
        )
        chip = np.concatenate([p[1] for p in parts]).reshape(ny, nx)
        rows = matches.shift[:, 0].reshape(ny, nx).copy()
        cols = matches.shift[:, 1].reshape(ny, nx).copy()
        reason = matches.reason.reshape(ny, nx).copy()
        _reject_incoherent(rows, cols, reason, opts)
        for _ in range(opts.deform_passes):
            if not _deform_pass(
                read,
                image_shape,
                node_rows,
                node_cols,
                opts,
                pool,
                rows,
                cols,
                reason,
                chip,
                matches,
            ):
                break
    # only now is the surface's own field continuous across its margins, so that a
    # region cut off from it by a jump can be told apart
    other = second_motions(rows, cols, opts.max_strain * _spacing(node_rows, node_cols))
    reason[other] = Reason.SECOND_MOTION
    rows[other] = np.nan
    cols[other] = np.nan
    interpolated = fill_small_gaps(rows, cols, reason != Reason.NODATA, opts.max_gap_nodes)
    return TrackResult(
        rows=rows,
        cols=cols,
        sigma_rows=matches.sigma[:, 0].reshape(ny, nx),
        sigma_cols=matches.sigma[:, 1].reshape(ny, nx),
        zncc=matches.zncc.reshape(ny, nx),
        chip_px=np.where(reason == Reason.VALID, chip, 0) | np.where(interpolated, chip, 0),
        reason=reason,
        interpolated=interpolated,
        coarse_valid_fraction=coarse_valid,
    )
