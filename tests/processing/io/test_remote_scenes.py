"""Scenes read over HTTP as STAC imports keep them: COGs on a server with range requests,
read window by window, giving the granule the local files give."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import free_port
from local_servers import file_server
from rasterio.shutil import copy as copy_raster

from glacierflow.processing import synthetic
from glacierflow.processing.io.scenes import SceneError, remote_reading
from glacierflow.processing.pipeline import TrackRequest, track_pair

SMALL = {"chip_min_m": 120.0, "chip_max_m": 480.0, "max_speed_m_per_yr": 2000.0}


def _cogs(pair: synthetic.SyntheticPair, folder: Path, name: str) -> tuple[Path, Path]:
    """The pair as Cloud-Optimized GeoTIFFs (internal tiles, overviews), as providers
    publish scenes."""
    tiffs = synthetic.write_geotiffs(pair, folder / "plain", name)
    cogs = []
    for tiff in tiffs:
        cog = folder / tiff.name
        copy_raster(tiff, cog, driver="COG", blocksize=128, overview_resampling="average")
        cogs.append(cog)
    return cogs[0], cogs[1]


def test_a_pair_served_over_http_gives_the_granule_of_the_local_files(tmp_path: Path) -> None:
    pair = synthetic.make_pair((400, 400), synthetic.uniform(0.4, -0.6), seed=41)
    served = tmp_path / "served"
    ref, sec = _cogs(pair, served, "remote")
    local = track_pair(TrackRequest(str(ref), str(sec), tmp_path / "local.nc", **SMALL))
    with file_server(served) as server:
        remote = track_pair(
            TrackRequest(
                f"{server.url}/{ref.name}",
                f"{server.url}/{sec.name}",
                tmp_path / "remote.nc",
                ref_id="S2B_T07VCG_20240701T204019_L2A",
                sec_id="S2A_T07VCG_20240717T204021_L2A",
                **SMALL,
            )
        )
        asked = server.requests()
    with xr.open_dataset(local.path) as a, xr.open_dataset(remote.path) as b:
        for name in ("vx", "vy", "v", "chip_size_width"):
            np.testing.assert_array_equal(a[name].values, b[name].values)
        info = b["img_pair_info"].attrs
        assert (info["satellite_img1"], info["satellite_img2"]) == ("2B", "2A")
        assert synthetic.granule_accuracy(b, pair).rmse_px < 0.05
    gets = [(path, wanted) for method, path, wanted in asked if method == "GET"]
    assert {path for path, _ in gets} == {f"/{ref.name}", f"/{sec.name}"}
    # every read was a range of the file, never the file whole
    assert gets and all(wanted.startswith("bytes=") for _, wanted in gets)
    assert not [path for method, path, _ in asked if path.endswith((".aux.xml", "/"))]


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_remote_scenes_that_cannot_be_used_are_named(tmp_path: Path) -> None:
    served = tmp_path / "served"
    pair = synthetic.make_pair((200, 200), seed=42)
    _, sec = _cogs(pair, served, "ok")
    far = synthetic.make_pair((200, 200), seed=43)
    far.origin = (synthetic.ORIGIN_X + 90_000.0, synthetic.ORIGIN_Y)
    far_ref, _ = _cogs(far, served, "far")
    bare = served / "bare.tif"
    with rasterio.open(
        bare, "w", driver="GTiff", width=64, height=64, count=1, dtype="float32"
    ) as d:
        d.write(pair.ref[:64, :64], 1)
    with file_server(served) as server:
        cases = {
            f"{server.url}/missing.tif": "missing.tif: cannot read it",
            f"{server.url}/bare.tif": "bare.tif: is not georeferenced",
            f"{server.url}/{far_ref.name}": "do not overlap",
        }
        for href, reason in cases.items():
            with pytest.raises(SceneError, match=reason):
                track_pair(
                    TrackRequest(
                        href,
                        f"{server.url}/{sec.name}",
                        tmp_path / "never.nc",
                        ref_time="2024-07-01T00:00:00",
                        **SMALL,
                    )
                )
    assert not (tmp_path / "never.nc").exists()


def test_remote_reading_sets_gdal_up_where_the_environment_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "9")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/")
    monkeypatch.delenv("AWS_S3_ENDPOINT", raising=False)
    monkeypatch.delenv("GDAL_DISABLE_READDIR_ON_OPEN", raising=False)
    with remote_reading():
        options = rasterio.env.getenv()
    assert options["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert "GDAL_HTTP_MAX_RETRY" not in options  # the user's 9 stands
    assert os.environ["GDAL_HTTP_MAX_RETRY"] == "9"
    assert (options["AWS_S3_ENDPOINT"], options["AWS_HTTPS"]) == ("127.0.0.1:9000", "NO")
    assert options["AWS_VIRTUAL_HOSTING"] == "FALSE"


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3-compatible store on loopback (moto's server), named by AWS_ENDPOINT_URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        for name, value in {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_S3_ENDPOINT", raising=False)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def test_a_pair_in_an_s3_store_gives_the_granule_of_the_local_files(
    tmp_path: Path, s3_endpoint: str
) -> None:
    import boto3

    pair = synthetic.make_pair((300, 300), synthetic.uniform(-0.3, 0.5), seed=46)
    ref, sec = _cogs(pair, tmp_path / "cogs", "s3")
    store = boto3.client("s3", endpoint_url=s3_endpoint)
    store.create_bucket(Bucket="scenes")
    for path in (ref, sec):
        store.upload_file(str(path), "scenes", f"2024/{path.name}")
    local = track_pair(TrackRequest(str(ref), str(sec), tmp_path / "local.nc", **SMALL))
    remote = track_pair(
        TrackRequest(
            f"s3://scenes/2024/{ref.name}", f"s3://scenes/2024/{sec.name}", tmp_path / "s3.nc",
            **SMALL,
        )
    )  # fmt: skip
    with xr.open_dataset(local.path) as a, xr.open_dataset(remote.path) as b:
        xr.testing.assert_equal(a[["vx", "vy"]], b[["vx", "vy"]])
    with pytest.raises(SceneError, match=r"s3://scenes/2024/missing\.tif: cannot read"):
        track_pair(TrackRequest("s3://scenes/2024/missing.tif", str(sec), tmp_path / "x.nc"))
