"""Tracker speed: vectors per second of the library call, side by side with autoRIFT,
and what the `glacierflow track` process spends outside that call.

Pairs: synthetic fractal texture, 2 % noise, a channel-flow glacier (up to 6 px), 16 px
grid and chips (120 m at 7.5 m pixels), +-25 px search (--max-speed 4109 m/yr over 16
days). Every figure is the best of --repeat runs after a warm-up that measures the FFTW
plans (kept as wisdom, as production runs keep them). What each figure includes:

- "library call": `track_pair` in this process: open and check both GeoTIFFs, read,
  pre-filter, track, velocity and quality figures, write the NetCDF granule and its PNG.
- "CLI": the wall time of a `glacierflow track` process on the same pair (Python start,
  imports, option checks, the same library call, exit); "outside the call" is that wall
  time minus the call's own total, which the command prints. Its CPU time (user + system)
  is printed beside the library call's in this process, whose difference does not grow
  with the machine's load as wall times do.
- "start-up": `glacierflow --help`, an empty Python, and the imports a track command
  makes, each a process of its own (wall and CPU, best of the rounds).
- "autoRIFT" (with --autorift DIR, a folder holding run_autorift.py): nasa-jpl/autoRIFT's
  optical workflow on the same pair as in-memory arrays, run by that folder's Python
  (default /usr/bin/python3) in its own process, timed inside it: its high-pass
  pre-filter, uint8 conversion and runAutorift() (nested chip search 16-64 px, +-25 px,
  oversampled sub-pixel, filtering); no reading or writing; the second of two runs in its
  process (numba compiled, as FFTW's plans are planned). glacierflow and autoRIFT
  runs alternate (interleaved) on the same pair, so that load on the machine hits both.
  Both are also timed in CPU seconds (all their threads; OpenCV may use more than one):
  on a machine others load, vectors per CPU second vary less than vectors per second.
- "core": the batched FFT NCC alone on the same chip/window shapes.

    .venv/bin/python benchmarks/tracker_speed.py [--sizes 1000 3000] [--repeat 3]
        [--threads 1 2] [--autorift /work/autorift] [--memory 8000]
"""

from __future__ import annotations

import argparse
import os
import re
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


def _autorift_run(
    folder: Path, autorift: Path, python: str, ref: Path, sec: Path
) -> tuple[int, float, float]:
    """(vectors, seconds, CPU seconds) of autoRIFT on the pair, timed inside its process
    (its second run there)."""
    out = subprocess.run(
        [python, str(autorift / "run_autorift.py"), str(ref), str(sec), "--spacing", "16",
         "--chip-min", "16", "--chip-max", "64", "--search", str(SEARCH_PX), "--repeat", "2"],
        cwd=folder, capture_output=True, text=True, check=True,
    )  # fmt: skip
    # the second run: numba's compilation and first-touch costs paid, as FFTW's are for us
    runs = re.findall(r"autorift nodes (\d+) valid \d+ seconds ([\d.]+) cpu ([\d.]+)", out.stdout)
    return int(runs[-1][0]), float(runs[-1][1]), float(runs[-1][2])


def _child(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall, CPU seconds (user + system), stderr) of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    run = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, run.stderr


def _cli_seconds(
    ref: Path, sec: Path, out: Path, threads: int, data_dir: Path
) -> tuple[float, float, float]:
    """(wall time of a `glacierflow track` process, its CPU time, the call's total it
    prints)."""
    env = {**os.environ, "GLACIERFLOW_DATA_DIR": str(data_dir), "GLACIERFLOW_THREADS": str(threads)}
    cli = Path(sys.executable).with_name("glacierflow")
    wall, cpu, stderr = _child(
        [str(cli), "track", str(ref), str(sec), "-o", str(out), "--chip-min", "120",
         "--chip-max", "480", "--max-speed", str(MAX_SPEED)],
        env,
    )  # fmt: skip
    return wall, cpu, float(re.search(r", ([\d.]+) s\n", stderr).group(1))


def start_up(repeat: int) -> None:
    """What a `glacierflow` process costs before any work: `--help`, and the imports a
    `track` command makes (the CLI, its settings, the pipeline), best of `repeat`."""
    cli = str(Path(sys.executable).with_name("glacierflow"))
    imports = "import glacierflow.cli, glacierflow.settings, glacierflow.processing.pipeline"
    # rasterio imports boto3 whenever it is installed; only the test extra (itslive) brings it
    no_boto3 = f"import sys; sys.modules['boto3'] = None; {imports}"
    for name, args in (
        ("glacierflow --help", [cli, "--help"]),
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("track's imports", [sys.executable, "-c", imports]),
        ("track's imports without boto3", [sys.executable, "-c", no_boto3]),
    ):
        runs = [_child(args)[:2] for _ in range(repeat)]
        wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        print(f"start-up, {name}: {wall:.2f} s wall, {cpu:.2f} s CPU (best of {repeat})")


def end_to_end(
    size: int,
    folder: Path,
    repeat: int,
    threads: list[int],
    autorift: Path | None,
    autorift_python: str,
) -> None:
    ref, sec = _pair_files(size, folder)
    data_dir = folder / "data"  # the CLI's: its FFTW wisdom is shared with the library runs
    wisdom = data_dir / "cache" / "fftw_wisdom.json"
    cold = track_pair(_request(ref, sec, folder / "cold.nc", 1, wisdom))
    print(
        f"{size}x{size}: {cold.nodes} vectors, valid {cold.valid_percentage:.1f} %, "
        f"first run (FFTW planning) {cold.seconds['total']:.2f} s"
    )
    arrays = None
    if autorift:  # autoRIFT reads numpy arrays: the same pixels as the GeoTIFFs
        import rasterio

        arrays = folder / f"ref{size}.npy", folder / f"sec{size}.npy"
        for tif, npy in zip((ref, sec), arrays, strict=True):
            with rasterio.open(tif) as ds:
                np.save(npy, ds.read(1))
    calls: dict[int, list] = {t: [] for t in threads}
    call_cpu: dict[int, list] = {t: [] for t in threads}
    clis: dict[int, list] = {t: [] for t in threads}
    ar: list[tuple[int, float, float]] = []
    for _ in range(repeat):  # interleaved: each round runs everything once
        for t in threads:
            cpu = time.process_time()
            calls[t].append(track_pair(_request(ref, sec, folder / f"t{t}.nc", t, wisdom)))
            call_cpu[t].append(time.process_time() - cpu)
            clis[t].append(_cli_seconds(ref, sec, folder / f"cli{t}.nc", t, data_dir))
        if arrays is not None:
            ar.append(_autorift_run(folder, autorift, autorift_python, *arrays))
    for t in threads:
        best = min(calls[t], key=lambda r: r.seconds["total"])
        s = best.seconds
        wall, cpu, call = min(clis[t])
        print(
            f"  library call, {t} thread(s): {best.nodes / s['total']:8.0f} vectors/s "
            f"({s['total']:.3f} s: read/check {s['read']:.3f}, track {s['track']:.3f}, "
            f"write {s['write']:.3f}; {min(call_cpu[t]):.3f} s CPU)"
        )
        print(
            f"  CLI, {t} thread(s): {wall:.2f} s wall, of which the call {call:.2f} s, "
            f"outside it {wall - call:.2f} s; {cpu:.2f} s CPU, {cpu - min(call_cpu[t]):.2f} s "
            "more than the library call's"
        )
    if ar:
        nodes, seconds, _ = min(ar, key=lambda r: r[1])
        ar_cpu = min(r[2] for r in ar)
        rate = nodes / seconds
        print(
            f"  autoRIFT (serial): {rate:8.0f} vectors/s ({nodes} vectors, {seconds:.3f} s; "
            f"{ar_cpu:.3f} s CPU)"
        )
        for t in threads:
            best = min(calls[t], key=lambda r: r.seconds["total"])
            ratio = best.nodes / best.seconds["total"] / rate
            per_cpu = (best.nodes / min(call_cpu[t])) / (nodes / ar_cpu)
            print(
                f"  glacierflow {t} thread(s) / autoRIFT: {ratio:.2f} x vectors/s, "
                f"{per_cpu:.2f} x vectors per CPU second"
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
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument(
        "--autorift", type=Path, help="folder with run_autorift.py: run autoRIFT side by side"
    )
    parser.add_argument("--autorift-python", default="/usr/bin/python3")
    parser.add_argument(
        "--measure-one", nargs=3, metavar=("REF", "SEC", "DIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.measure_one:
        _measure_one(*args.measure_one)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start_up(max(args.repeat, 3))
        core(args.repeat)
        for size in args.sizes:
            end_to_end(size, folder, args.repeat, args.threads, args.autorift, args.autorift_python)
        if args.memory:
            memory(args.memory, folder)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"(peak memory of this process: {peak:.2f} GB)")


if __name__ == "__main__":
    main()
