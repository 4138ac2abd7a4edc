"""Datacubes: granules restructured into Zarr cubes on ITS_LIVE's 100 km tile grid."""
