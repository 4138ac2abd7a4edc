"""Tracker speed: vectors per second end to end (GeoTIFFs -> granule) and in the core.

Pairs: synthetic fractal texture, 2 % noise, a channel-flow glacier (up to 6 px), 16 px
grid and chips (120 m at 7.5 m pixels), +-25 px search (--max-speed 4109 m/yr over 16
days). Each figure is the best of --repeat runs after a warm-up that measures the FFTW
plans (kept as wisdom, as production runs keep them). The core figures time the FFT NCC
alone on the same chip/window shapes, as a baseline for what the rest costs.

    .venv/bin/python benchmarks/tracker_speed.py [--sizes 1000 3000] [--memory 8000]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from glacierflow.processing import synthetic
from glacierflow.processing.pipeline import TrackRequest, track_pair
from glacierflow.processing.tracking.correlation import ncc_surfaces

SEARCH_PX = 25
MAX_SPEED = 24 * synthetic.PIXEL_SIZE_M * 365.25 / 16  # -> +-25 px over 16 days


def _pair_files(size: int, folder: Path) -> tuple[Path, Path]:
    field = synthetic.channel_flow(size / 2, size * 0.35, 6.0, margin_px=20.0)
    pair = synthetic.make_pair((size, size), field, noise=0.02, seed=size)
    return synthetic.write_geotiffs(pair, folder, f"speed{size}")


def _tiled_pair_files(size: int, folder: Path) -> tuple[Path, Path]:
    """A large pair made by tiling a periodic texture and its exact Fourier shift."""
    rng = np.random.default_rng(size)
    tile = synthetic.fractal_texture((2000, 2000), rng)
    fy = np.fft.fftfreq(2000)[:, None]
    fx = np.fft.rfftfreq(2000)[None, :]
    shifted = np.fft.irfft2(
        np.fft.rfft2(tile) * np.exp(-2j * np.pi * (fy * 0.3 + fx * 2.6)), s=tile.shape
    )
    reps = (size // 2000, size // 2000)
    ref = np.tile(tile, reps) + 0.02 * rng.standard_normal((size, size)).astype(np.float32)
    sec = np.tile(shifted.astype(np.float32), reps) + 0.02 * rng.standard_normal(
        (size, size)
    ).astype(np.float32)
    pair = synthetic.SyntheticPair(field=synthetic.uniform(0.3, 2.6), ref=ref, sec=sec)
    return synthetic.write_geotiffs(pair, folder, f"memory{size}")


def _request(ref: Path, sec: Path, out: Path, threads: int, wisdom: Path) -> TrackRequest:
    return TrackRequest(
        ref=str(ref),
        sec=str(sec),
        output=out,
        chip_min_m=120,
        chip_max_m=480,
        max_speed_m_per_yr=MAX_SPEED,
        threads=threads,
        wisdom=wisdom,
    )


def end_to_end(size: int, folder: Path, repeat: int) -> None:
    ref, sec = _pair_files(size, folder)
    wisdom = folder / "wisdom.json"
    cold = track_pair(_request(ref, sec, folder / "cold.nc", 1, wisdom))
    print(
        f"{size}x{size}: {cold.nodes} vectors, valid {cold.valid_percentage:.1f} %, "
        f"first run (FFTW planning) {cold.seconds['total']:.2f} s"
    )
    for threads in (1, 2):
        best = min(
            (
                track_pair(_request(ref, sec, folder / f"t{threads}.nc", threads, wisdom))
                for _ in range(repeat)
            ),
            key=lambda r: r.seconds["total"],
        )
        s = best.seconds
        print(
            f"  end to end, {threads} thread(s): {best.nodes / s['total']:8.0f} vectors/s "
            f"({s['total']:.3f} s: read/check {s['read']:.3f}, track {s['track']:.3f}, "
            f"write {s['write']:.3f})"
        )


def core(repeat: int) -> None:
    rng = np.random.default_rng(0)
    n = 4096
    for chip, radius in ((16, SEARCH_PX), (16, 4)):
        windows = rng.standard_normal((n, chip + 2 * radius, chip + 2 * radius)).astype(np.float32)
        templates = windows[:, radius : radius + chip, radius : radius + chip].copy()
        ncc_surfaces(templates, windows)
        best = min(_timed(ncc_surfaces, templates, windows) for _ in range(repeat))
        print(f"core FFT NCC, {chip} px chips, +-{radius} px search: {n / best:8.0f} chips/s")


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def memory(size: int, folder: Path) -> None:
    """Track a SIZE^2 pair in a fresh process and report its peak resident memory."""
    ref, sec = _tiled_pair_files(size, folder)
    out = subprocess.run(
        [sys.executable, __file__, "--measure-one", str(ref), str(sec), str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    nodes, valid, seconds, rss_kb = out.stdout.split()
    rate = int(nodes) / float(seconds)
    print(
        f"{size}x{size} (tiled): {nodes} vectors, valid {float(valid):.1f} %, "
        f"{float(seconds):.1f} s, {rate:.0f} vectors/s (2 threads), "
        f"peak memory {int(rss_kb) / 1024**2:.2f} GB"
    )


def _measure_one(ref: str, sec: str, folder: str) -> None:
    out = Path(folder)
    r = track_pair(_request(Path(ref), Path(sec), out / "mem.nc", 2, out / "wisdom.json"))
    # VmHWM is this process's own peak; ru_maxrss would carry the parent's over fork+exec
    status = Path("/proc/self/status").read_text().splitlines()
    rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(r.nodes, r.valid_percentage, r.seconds["total"], rss_kb)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 3000])
    parser.add_argument("--memory", type=int, default=None, help="also a SIZE^2 pair's peak memory")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--measure-one", nargs=3, metavar=("REF", "SEC", "DIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.measure_one:
        _measure_one(*args.measure_one)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        core(args.repeat)
        for size in args.sizes:
            end_to_end(size, folder, args.repeat)
        if args.memory:
            memory(args.memory, folder)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"(peak memory of this process: {peak:.2f} GB)")


if __name__ == "__main__":
    main()
