"""How speed is drawn: the `speed` colormap, log-scaled from 1 to 10,000 m/yr as ITS_LIVE's
maps are, and the STAC render-extension object that tells tilers and browsers to use it.

Speeds span four decades on one glacier (slow ice sheet interior to fast outlet), so a
linear scale shows either the outlet or the interior. The scale is applied by titiler
itself: the expression `log10(b1)`, a linear rescale of [0, 4] onto the colormap's 256
entries, then a lookup table. That is measured faster than an intervals colormap on the raw
speed (benchmarks/tiles.py, BENCHMARKS.md): rio-tiler applies intervals one comparison pass
each.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SPEED_COLORMAP_NAME = "speed"
SPEED_MIN_M_PER_YR = 1.0
SPEED_MAX_M_PER_YR = 10_000.0
SPEED_EXPRESSION = "log10(b1)"
# log10 of the range above: what the rescale maps onto colour indices 0..255
SPEED_RESCALE = (math.log10(SPEED_MIN_M_PER_YR), math.log10(SPEED_MAX_M_PER_YR))
SPEED_TICKS_M_PER_YR = (1.0, 10.0, 100.0, 1000.0, 10_000.0)

# Anchor colours along log10(speed): pale for slow ice so that fast flow stands out, blue
# through purple to red and a bright end for the fastest outlets; sequential in lightness
# in each half so that neighbouring speeds are told apart.
_ANCHORS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (240, 246, 250)),
    (1.0, (150, 196, 222)),
    (2.0, (40, 110, 180)),
    (2.5, (90, 45, 140)),
    (3.0, (200, 30, 40)),
    (3.5, (250, 140, 55)),
    (4.0, (255, 240, 170)),
)


def _colour_table() -> np.ndarray:
    """256 x RGB, linearly interpolated between the anchors along log10(speed)."""
    positions = np.linspace(SPEED_RESCALE[0], SPEED_RESCALE[1], 256)
    stops = np.array([at for at, _ in _ANCHORS])
    rgb = np.array([colour for _, colour in _ANCHORS], dtype=float)
    channels = [np.interp(positions, stops, rgb[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=1)).astype(np.uint8)


def speed_colormap() -> dict[int, tuple[int, int, int, int]]:
    """The colormap as titiler/rio-tiler take it: colour index (0..255) → RGBA, opaque;
    nodata is transparent through the tile's mask, not through the colormap."""
    return {i: (int(r), int(g), int(b), 255) for i, (r, g, b) in enumerate(_colour_table())}


def colour_index(speed_m_per_yr: float) -> int:
    """The colormap entry titiler draws a speed with: log10, clipped to the range, rescaled
    onto 0..255 and truncated (rio-tiler casts the rescaled value to uint8)."""
    low, high = SPEED_RESCALE
    if not speed_m_per_yr > 0:
        return 0
    scaled = (min(max(math.log10(speed_m_per_yr), low), high) - low) / (high - low) * 255
    return int(scaled)


def index_speed_range(index: int) -> tuple[float, float]:
    """The speeds (m/yr) drawn with colour entry `index`: [low, high)."""
    low, high = SPEED_RESCALE
    step = (high - low) / 255
    return 10 ** (low + index * step), 10 ** (low + (index + 1) * step)


def speed_render(asset: str = "v") -> dict[str, Any]:
    """The render-extension object (STAC render extension v2) for an item whose `asset` is
    a speed COG in m/yr, keyed by SPEED_COLORMAP_NAME in the item's `renders`."""
    return {
        "title": "Speed (m/yr), log scale 1 to 10,000",
        "assets": [asset],
        "expression": SPEED_EXPRESSION,
        "rescale": [list(SPEED_RESCALE)],
        "colormap_name": SPEED_COLORMAP_NAME,
        "resampling": "nearest",
    }
