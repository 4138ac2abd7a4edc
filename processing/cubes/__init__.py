"""Datacubes: granules restructured into Zarr cubes on ITS_LIVE's 100 km tile grid."""

import zarr

# zarrs (Rust) writes and reads the history's sharded one-pixel chunks; zarr-python's own
# pipeline spends about 1 ms on each of a tile's 700,000 inner chunks (BENCHMARKS.md)
zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})
