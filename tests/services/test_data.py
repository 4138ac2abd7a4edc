"""The data behind the catalog, served under /data: asset hrefs are URLs that plain HTTP
clients open (pystac-client, range requests, xarray), for any host the client used or the
configured public URL; nothing but published data files is served, and no answer names a
server path."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import netCDF4
import numpy as np
import pytest
import xarray as xr
from conftest import serving
from pystac_client import Client

from glacierflow.catalog.loader import init_catalog, load_granules
from glacierflow.services.app import create_app
from glacierflow.settings import Settings


@pytest.fixture(scope="module")
def published(granule_files, new_catalog, tmp_path_factory):
    """A data directory with one granule (and its browse PNG) in the catalog, served; and
    around it what must never be served."""
    root = tmp_path_factory.mktemp("data-root")
    folder = root / "data"
    (folder / "granules").mkdir(parents=True)
    source = granule_files["august"]
    granule = Path(shutil.copy(source, folder / "granules"))
    shutil.copy(source.with_suffix(".png"), folder / "granules")
    secret = root / "secret.nc"  # beside the data directory, not in it
    secret.write_bytes(b"secret")
    for private in (
        "postgres/data/base.nc",
        "cache/fftw.nc",
        ".hidden.nc",
        "cubes/.glacierflow/x.nc",
    ):
        (folder / private).parent.mkdir(parents=True, exist_ok=True)
        (folder / private).write_bytes(b"private")
    (folder / "granules" / "notes.txt").write_text("not a data file")
    os.symlink(secret, folder / "granules" / "escape.nc")
    settings = Settings(data_dir=folder)
    dsn = new_catalog("data_files")
    init_catalog(dsn, {})
    report = load_granules(dsn, [granule], "granules", settings.data_href)
    assert report.loaded == [granule.stem]
    with serving(create_app(settings, dsn)) as url:
        yield {"url": url, "granule": granule, "folder": folder, "dsn": dsn, "root": root}


def _items(base: str) -> list:
    return list(Client.open(f"{base}/stac").search(collections=["granules"]).items())


def test_pystac_client_hrefs_open_with_range_requests_and_xarray(published) -> None:
    url, granule = published["url"], published["granule"]
    (item,) = _items(url)
    href = item.assets["data"].href
    assert href == f"{url}/data/granules/{granule.name}"
    assert item.assets["thumbnail"].href == f"{url}/data/granules/{granule.stem}.png"
    with httpx.Client(timeout=30) as http:
        head = http.head(href)
        assert head.status_code == 200 and head.headers["accept-ranges"] == "bytes"
        size = int(head.headers["content-length"])
        assert size == granule.stat().st_size
        pieces, step = [], 64 * 1024
        for start in range(0, size, step):
            end = min(start + step, size) - 1
            part = http.get(href, headers={"range": f"bytes={start}-{end}"})
            assert part.status_code == 206
            assert part.headers["content-range"] == f"bytes {start}-{end}/{size}"
            pieces.append(part.content)
        whole = http.get(href, headers={"accept-encoding": "br, gzip"})  # served as stored
        thumbnail = http.get(item.assets["thumbnail"].href)
    data = b"".join(pieces)
    assert data == granule.read_bytes() == whole.content
    assert thumbnail.content[:8] == b"\x89PNG\r\n\x1a\n"
    in_memory = netCDF4.Dataset("granule.nc", memory=data)  # closed by xarray
    with (
        xr.open_dataset(xr.backends.NetCDF4DataStore(in_memory)) as ds,
        xr.open_dataset(granule) as local,
    ):
        np.testing.assert_array_equal(ds["vx"].values, local["vx"].values)


def test_hrefs_follow_the_host_the_client_used_or_the_public_data_url(published) -> None:
    url, granule = published["url"], published["granule"]
    localhost = url.replace("127.0.0.1", "localhost")
    (item,) = _items(localhost)
    assert item.assets["data"].href == f"{localhost}/data/granules/{granule.name}"
    one = httpx.get(f"{url}/stac/collections/granules/items/{granule.stem}").json()
    assert one["assets"]["data"]["href"] == f"{url}/data/granules/{granule.name}"
    public = Settings(
        data_dir=published["folder"], public_data_url="https://data.example.org/glacierflow/"
    )
    with serving(create_app(public, published["dsn"])) as other:
        (item,) = _items(other)
    assert (
        item.assets["data"].href == f"https://data.example.org/glacierflow/granules/{granule.name}"
    )
    with pytest.raises(ValueError, match="public_data_url"):
        Settings(public_data_url="/srv/data")


@pytest.mark.parametrize(
    "target",
    [
        b"/data/../secret.nc",
        b"/data/%2e%2e/secret.nc",
        b"/data/granules/..%2f..%2fsecret.nc",
        b"/data/granules/escape.nc",  # a symlink out of the data directory
        b"/data/postgres/data/base.nc",
        b"/data/cache/fftw.nc",
        b"/data/.hidden.nc",
        b"/data/cubes/.glacierflow/x.nc",
        b"/data/granules/notes.txt",
        b"/data/granules",
        b"/data/granules/",
        b"/data/",
        b"/data/%00.nc",
    ],
)
def test_only_published_files_are_served(published, target: bytes) -> None:
    with httpx.Client(timeout=30) as http:  # the request target sent as written
        answer = http.request("GET", f"{published['url']}/", extensions={"target": target})
    assert answer.status_code == 404, answer.text
    assert b"secret" not in answer.content and b"private" not in answer.content
    assert str(published["root"]).encode() not in answer.content


def test_every_operation_has_its_own_operation_id(published) -> None:
    """OpenAPI clients and the fuzzer name operations by operationId: GET and HEAD /data too."""
    document = httpx.get(f"{published['url']}/openapi.json", timeout=30).json()
    ids = [op["operationId"] for path in document["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert {"get", "head"} <= set(document["paths"]["/data/{path}"])
