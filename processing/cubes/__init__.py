"""Datacubes: granules restructured into Zarr cubes on ITS_LIVE's 100 km tile grid."""

import zarr

# zarrs (Rust) writes and reads the cubes' sharded one-pixel chunks: 40,000 of them in
# 0.02 s, where zarr-python's own pipeline takes 9.8 s (BENCHMARKS.md)
zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})
