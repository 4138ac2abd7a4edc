"""/timeseries?fit=true on the real stack: a cube whose pairs measure a known velocity (one
mean per year and a seasonal cycle, averaged over each pair's interval) gives back those
annual means, that cycle and a curve through it, in json, csv and netcdf; too few pairs
give no fit and its reason; a bad `fit` gets 422."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import xarray as xr
from conftest import measured_pixel, serving
from pyproj import Transformer

from glacierflow.catalog.loader import init_catalog, load_cubes
from glacierflow.processing import synthetic
from glacierflow.processing.composites.build import build_composite, open_cube
from glacierflow.processing.composites.fit import Options
from glacierflow.processing.cubes.ingest import ingest
from glacierflow.processing.cubes.store import cube_names
from glacierflow.services.app import create_app
from glacierflow.settings import Settings

# the truth: vx one mean per year plus a seasonal cycle (amplitude m/yr, maximum on day
# PEAK_DAY), vy constant
VX_MEAN = {2023: 200.0, 2024: 260.0}
VX_AMP = 40.0
PEAK_DAY = 150.0
VY = -50.0
FIRST = datetime(2023, 1, 3, 12)
LAYERS = 37  # the last pair ends in November 2024
DTS = (16, 32, 64, 16, 48)  # days, in turn


def decimal(when: datetime) -> float:
    start, end = datetime(when.year, 1, 1), datetime(when.year + 1, 1, 1)
    return when.year + (when - start) / (end - start)


def true_vx(t: float) -> float:
    return VX_MEAN[int(t)] + VX_AMP * np.cos(2 * np.pi * (t - PEAK_DAY / 365.25))


def interval_vx(ref: datetime, sec: datetime) -> float:
    """What a pair measures: the mean of the truth over its interval (in decimal years)."""
    t0, t1 = decimal(ref), decimal(sec)
    mean = sum(m * max(0.0, min(t1, y + 1) - max(t0, y)) for y, m in VX_MEAN.items())
    phase = PEAK_DAY / 365.25
    seasonal = np.sin(2 * np.pi * (t1 - phase)) - np.sin(2 * np.pi * (t0 - phase))
    return (mean + VX_AMP * seasonal / (2 * np.pi)) / (t1 - t0)


@pytest.fixture(scope="module")
def served(granule_files, new_catalog, tmp_path_factory):
    """One cube of LAYERS Landsat-8 pairs every 18 days over 2023-2024, served."""
    folder = tmp_path_factory.mktemp("ts-fit")
    template = granule_files["july"]
    files = []
    for k in range(LAYERS):
        ref = FIRST + timedelta(days=18 * k)
        sec = ref + timedelta(days=DTS[k % len(DTS)])
        vx = interval_vx(ref, sec)
        velocity = lambda x, y, centre, vx=vx: (np.full_like(x, vx), np.full_like(x, VY))  # noqa: E731
        files.append(synthetic.granule_copy(template, folder / "granules", ref, sec, velocity))
    store = folder / "cubes"
    ingest(files, store, progress=lambda _: None)
    settings = Settings(data_dir=folder)
    dsn = new_catalog("timeseries_fit")
    init_catalog(dsn, settings.collection_ids)
    load_cubes(dsn, [store / n for n in cube_names(store)], "cubes", settings.data_href)
    x, y = measured_pixel(template)
    lon, lat = Transformer.from_crs(3413, 4326, always_xy=True).transform(x, y)
    with serving(create_app(settings, dsn)) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield http, {"lon": lon, "lat": lat}, (store / cube_names(store)[0], x, y)


def check_fit(fit: dict) -> None:
    """The fit's figures against the truth."""
    assert fit["pairs"] == LAYERS
    annual = fit["annual"]
    assert annual["year"] == [2023, 2024]
    np.testing.assert_allclose(annual["vx"], list(VX_MEAN.values()), rtol=0.02)
    np.testing.assert_allclose(annual["vy"], VY, atol=2)
    v = [np.hypot(m, VY) for m in VX_MEAN.values()]
    np.testing.assert_allclose(annual["v"], v, rtol=0.02)
    assert all(c > 0 for c in annual["count"]) and all(e > 0 for e in annual["v_error"])
    assert fit["vx_amp"] == pytest.approx(VX_AMP, rel=0.1)
    assert fit["vx_phase"] == pytest.approx(PEAK_DAY, abs=15)
    assert fit["v_phase"] == pytest.approx(PEAK_DAY, abs=15)  # the flow is mostly along x
    curve = fit["curve"]
    times = [datetime.fromisoformat(t) for t in curve["time"]]
    assert all(b - a == timedelta(days=5) for a, b in itertools.pairwise(times))
    assert times[0] <= FIRST + timedelta(days=20) and times[-1] >= datetime(2024, 10, 20)
    truth = [true_vx(decimal(t)) for t in times]
    np.testing.assert_allclose(curve["vx"], truth, atol=0.05 * VX_AMP + 0.02 * 260)


def test_fit_true_gives_the_annual_means_and_seasonal_cycle_of_the_truth(served) -> None:
    http, point, _ = served
    answer = http.get("/timeseries", params={**point, "fit": "true", "variables": "v"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert list(body["time_series"]) == ["mid_date", "v"]  # the fit's inputs are not shown
    check_fit(body["fit"])
    # without fit, no fit keys
    plain = http.get("/timeseries", params=point).json()
    assert "fit" not in plain and "fit_reason" not in plain


def test_too_few_pairs_is_no_fit_with_its_reason_in_every_format(served, tmp_path: Path) -> None:
    http, point, _ = served
    # the last 8 layers only: the fit needs 30
    params = {**point, "fit": "true", "start": "2024-07-01"}
    body = http.get("/timeseries", params=params).json()
    assert body["count"] == 8 and body["fit"] is None
    assert body["fit_reason"] == "8 pairs; the fit needs at least 30"
    text = http.get("/timeseries", params={**params, "format": "csv"}).text
    assert "\n[seasonal fit]\nlat,lon,pairs," in text
    assert "8 pairs; the fit needs at least 30" in text
    path = tmp_path / "series.nc"
    path.write_bytes(http.get("/timeseries", params={**params, "format": "netcdf"}).content)
    with xr.open_dataset(path) as ds:
        assert str(ds["fit_note"].values[0]) == "8 pairs; the fit needs at least 30"
        assert ds.sizes["year"] == 0 and np.isnan(ds["v_amp"].values).all()


def test_the_fit_in_csv_and_netcdf(served, tmp_path: Path) -> None:
    http, point, _ = served
    params = {**point, "fit": "true"}
    text = http.get("/timeseries", params={**params, "format": "csv"}).text
    points, seasonal, annual, curve = text.split("\n\n")
    assert points.count("\n") == LAYERS  # the header and one row per layer
    assert seasonal.splitlines()[1].startswith("lat,lon,pairs,v_amp [m/yr],v_phase [day of year]")
    assert annual.splitlines()[0] == "[annual fit]"
    assert annual.splitlines()[1] == (
        "lat,lon,year,v [m/yr],v_error [m/yr],vx [m/yr],vx_error [m/yr],vy [m/yr],"
        "vy_error [m/yr],count"
    )
    years = [row.split(",") for row in annual.splitlines()[2:]]
    assert [row[2] for row in years] == ["2023", "2024"]
    np.testing.assert_allclose([float(row[5]) for row in years], list(VX_MEAN.values()), rtol=0.02)
    assert curve.splitlines()[:2] == ["[fit curve]", "lat,lon,date,v [m/yr],vx [m/yr],vy [m/yr]"]
    path = tmp_path / "series.nc"
    path.write_bytes(http.get("/timeseries", params={**params, "format": "netcdf"}).content)
    with xr.open_dataset(path) as ds:
        assert ds["year"].values.tolist() == [2023, 2024]
        np.testing.assert_allclose(ds["annual_vx"].values[0], list(VX_MEAN.values()), rtol=0.02)
        assert ds["vx_amp"].values[0] == pytest.approx(VX_AMP, rel=0.1)
        assert ds["curve_v"].dims == ("point", "curve_time")
        assert ds.sizes["curve_time"] == len(curve.splitlines()) - 2
        assert ds["annual_v"].attrs["units"] == "meter/year"


def test_post_points_carry_their_fits(served) -> None:
    http, point, _ = served
    body = {"points": [[point["lon"], point["lat"]]] * 2, "fit": True}
    answer = http.post("/timeseries", json=body)
    assert answer.status_code == 200, answer.text
    for result in answer.json()["results"]:
        check_fit(result["fit"])


@pytest.mark.parametrize("fit", ["maybe", "2", ""])
def test_a_bad_fit_gets_422_naming_it(served, fit: str) -> None:
    http, point, _ = served
    answer = http.get("/timeseries", params={**point, "fit": fit})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "fit"]
    posted = http.post("/timeseries", json={"points": [[point["lon"], point["lat"]]], "fit": fit})
    assert posted.status_code == 422
    assert posted.json()["detail"][0]["loc"] == ["body", "fit"]


def test_the_point_fit_is_the_cube_composite_at_its_pixel(served) -> None:
    """The same layers, the same fit: the composite of the cube, read at the pixel."""
    http, point, (cube, x, y) = served
    fit = http.get("/timeseries", params={**point, "fit": "true"}).json()["fit"]
    options = Options(window=(2023, 2024), intercept_year=2024)
    composite, _ = build_composite(open_cube(cube), options)
    pixel = composite.sel(x=x, y=y)
    for name in ("v", "vx", "vy", "v_error", "count"):
        np.testing.assert_allclose(fit["annual"][name], pixel[name].values, rtol=1e-4)
    for name in ("v_amp", "v_phase", "vx_amp"):
        assert fit[name] == pytest.approx(float(pixel[name]), rel=1e-4)
