"""Annual and summary mosaics of a region's cube composites: NetCDF in ITS_LIVE's layout,
a Cloud-Optimized GeoTIFF per variable and a Web-Mercator COG of the speed."""

from glacierflow.processing.mosaics.build import (
    MosaicError,
    MosaicProducts,
    build_mosaic,
    build_mosaics,
)

__all__ = ["MosaicError", "MosaicProducts", "build_mosaic", "build_mosaics"]
