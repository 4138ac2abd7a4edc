"""The tracker's memory bound (issue 9 #3): the search window is clipped to the image and
to a memory budget, and correlation batches fit the budget without changing results."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import track_synthetic

from glacierflow.processing import synthetic
from glacierflow.processing.tracking.correlation import plan_bytes
from glacierflow.processing.tracking.tracker import (
    TrackerOptions,
    _strip_bytes,
    batch_nodes,
    search_limit,
)

# the CLI's defaults at 7.5 m pixels: 240-960 m chips, 120 m grid
DEFAULT_CHIPS = TrackerOptions(chip_sizes_px=(32, 64, 128), coarse_chip_px=128, threads=2)
GiB = 1024**3


def test_ordinary_searches_are_left_alone() -> None:
    for shape, wanted in (((1000, 1000), 25), ((3000, 3000), 60), ((8000, 8000), 25)):
        limit = search_limit(DEFAULT_CHIPS, shape, 16, wanted)
        assert limit.radius_px == wanted and limit.clipped_by is None
        assert limit.strip_rows == DEFAULT_CHIPS.strip_rows


def test_wide_images_get_shorter_strips_before_a_smaller_search() -> None:
    """A 16-day pair of a 12,000 px wide scene at 10 km/yr: strips of fewer node rows
    keep the whole +-60 px search within the default budget."""
    limit = search_limit(DEFAULT_CHIPS, (12000, 12000), 16, 60)
    assert limit.radius_px == 60 and limit.clipped_by is None
    assert limit.strip_rows < DEFAULT_CHIPS.strip_rows


def test_the_image_bounds_the_search() -> None:
    """A one-year pair of a 400 x 400 crop at 10 km/yr asks for +-1338 px."""
    limit = search_limit(DEFAULT_CHIPS, (400, 400), 16, 1338)
    assert limit.clipped_by == "image size"
    assert limit.radius_px == 400 - 32
    assert limit.requested_px == 1338


@pytest.mark.parametrize("budget_gib", [0.25, 1, 2, 8])
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_the_memory_budget_bounds_the_search(budget_gib: float, threads: int) -> None:
    opts = TrackerOptions(
        chip_sizes_px=(32, 64, 128),
        coarse_chip_px=128,
        threads=threads,
        memory_budget_bytes=int(budget_gib * GiB),
    )
    limit = search_limit(opts, (20000, 20000), 16, 5000)
    assert limit.clipped_by == "memory budget"
    assert 2 <= limit.radius_px < 5000
    share = opts.memory_budget_bytes // threads
    used = _strip_bytes(opts, 20000, 16, limit.radius_px, limit.strip_rows)
    assert used <= share * 3 // 4 or limit.radius_px == 2
    # the largest radius that fits: one more pixel would not
    assert _strip_bytes(opts, 20000, 16, limit.radius_px + 1, limit.strip_rows) > share * 3 // 4
    # a bigger budget never searches less
    more = search_limit(
        TrackerOptions(**{**opts.__dict__, "memory_budget_bytes": 2 * opts.memory_budget_bytes}),
        (20000, 20000),
        16,
        5000,
    )
    assert more.radius_px >= limit.radius_px


@pytest.mark.parametrize(("chip", "radius"), [(16, 4), (32, 60), (128, 368), (128, 2000)])
def test_batches_fit_a_quarter_of_each_threads_share(chip: int, radius: int) -> None:
    n = batch_nodes(chip, radius, DEFAULT_CHIPS)
    per_node = 4 * (chip + 2 * radius) ** 2 + 32 * (2 * radius + 1) ** 2
    assert n >= 1
    assert n == 1 or n * per_node <= DEFAULT_CHIPS.memory_budget_bytes // 2 // 4


def test_fft_plans_stay_small_for_wide_windows() -> None:
    """Batches of wide windows shrink (down to one) instead of allocating gigabytes."""
    for size in (64, 256, 512, 768, 1024, 2048):
        assert plan_bytes(size) <= max(24 * 2**20, 25 * size * size)


def test_batching_does_not_change_results() -> None:
    """A budget small enough to split every correlation batch gives the same vectors."""
    pair = synthetic.make_pair((400, 400), synthetic.vortex((200, 200), 120, 4.0), seed=3)
    wide, _ = track_synthetic(pair, search_radius_px=12)
    tight, _ = track_synthetic(pair, search_radius_px=12, memory_budget_bytes=2**22)
    assert batch_nodes(16, 12, TrackerOptions(memory_budget_bytes=2**22)) < 50
    np.testing.assert_array_equal(tight.reason, wide.reason)
    np.testing.assert_allclose(tight.rows, wide.rows, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(tight.cols, wide.cols, atol=1e-9, equal_nan=True)
