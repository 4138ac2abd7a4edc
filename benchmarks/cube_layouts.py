"""Chunk layouts for point reads, measured: plain chunks against Zarr v3 shards of
one-pixel chunks, each written and read with zarr-python's own codec pipeline and with
zarrs' (Rust), in the same run.

    .venv/bin/python benchmarks/cube_layouts.py [--layers 20000] [--points 200]

For each layout and pipeline:
- write: seconds to write one int16 variable of LAYERS x 50 x 50 pixels (seasonal speeds
  with 30 m/yr noise, 30 % empty), and its size on disk;
- point: bytes read (/proc/self/io rchar) and CPU milliseconds (median) to read one
  pixel's whole history, at random pixels;
- ingest: seconds to write 10 layers x 200 x 200 pixels (a granule's worth of a tile:
  40,000 one-pixel chunks in the sharded layouts).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

PIPELINES = {
    "zarr-python": "zarr.core.codec_pipeline.BatchedCodecPipeline",
    "zarrs": "zarrs.ZarrsCodecPipeline",
}


@dataclass(frozen=True)
class Layout:
    name: str
    chunk_px: int
    shard_px: int | None
    codec: BloscCodec


ZLIB = BloscCodec(cname="zlib", clevel=2)
ZSTD = BloscCodec(cname="zstd", clevel=3)
LZ4 = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")
LAYOUTS = [
    Layout("ITS_LIVE: 10 x 10 chunks, zlib", 10, None, ZLIB),
    Layout("5 x 5 chunks, zstd", 5, None, ZSTD),
    Layout("5 x 5 chunks, lz4 + bitshuffle", 5, None, LZ4),
    Layout("1 px in 50 x 50 shards, zstd", 1, 50, ZSTD),
    Layout("1 px in 50 x 50 shards, lz4 + bitshuffle", 1, 50, LZ4),
]


def speeds(layers: int, side: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    season = 1 + 0.3 * np.sin(2 * np.pi * np.arange(layers) / 52)[:, None, None]
    v = 800 * season + rng.normal(0, 30, (layers, side, side))
    return np.where(rng.random(v.shape) < 0.3, -32767, v).astype(np.int16)


def create(path: Path, layout: Layout, shape: tuple[int, int, int]) -> zarr.Array:
    return zarr.create_array(
        path,
        shape=shape,
        dtype="int16",
        chunks=(shape[0], layout.chunk_px, layout.chunk_px),
        shards=(shape[0], layout.shard_px, layout.shard_px) if layout.shard_px else None,
        compressors=layout.codec,
        fill_value=-32767,
    )


def rchar() -> int:
    with open("/proc/self/io") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("rchar:"))


def measure(folder: Path, layout: Layout, data: np.ndarray, block: np.ndarray, points: int):
    path = folder / "cube.zarr"
    t0 = time.perf_counter()
    create(path, layout, data.shape)[:] = data
    write_s = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    array = zarr.open_array(path, mode="r")
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, data.shape[1], (points, 2))
    array[:, 0, 0]  # metadata and caches warm
    cpu, before = [], rchar()
    for row, col in pixels:
        t0 = time.process_time()
        array[:, row, col]
        cpu.append(time.process_time() - t0)
    read_bytes = (rchar() - before) / points
    shutil.rmtree(path)
    t0 = time.perf_counter()
    create(path, layout, block.shape)[:] = block
    ingest_s = time.perf_counter() - t0
    shutil.rmtree(path)
    return write_s, size, read_bytes, float(np.median(cpu)) * 1000, ingest_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=20_000)
    parser.add_argument("--points", type=int, default=200)
    args = parser.parse_args()
    data = speeds(args.layers, 50)
    block = speeds(10, 200, seed=2)
    print(f"{args.layers} layers x 50 x 50 int16; ingest block 10 x 200 x 200")
    print(f"{'layout':42s} {'pipeline':11s} write  on disk  read/point  CPU/point  ingest")
    with tempfile.TemporaryDirectory() as tmp:
        for layout in LAYOUTS:
            for pipeline, path in PIPELINES.items():
                with zarr.config.set({"codec_pipeline.path": path}):
                    write_s, size, read, cpu_ms, ingest_s = measure(
                        Path(tmp), layout, data, block, args.points
                    )
                print(
                    f"{layout.name:42s} {pipeline:11s} {write_s:5.1f} s {size / 1e6:5.0f} MB "
                    f"{read / 1e3:8.0f} kB {cpu_ms:7.2f} ms {ingest_s:6.2f} s"
                )


if __name__ == "__main__":
    main()
