"""Mosaics against truth: synthetic cubes -> composites -> mosaic, whose values must be the
composites' where one cube covers, the higher-count composite's where two overlap, and, for
a cube in another UTM zone, the composite's values at the right place, carried into the
mosaic's projection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import MOSAIC_OPTIONS, placed_cube
from pyproj import Transformer
from rio_cogeo.cogeo import cog_validate

from glacierflow.processing.mosaics import MosaicError, build_mosaics
from glacierflow.processing.mosaics.build import composite_path
from glacierflow.processing.mosaics.merge import SUMMARY
from glacierflow.processing.mosaics.regions import Region

# in UTM zone 32N, 47°N (the Alps): the region's centre gives zone 32 (EPSG:32632)
ZONE_32 = 32632
ZONE_33 = 32633
NORTHING = 5_200_067.5


def _composite(cube: Path, out: Path) -> xr.Dataset:
    return xr.open_dataset(composite_path(cube, out / "composites")).load()


def _at(mosaic: xr.Dataset, composite: xr.Dataset, name: str) -> np.ndarray:
    """The mosaic's values on the composite's pixels (same projection and phase)."""
    return mosaic[name].sel(x=composite.x, y=composite.y).values


def test_one_cube_mosaic_is_its_composite(tmp_path: Path) -> None:
    cube = placed_cube(tmp_path / "store", ZONE_32, 400_052.5, NORTHING, seed=1)
    annual, summary = build_mosaics([cube], [2019, 0], tmp_path / "out", options=MOSAIC_OPTIONS)
    composite = _composite(cube, tmp_path / "out")
    assert annual.epsg == summary.epsg == ZONE_32
    assert annual.netcdf.name == "ITS_LIVE_velocity_120m_custom_2019_v02.nc"
    assert summary.netcdf.name == "ITS_LIVE_velocity_120m_custom_0000_v02.nc"
    with xr.open_dataset(annual.netcdf) as mosaic:
        year = composite.sel(time="2019-01-01")
        for name in ("v", "vx", "vy", "v_error", "vx_error", "vy_error"):
            np.testing.assert_array_equal(_at(mosaic, composite, name), year[name].values)
        np.testing.assert_array_equal(
            np.nan_to_num(_at(mosaic, composite, "count")), year["count"].values
        )
        assert mosaic.sizes == {"y": 8, "x": 8}  # the cube's own grid, nothing around it
        assert mosaic.attrs["Conventions"] == "CF-1.8" and mosaic.attrs["year"] == "2019"
        assert mosaic["v"].attrs["grid_mapping"] == "mapping"
        assert mosaic["mapping"].attrs["spatial_epsg"] == ZONE_32
    with xr.open_dataset(summary.netcdf) as mosaic:
        for name, source in SUMMARY.items():
            expected = composite[source].values
            got = _at(mosaic, composite, name)
            if name == "count":
                got = np.nan_to_num(got)
            np.testing.assert_array_equal(got, expected, err_msg=name)
        assert mosaic.attrs["year"] == "0000"
        assert mosaic.attrs["climatology_years"] == "2018-2021"
        assert sorted(mosaic["sensor"].values) == sorted(composite["sensor"].values)


def test_where_two_cubes_overlap_the_one_with_more_pairs_wins(tmp_path: Path) -> None:
    # 8 px from 399,532.5 cross the tile edge at 400 km: the second cube (the next tile)
    # starts 4 px in, so 4 columns overlap; the first has three times the pairs
    rich = placed_cube(tmp_path / "store", ZONE_32, 399_532.5, NORTHING, seed=2, n_pairs=900)
    poor = placed_cube(tmp_path / "store", ZONE_32, 400_012.5, NORTHING, seed=3, n_pairs=300)
    assert rich.name != poor.name
    (mosaic_files,) = build_mosaics([poor, rich], [2019], tmp_path / "out", options=MOSAIC_OPTIONS)
    a, b = _composite(rich, tmp_path / "out"), _composite(poor, tmp_path / "out")
    with xr.open_dataset(mosaic_files.netcdf) as mosaic:
        assert mosaic.sizes == {"y": 8, "x": 12}
        overlap = dict(x=b.x[:4], y=b.y)
        va, vb = (c["v"].sel(time="2019-01-01", **overlap).values for c in (a, b))
        count0_a, count0_b = (c["count0"].sel(**overlap).values for c in (a, b))
        take_a = np.isfinite(va) & (~np.isfinite(vb) | (count0_a >= count0_b))
        assert take_a.sum() > 20  # the rich cube wins almost everywhere
        expected = np.where(take_a, va, vb)
        np.testing.assert_array_equal(mosaic["v"].sel(**overlap).values, expected)
        # each pixel's variables come from one composite
        vx = np.where(take_a, *(c["vx"].sel(time="2019-01-01", **overlap).values for c in (a, b)))
        np.testing.assert_array_equal(mosaic["vx"].sel(**overlap).values, vx)
        # outside the overlap, each cube alone
        only_b = dict(x=b.x[4:], y=b.y)
        np.testing.assert_array_equal(
            mosaic["v"].sel(**only_b).values, b["v"].sel(time="2019-01-01", **only_b).values
        )


def _displaced(to_target: Transformer, x, y, vx, vy) -> tuple[np.ndarray, np.ndarray]:
    """Truth for a vector carried into another projection: where a year's displacement
    from (x, y) ends there, minus where it starts (1/1000 of it, to stay local)."""
    x0, y0 = to_target.transform(x, y)
    x1, y1 = to_target.transform(x + vx / 1000, y + vy / 1000)
    return (np.asarray(x1) - x0) * 1000, (np.asarray(y1) - y0) * 1000


def test_a_cube_in_another_utm_zone_is_reprojected_to_the_right_place(tmp_path: Path) -> None:
    # zone 32 ends at 12°E: a cube at ~10.9°E in zone 32, one at ~12.3°E in zone 33
    west = placed_cube(tmp_path / "store", ZONE_32, 640_000.0, NORTHING, seed=4)
    east = placed_cube(tmp_path / "store", ZONE_33, 300_000.0, NORTHING + 1200, seed=5)
    region = Region("alps", (10.5, 46.5, 12.5, 47.5))
    assert region.epsg == ZONE_32
    annual, summary = build_mosaics(
        [west, east], [2019, 0], tmp_path / "out", region, options=MOSAIC_OPTIONS
    )
    composite = _composite(east, tmp_path / "out")
    year = composite.sel(time="2019-01-01")
    to_east = Transformer.from_crs(ZONE_32, ZONE_33, always_xy=True)
    to_west = Transformer.from_crs(ZONE_33, ZONE_32, always_xy=True)
    with xr.open_dataset(annual.netcdf) as mosaic:
        assert mosaic["mapping"].attrs["spatial_epsg"] == ZONE_32
        xx, yy = np.meshgrid(mosaic.x.values, mosaic.y.values)
        ex, ey = to_east.transform(xx, yy)
        col = np.rint((ex - composite.x.values[0]) / 120).astype(int)
        row = np.rint((composite.y.values[0] - ey) / 120).astype(int)
        inside = (col >= 0) & (col < 8) & (row >= 0) & (row < 8)
        assert inside.sum() >= 60  # about the 64 pixels, resampled
        r, c = row[inside], col[inside]
        # every mosaic pixel over the east cube holds its nearest composite pixel's values,
        # the vector carried into zone 32 as a displacement is
        vx, vy = year["vx"].values[r, c], year["vy"].values[r, c]
        sx, sy = composite.x.values[c], composite.y.values[r]
        tx, ty = _displaced(to_west, sx, sy, vx, vy)
        speed = np.hypot(vx, vy)
        got_x, got_y = mosaic["vx"].values[inside], mosaic["vy"].values[inside]
        measured = np.isfinite(speed)
        assert measured.sum() >= 50
        assert np.all(np.isfinite(got_x) == measured)
        turn = np.degrees(np.arctan2(ty, tx) - np.arctan2(vy, vx))[measured]
        turn = (turn + 180) % 360 - 180
        # the two zones' grid convergences at 12.35°E, 47°N: 2.45° and -1.94°
        assert np.all(np.abs(turn - 4.4) < 0.1)
        assert np.allclose(got_x[measured], tx[measured], atol=1e-3 * speed[measured] + 0.01)
        assert np.allclose(got_y[measured], ty[measured], atol=1e-3 * speed[measured] + 0.01)
        np.testing.assert_allclose(mosaic["v"].values[inside][measured], speed[measured], rtol=1e-3)
        # and each east pixel's value lies within one pixel of where its lon/lat falls
        for rr, cc in list(zip(*np.nonzero(np.isfinite(year["v"].values)), strict=True))[:20]:
            wx, wy = to_west.transform(composite.x.values[cc], composite.y.values[rr])
            i = int(np.rint((mosaic.y.values[0] - wy) / 120))
            j = int(np.rint((wx - mosaic.x.values[0]) / 120))
            around = mosaic["v"].values[max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]
            v = float(year["v"].values[rr, cc])
            assert np.any(np.abs(around - v) < 1e-3 * v), (rr, cc)
    with xr.open_dataset(summary.netcdf) as mosaic:
        # the seasonal cycle of each component, carried as a phasor: its amplitude along
        # the flow stays, the components' change with the rotation
        amp = mosaic["v_amp"].values[inside]
        np.testing.assert_allclose(
            amp[measured], composite["v_amp"].values[r, c][measured], rtol=2e-3
        )
        phase = mosaic["vx_phase"].values[inside]
        assert np.all((phase[np.isfinite(phase)] >= 0) & (phase[np.isfinite(phase)] < 365.25))


def test_cogs_are_valid_and_hold_the_netcdf_values(tmp_path: Path) -> None:
    west = placed_cube(tmp_path / "store", ZONE_32, 640_000.0, NORTHING, seed=4)
    east = placed_cube(tmp_path / "store", ZONE_33, 300_000.0, NORTHING, seed=5)
    outline = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[12, 46], [13, 46], [13, 48], [12, 48], [12, 46]]],
                },
            }
        ],
    }
    landice = tmp_path / "rgi.geojson"
    landice.write_text(json.dumps(outline))
    (products,) = build_mosaics(
        [west, east], [2019], tmp_path / "out", Region("alps", (10.5, 46.5, 12.5, 47.5)),
        options=MOSAIC_OPTIONS, landice=landice,
    )  # fmt: skip
    assert set(products.cogs) == {"v", "vx", "vy", "v_error", "vx_error", "vy_error", "count",
                                  "landice"}  # fmt: skip
    with xr.open_dataset(products.netcdf, mask_and_scale=True) as mosaic:
        for name, cog in products.cogs.items():
            assert cog.name == f"ITS_LIVE_velocity_120m_alps_2019_v02_{name}.tif"
            valid, errors, _ = cog_validate(cog, quiet=True)
            assert valid, (name, errors)
            with rasterio.open(cog) as src:
                assert src.crs.to_epsg() == ZONE_32
                assert src.block_shapes[0] == (512, 512) or src.height < 512
                assert src.compression.value == "DEFLATE"
                assert src.nodata is not None
                band = src.read(1, masked=True)
                netcdf = np.ma.masked_invalid(mosaic[name].values.astype(float))
                if name == "count":  # 0: no pair, no data
                    netcdf = np.ma.masked_equal(np.nan_to_num(mosaic[name].values), 0)
                if name == "landice":  # defined everywhere
                    netcdf = np.ma.masked_array(mosaic[name].values, False)
                np.testing.assert_array_equal(band.mask, np.ma.getmaskarray(netcdf))
                np.testing.assert_array_equal(band.compressed(), netcdf.compressed())
                assert src.overviews(1), f"{name}: no overviews"
                assert src.transform.a == 120
        # the outline covers 12-13°E: the east cube is on ice, the west one is not
        ice = mosaic["landice"].values
        lon = Transformer.from_crs(ZONE_32, 4326, always_xy=True).transform(
            *np.meshgrid(mosaic.x.values, mosaic.y.values)
        )[0]
        assert np.all(ice[lon > 12.01] == 1) and np.all(ice[lon < 11.99] == 0)
    with rasterio.open(products.web_mercator) as src:
        assert products.web_mercator.name == "ITS_LIVE_velocity_120m_alps_2019_v02_v_3857.tif"
        assert cog_validate(products.web_mercator, quiet=True)[0]
        assert src.crs.to_epsg() == 3857
        assert src.overviews(1), "no overviews"
        smallest = src.overviews(1)[-1]
        assert max(src.width, src.height) / smallest <= 512  # low zooms: one small tile
        assert np.nanmax(src.read(1)) > 0


def test_nothing_but_whole_files_in_the_output(tmp_path: Path) -> None:
    cube = placed_cube(tmp_path / "store", ZONE_32, 400_052.5, NORTHING, seed=1)
    with pytest.raises(MosaicError, match="no composite has year 2030; years available: 2018"):
        build_mosaics([cube], [2030], tmp_path / "out", options=MOSAIC_OPTIONS)
    assert not list((tmp_path / "out").glob("ITS_LIVE_velocity*"))
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left
    with pytest.raises(MosaicError, match="no such cube"):
        build_mosaics([tmp_path / "nowhere.zarr"], [2019], tmp_path / "out", options=MOSAIC_OPTIONS)
