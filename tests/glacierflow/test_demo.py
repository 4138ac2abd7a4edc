"""`glacierflow demo --quick`: the demo region end to end, its validation against the truth,
a second run that reuses everything, and the served result as a user reaches it."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import morecantile
import numpy as np
import pytest
import rasterio
from PIL import Image

from glacierflow.catalog.database import FALLBACK_ROOT, cluster_directory

# the validation table's rows: place, layers, true speed, median and p90 error,
# amplitude served / truth, surge served / truth
ROW = re.compile(
    r"^(valley|lobe centre|lobe flank|rock)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+"
    r"(\d+) / (\d+)\s+([+-]\d+)% / ([+-]\d+)%$",
    re.M,
)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "GLACIERFLOW_DATA_DIR": str(tmp_path / "data"), "GLACIERFLOW_THREADS": "1"}
    for name in ("DATABASE_URL", "PGHOST", "GLACIERFLOW_DASK_SCHEDULER"):
        env.pop(name, None)
    return env


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "glacierflow.cli", "demo", "--quick", "--no-serve", *args],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=1200,
        check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_the_quick_demo_builds_validates_reuses_and_serves(tmp_path: Path) -> None:
    first = _demo(tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    printed = first.stderr
    scenes = int(re.search(r"^scenes: (\d+) in ", printed, re.M).group(1))
    assert f"catalog: {scenes} scene item(s) in collection 'scenes'" in printed
    pairs = int(re.search(r"^pairs: (\d+), 0 done before, \1 to track$", printed, re.M).group(1))
    assert pairs > 50
    assert re.search(rf"^  tracked\s+{pairs}\s", printed, re.M), printed[-3000:]
    assert re.search(r"^  failed\s+0$", printed, re.M)
    assert re.search(rf"^granules\s+{pairs}\s+{pairs} item\(s\) catalogued", printed, re.M)
    data = tmp_path / "data"
    assert sorted(p.name for p in (data / "mosaics").glob("*.nc")) == [
        f"ITS_LIVE_velocity_120m_DEMO_{year}_v02.nc" for year in ("0000", "2024", "2025")
    ]
    _the_validation_holds(printed)
    _a_reference_velocity_brings_the_surge_back(printed)

    granules = {p: p.stat().st_mtime_ns for p in (data / "granules").rglob("*.nc")}
    mosaics = {p: p.stat().st_mtime_ns for p in (data / "mosaics").iterdir()}
    second = _demo(tmp_path)
    assert second.returncode == 0, second.stderr[-4000:]
    assert f"pairs: {pairs}, {pairs} done before, 0 to track" in second.stderr
    assert re.search(r"^mosaics\s+3\s+reused", second.stderr, re.M)
    assert {p: p.stat().st_mtime_ns for p in (data / "granules").rglob("*.nc")} == granules
    assert {p: p.stat().st_mtime_ns for p in (data / "mosaics").iterdir()} == mosaics
    assert ROW.findall(second.stderr) == ROW.findall(printed)

    _served_as_printed(tmp_path)
    cluster = cluster_directory(data)
    if cluster.is_relative_to(FALLBACK_ROOT):
        shutil.rmtree(cluster)


def _the_validation_holds(printed: str) -> None:
    """What /timeseries serves is the truth within the tracker's errors, and the seasonal
    amplitude and the surge come back as the truth has them."""
    rows = {row[0]: row for row in ROW.findall(printed)}
    assert rows.keys() == {"valley", "lobe centre", "lobe flank", "rock"}, printed[-3000:]
    for name in ("lobe centre", "lobe flank"):
        _, layers, speed, median, p90, amp, true_amp, surge, true_surge = rows[name]
        assert int(layers) > 50 and int(speed) > 500
        assert float(median) < 30 and float(p90) < 80, rows[name]  # m/yr
        # the surge inside the fit's window pulls on its seasonal sinusoid, so a few m/yr of
        # tracking noise move the served amplitude more than the speeds: within 25 %
        assert abs(int(amp) - int(true_amp)) < 0.25 * int(true_amp), rows[name]
        assert int(true_surge) > 50 and abs(int(surge) - int(true_surge)) <= 10, rows[name]
    _, _, speed, median, p90, *_ = rows["rock"]
    assert int(speed) == 0 and float(median) < 10 and float(p90) < 25, rows["rock"]


def _a_reference_velocity_brings_the_surge_back(printed: str) -> None:
    """With a search sized for the usual speeds, a long pair in the surge is lost without a
    prior and found with the summary mosaic's (the first pair's ice median error)."""
    rows = re.findall(r"^\| (\S+_X_\S+) \| \d+ \| 1,200 \| (no|yes) \| [\d.]+ \| (\d+) / \d+ ",
                      printed, re.M)  # fmt: skip
    assert len(rows) == 4, printed[-3000:]
    (pair, _, without), (same, _, with_prior) = rows[0], rows[1]
    assert pair == same and int(without) > 500 and int(with_prior) < 60, rows


def _served_as_printed(tmp_path: Path) -> None:
    """`glacierflow demo` (reusing what is built) serves until Ctrl-C: the STAC API finds
    the granules, the printed URLs answer, and the private database stops with it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "demo.log"
    with log.open("w") as output:
        demo = subprocess.Popen(
            [sys.executable, "-m", "glacierflow.cli", "demo", "--quick", "--port", str(port)],
            cwd=tmp_path, env=_env(tmp_path), stderr=output, text=True,
        )  # fmt: skip
    try:
        found = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and demo.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/stac/search?collections=granules")
                if answer.status_code == 200 and answer.json()["features"]:
                    found = answer.json()["features"]
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        assert found, f"the demo never served its granules: {log.read_text()[-3000:]}"
        assert re.match(r"^(LC08|S2[AB])_\S+_X_(LC08|S2[AB])_\S+_G0120V02_P\d{3}$", found[0]["id"])
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "up"
        printed = log.read_text()
        (history,) = re.findall(r"^a point's history: (\S+)$", printed, re.M)
        series = httpx.get(history, timeout=60).json()
        assert series["count"] > 50
        _the_printed_map_urls_answer(printed)
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(60)
    assert demo.returncode == 0, log.read_text()[-3000:]
    cluster = cluster_directory(tmp_path / "data")
    assert (cluster / "data" / "PG_VERSION").exists()
    assert not (cluster / "data" / "postmaster.pid").exists()


def _the_printed_map_urls_answer(printed: str) -> None:
    """The demo's mosaic item, a tile of its XYZ template at the glacier (speed colours,
    opaque where the glacier is), its WMTS capabilities and the legend, as printed."""
    (item_url,) = re.findall(r"^mosaic item: (\S+_2025_v02)$", printed, re.M)
    item = httpx.get(item_url).json()
    assert item["properties"]["year"] == 2025
    with rasterio.open(f"/vsicurl/{item['assets']['v']['href']}") as cog:
        assert np.isfinite(cog.read(1)).any()
    (template,) = re.findall(r"\(XYZ\): (\S+)$", printed, re.M)
    west, south, east, north = item["bbox"]
    tile = morecantile.tms.get("WebMercatorQuad").tile((west + east) / 2, (south + north) / 2, 12)
    answer = httpx.get(template.format(z=tile.z, x=tile.x, y=tile.y), timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    rgba = np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGBA"))
    assert (rgba[..., 3] == 255).any(), "the glacier is drawn"
    (wmts,) = re.findall(r"^QGIS \(WMTS\): (\S+)$", printed, re.M)
    capabilities = httpx.get(wmts, timeout=60)
    assert capabilities.status_code == 200 and "<Capabilities" in capabilities.text
    (legend,) = re.findall(r"^legend: (\S+\.png)", printed, re.M)
    assert httpx.get(legend).headers["content-type"] == "image/png"
