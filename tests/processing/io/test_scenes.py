"""Reading scenes: every way a user's input can be unusable ends in a SceneError naming the file.

Valid scenes are synthetic pairs written as GeoTIFFs; bad ones are crafted with rasterio
(or by damaging the bytes of a valid file).
"""

from __future__ import annotations

import functools
import http.server
import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.shutil import copy as copy_raster
from rasterio.transform import from_origin
from rasterio.warp import Resampling, calculate_default_transform, reproject

from glacierflow.processing import synthetic
from glacierflow.processing.io.scenes import SceneError, describe, open_pair, parse_time

SHAPE = (300, 300)
TIFF_TIME = "2024:07:01 12:00:00"
GRID = from_origin(
    synthetic.ORIGIN_X, synthetic.ORIGIN_Y, synthetic.PIXEL_SIZE_M, synthetic.PIXEL_SIZE_M
)


@pytest.fixture(scope="module")
def pair() -> synthetic.SyntheticPair:
    return synthetic.make_pair(SHAPE, seed=1)


@pytest.fixture
def scenes(pair: synthetic.SyntheticPair, tmp_path: Path) -> tuple[Path, Path]:
    return synthetic.write_geotiffs(pair, tmp_path / "scenes", "syn")


def _write(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = f"EPSG:{synthetic.EPSG}",
    transform: rasterio.Affine | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """A float32 GeoTIFF of `data` (bands first if 3-D), by default on the synthetic grid."""
    bands = data if data.ndim == 3 else data[None]
    georef = {} if crs is None else {"crs": crs, "transform": transform or GRID}
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=bands.shape[1],
        width=bands.shape[2],
        count=bands.shape[0],
        dtype="float32",
        nodata=np.nan,
        **georef,
    ) as dst:
        dst.write(bands.astype(np.float32))
        dst.update_tags(**({"TIFFTAG_DATETIME": TIFF_TIME} if tags is None else tags))
    return path


def _scene_error(path: Path, time_override: str | None = None) -> str:
    """describe() must refuse the file with a message that names it."""
    with pytest.raises(SceneError) as info:
        describe(str(path), time_override)
    message = str(info.value)
    assert str(path) in message
    return message


# -- acquisition times ----------------------------------------------------------------------


def test_valid_scene_time_comes_from_its_tiff_tag(
    scenes: tuple[Path, Path], pair: synthetic.SyntheticPair
) -> None:
    ref = describe(str(scenes[0]))
    sec = describe(str(scenes[1]))
    assert ref.acquired == pair.ref_time.replace(tzinfo=UTC)
    assert sec.acquired == pair.sec_time.replace(tzinfo=UTC)
    assert ref.scene_id == "syn_ref"
    assert (ref.mission, ref.satellite, ref.sensor) == ("L", "8", "C")


def test_time_override_wins_over_the_tag(scenes: tuple[Path, Path]) -> None:
    info = describe(str(scenes[0]), "2023-01-02T03:04:05")
    assert info.acquired == datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_acquisition_time_tag_is_used_when_there_is_no_tiff_datetime(
    tmp_path: Path, pair: synthetic.SyntheticPair
) -> None:
    path = _write(tmp_path / "acq.tif", pair.ref, tags={"ACQUISITION_TIME": "2024-08-01T00:30:00Z"})
    assert describe(str(path)).acquired == datetime(2024, 8, 1, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024:07:01 12:00:00", datetime(2024, 7, 1, 12, tzinfo=UTC)),  # TIFF
        ("2024:07:01 12:00:00.250", datetime(2024, 7, 1, 12, 0, 0, 250000, tzinfo=UTC)),
        ("2024-07-01T12:00:00", datetime(2024, 7, 1, 12, tzinfo=UTC)),  # naive ISO is UTC
        ("2024-07-01T12:00:00Z", datetime(2024, 7, 1, 12, tzinfo=UTC)),
        ("2024-07-01T14:00:00+02:00", datetime(2024, 7, 1, 12, tzinfo=UTC)),  # to UTC
        ("  2024-07-01  ", datetime(2024, 7, 1, tzinfo=UTC)),
    ],
)
def test_parse_time_reads_iso_and_tiff_formats(text: str, expected: datetime) -> None:
    value = parse_time(text)
    assert value == expected
    assert value.tzinfo == UTC


@pytest.mark.parametrize("text", ["yesterday", "2024/07/01", "", "2024:13:01 12:00:00"])
def test_parse_time_rejects_other_formats(text: str) -> None:
    with pytest.raises(SceneError, match="ISO 8601"):
        parse_time(text)


def test_no_time_tag_asks_for_the_flag(tmp_path: Path, pair: synthetic.SyntheticPair) -> None:
    path = _write(tmp_path / "untimed.tif", pair.ref, tags={})
    message = _scene_error(path)
    assert "--ref-time" in message
    # ...and the flag is the way out
    assert describe(str(path), "2024-07-01T12:00").acquired == datetime(2024, 7, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize("where", ["tag", "override"])
def test_unreadable_time_names_the_file(
    tmp_path: Path, pair: synthetic.SyntheticPair, where: str
) -> None:
    tags = {"TIFFTAG_DATETIME": "yesterday"} if where == "tag" else None
    path = _write(tmp_path / "badtime.tif", pair.ref, tags=tags)
    _scene_error(path, "yesterday" if where == "override" else None)


# -- files that are not usable images -------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    message = _scene_error(tmp_path / "nowhere.tif")
    assert "no such file" in message


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "random.tif"
    path.write_bytes(np.random.default_rng(0).bytes(20_000))
    _scene_error(path)


@pytest.mark.parametrize("layout", ["GTiff", "COG"])
def test_truncated_geotiff(scenes: tuple[Path, Path], tmp_path: Path, layout: str) -> None:
    """A GeoTIFF keeps its directory at the end (open fails), a COG at the start (read fails)."""
    source = scenes[0]
    if layout == "COG":
        source = tmp_path / "cog.tif"
        copy_raster(scenes[0], source, driver="COG", compress="deflate", blocksize=128)
    data = source.read_bytes()
    path = tmp_path / f"truncated_{layout}.tif"
    path.write_bytes(data[: len(data) // 2])
    try:
        describe(str(path))
    except SceneError as err:
        assert str(path) in str(err)
        return
    with pytest.raises(SceneError, match=str(path)), open_pair(str(path), str(scenes[1])) as reader:
        reader(0, SHAPE[0], 0, SHAPE[1])


def test_not_georeferenced(tmp_path: Path, pair: synthetic.SyntheticPair) -> None:
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning):
        path = _write(tmp_path / "plain.tif", pair.ref, crs=None)
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning):
        message = _scene_error(path)
    assert "not georeferenced" in message


def test_two_bands(tmp_path: Path, pair: synthetic.SyntheticPair) -> None:
    path = _write(tmp_path / "rgb.tif", np.stack([pair.ref, pair.sec]))
    assert "2 bands" in _scene_error(path)


def test_all_nan(tmp_path: Path) -> None:
    path = _write(tmp_path / "nan.tif", np.full(SHAPE, np.nan))
    assert "nodata or NaN" in _scene_error(path)


def test_all_nodata_integer_image(tmp_path: Path) -> None:
    path = tmp_path / "zeros.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=64,
        width=64,
        count=1,
        dtype="uint16",
        nodata=0,
        crs=f"EPSG:{synthetic.EPSG}",
        transform=GRID,
    ) as dst:
        dst.write(np.zeros((64, 64), np.uint16), 1)
        dst.update_tags(TIFFTAG_DATETIME=TIFF_TIME)
    assert "nodata or NaN" in _scene_error(path)


def test_constant_image_has_no_texture(tmp_path: Path) -> None:
    image = np.full(SHAPE, 3.0)
    image[:40] = np.nan  # holes do not make texture
    path = _write(tmp_path / "flat.tif", image)
    assert "no texture" in _scene_error(path)


def test_texture_outside_the_sampled_windows_is_found(
    tmp_path: Path, pair: synthetic.SyntheticPair
) -> None:
    """The quick check samples small windows; texture only between them still counts."""
    image = np.full((1000, 1000), 5.0)
    image[480:520, 480:520] = pair.ref[:40, :40]
    describe(str(_write(tmp_path / "island.tif", image)))


# -- pairs -----------------------------------------------------------------------------------


def test_images_that_do_not_overlap(tmp_path: Path, pair: synthetic.SyntheticPair) -> None:
    ref = _write(tmp_path / "here.tif", pair.ref)
    far = GRID @ Affine.translation(100_000 / synthetic.PIXEL_SIZE_M, 0)  # 100 km east
    sec = _write(tmp_path / "there.tif", pair.sec, transform=far)
    with pytest.raises(SceneError, match="do not overlap") as info, open_pair(str(ref), str(sec)):
        pass
    assert str(ref) in str(info.value) and str(sec) in str(info.value)


def test_same_grid_is_read_as_is(scenes: tuple[Path, Path], pair: synthetic.SyntheticPair) -> None:
    with open_pair(str(scenes[0]), str(scenes[1])) as reader:
        ref, sec = reader(10, 70, 20, 100)
        # windows reaching past the image are NaN-padded
        edge_ref, edge_sec = reader(-8, 8, SHAPE[1] - 8, SHAPE[1] + 8)
    np.testing.assert_array_equal(ref, pair.ref[10:70, 20:100])
    np.testing.assert_array_equal(sec, pair.sec[10:70, 20:100])
    assert np.isnan(edge_ref[:8]).all() and np.isnan(edge_sec[:, 8:]).all()
    np.testing.assert_array_equal(edge_sec[8:, :8], pair.sec[:8, -8:])


def test_sec_in_another_crs_is_read_on_ref_grid(
    scenes: tuple[Path, Path], pair: synthetic.SyntheticPair, tmp_path: Path
) -> None:
    utm = tmp_path / "sec_utm.tif"
    with rasterio.open(scenes[1]) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:32624", src.width, src.height, *src.bounds
        )
        profile = {
            **src.profile,
            "crs": "EPSG:32624",
            "transform": transform,
            "width": width,
            "height": height,
        }
        with rasterio.open(utm, "w", **profile) as dst:
            reproject(
                rasterio.band(src, 1),
                rasterio.band(dst, 1),
                resampling=Resampling.cubic,
                src_nodata=np.nan,
                dst_nodata=np.nan,
            )
            dst.update_tags(**src.tags())
    assert describe(str(utm)).acquired == pair.sec_time.replace(tzinfo=UTC)
    with open_pair(str(scenes[0]), str(utm)) as reader:
        assert reader.geometry.shape == SHAPE
        assert reader.geometry.crs == rasterio.crs.CRS.from_epsg(synthetic.EPSG)
        ref, sec = reader(0, SHAPE[0], 0, SHAPE[1])
    np.testing.assert_array_equal(ref, pair.ref)
    m = 30  # interior: away from the warped edges
    diff = (sec - pair.sec)[m:-m, m:-m]
    assert not np.isnan(diff).any()
    # two cubic resamplings of a band-limited texture (std 1); a one-pixel offset gives ~0.35
    assert np.sqrt(np.mean(diff**2)) < 0.06
    assert np.abs(diff).max() < 0.3


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves byte ranges, as object stores and COG hosts do (GDAL's /vsicurl/ needs them)."""

    def do_GET(self) -> None:
        header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not header or not path.is_file():
            return super().do_GET()
        data = path.read_bytes()
        start, _, end = header.removeprefix("bytes=").partition("-")
        first, last = int(start), min(int(end) if end else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(data[first : last + 1])

    def log_message(self, *args) -> None:
        pass


def _serve(directory: str, ports: multiprocessing.Queue) -> None:
    handler = functools.partial(_RangeHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ports.put(server.server_address[1])
    server.serve_forever()


@pytest.fixture
def http_folder(tmp_path: Path):
    """A real HTTP server on loopback serving tmp_path; yields its base URL.

    It runs in its own process: GDAL holds the GIL while it waits for the answer.
    """
    ports: multiprocessing.Queue = multiprocessing.Queue()
    server = multiprocessing.get_context("fork").Process(
        target=_serve, args=(str(tmp_path), ports), daemon=True
    )
    server.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=10)}"
    finally:
        server.terminate()
        server.join(5)


def test_scenes_are_read_by_url(tmp_path: Path, http_folder: str) -> None:
    pair = synthetic.make_pair((300, 300), synthetic.uniform(0.4, -0.6), seed=3)
    ref, sec = synthetic.write_geotiffs(pair, tmp_path, "web")
    info = describe(f"{http_folder}/{ref.name}")
    assert info.scene_id == "web_ref" and info.acquired.year == 2024
    with open_pair(f"{http_folder}/{ref.name}", f"{http_folder}/{sec.name}") as reader:
        ref_block, _ = reader(0, 300, 0, 300)
    np.testing.assert_array_equal(ref_block, pair.ref)
    with pytest.raises(SceneError, match=r"missing\.tif"):
        describe(f"{http_folder}/missing.tif")
