"""Providers' QA bands as masks: Sentinel-2 SCL classes and Landsat QA_PIXEL bits keep
clouds and shadows out of the correlation as a mask made for the purpose does."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import clouded_pair

from glacierflow.processing import synthetic
from glacierflow.processing.io.scenes import MaskKind, qa_mask_kind, unusable
from glacierflow.processing.pipeline import TrackRequest, pair_request, track_pair
from glacierflow.processing.scenes import Pair, Scene

SMALL = {"chip_min_m": 120.0, "chip_max_m": 480.0, "max_speed_m_per_yr": 2000.0}
SCL_CLEAR, SCL_CLOUD = 11, 9  # snow and ice; cloud, high probability
QA_CLEAR, QA_CLOUD = 0b1000000, 0b1010  # bit 6 "clear"; bits 1 and 3: dilated cloud, cloud


def test_which_values_are_unusable() -> None:
    scl = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, np.nan])
    assert unusable(scl, MaskKind.SCL).tolist() == [
        True, True, False, True, False, False, False, False, True, True, True, False, True,
    ]  # fmt: skip
    qa = np.array([0b1, 0b10, 0b100, 0b1000, 0b10000, 0b100000, 0b1000000, 21824, np.nan])
    assert unusable(qa, MaskKind.QA_PIXEL).tolist() == [
        True, True, True, True, True, False, False, False, True,
    ]  # fmt: skip
    assert unusable(np.array([0.0, 0.5, 2.0, np.nan])).tolist() == [False, True, True, True]
    assert qa_mask_kind("sentinel-2b") is MaskKind.SCL
    assert qa_mask_kind("landsat-9") is MaskKind.QA_PIXEL
    assert qa_mask_kind("sentinel-1a") is None


def _band(path: Path, values: np.ndarray, pair: synthetic.SyntheticPair) -> Path:
    with rasterio.open(
        path, "w", driver="GTiff", height=values.shape[0], width=values.shape[1], count=1,
        dtype=values.dtype, crs=f"EPSG:{pair.epsg}", transform=pair.transform,
    ) as dst:  # fmt: skip
        dst.write(values, 1)
    return path


@pytest.fixture(scope="module")
def clouded(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("qa")
    pair, ref_cloud, sec_cloud = clouded_pair((300, 300), seed=35)
    ref, sec = synthetic.write_geotiffs(pair, folder, "qa")
    made = TrackRequest(
        str(ref), str(sec), folder / "made.nc", **SMALL,
        ref_mask=str(_band(folder / "ref_mask.tif", ref_cloud.astype(np.uint8), pair)),
        sec_mask=str(_band(folder / "sec_mask.tif", sec_cloud.astype(np.uint8), pair)),
    )  # fmt: skip
    with xr.open_dataset(track_pair(made).path) as ds:
        expected = ds[["vx", "vy"]].load()
    return pair, ref, sec, ref_cloud, sec_cloud, expected, folder


@pytest.mark.parametrize(
    ("platform", "clear", "cloud", "dtype"),
    [("sentinel-2a", SCL_CLEAR, SCL_CLOUD, np.uint8), ("landsat-8", QA_CLEAR, QA_CLOUD, np.uint16)],
)
def test_a_qa_band_masks_as_the_mask_made_for_the_purpose(
    clouded, platform: str, clear: int, cloud: int, dtype: type
) -> None:
    pair, ref, sec, ref_cloud, sec_cloud, expected, folder = clouded
    qa = [
        _band(
            folder / f"{platform}_{name}_qa.tif", np.where(hidden, cloud, clear).astype(dtype), pair
        )
        for name, hidden in (("ref", ref_cloud), ("sec", sec_cloud))
    ]
    scenes = [
        Scene(
            id=f"{platform}_{name}", href=str(path), datetime=when.replace(tzinfo=UTC),
            platform=platform, instrument="msi", epsg=pair.epsg,
            footprint={"type": "Point", "coordinates": [0, 0]}, mask_href=str(mask),
        )
        for name, path, when, mask in (
            ("ref", ref, pair.ref_time, qa[0]), ("sec", sec, pair.sec_time, qa[1])
        )
    ]  # fmt: skip
    request = pair_request(Pair(*scenes), folder / f"{platform}.nc", **SMALL)
    assert (request.ref_mask, request.sec_mask) == (str(qa[0]), str(qa[1]))
    with xr.open_dataset(track_pair(request).path) as ds:
        assert ds.attrs["parameter_mask_kind"] == str(qa_mask_kind(platform))
        xr.testing.assert_equal(ds[["vx", "vy"]], expected)
    # read as plain non-zero masks, the clear codes would hide everything
    blind = TrackRequest(
        str(ref), str(sec), folder / "blind.nc", **SMALL, ref_mask=str(qa[0]), sec_mask=str(qa[1])
    )
    assert track_pair(blind).valid_percentage == 0
