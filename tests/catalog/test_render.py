"""The speed colormap and its render object: what titiler draws a speed with."""

from __future__ import annotations

import numpy as np
import pytest
from rio_tiler.models import ImageData

from glacierflow.catalog.render import (
    SPEED_COLORMAP_NAME,
    SPEED_RESCALE,
    colour_index,
    index_speed_range,
    speed_colormap,
    speed_render,
)


def test_colormap_is_a_full_opaque_lookup_table() -> None:
    colormap = speed_colormap()
    assert sorted(colormap) == list(range(256))
    assert all(len(c) == 4 and c[3] == 255 for c in colormap.values())
    assert len(set(colormap.values())) > 200  # neighbouring decades are told apart


@pytest.mark.parametrize("speed", [0.5, 1.0, 3.0, 10.0, 47.0, 100.0, 999.0, 1000.0, 8000.0, 2e4])
def test_colour_index_is_what_rio_tiler_draws(speed: float) -> None:
    """The render object applied by rio-tiler itself picks the entry colour_index names."""
    render = speed_render()
    img = ImageData(np.ma.masked_invalid(np.full((1, 4, 4), speed, dtype="float32")))
    img = img.apply_expression(render["expression"])
    img.rescale(render["rescale"])
    assert int(img.array[0, 0, 0]) == colour_index(speed)
    low, high = index_speed_range(colour_index(speed))
    if 1.0 < speed < 1e4:
        assert low <= speed < high


def test_render_object_names_the_colormap_and_the_log_range() -> None:
    render = speed_render("v")
    assert render["assets"] == ["v"]
    assert render["colormap_name"] == SPEED_COLORMAP_NAME
    assert 10 ** render["rescale"][0][0] == 1.0 and 10 ** render["rescale"][0][1] == 1e4
    assert tuple(render["rescale"][0]) == SPEED_RESCALE
