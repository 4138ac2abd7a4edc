"""Scenes and the pairs made of them: the pipeline's inputs, whatever their source.

A `Scene` is one single-band image (local path, http(s) URL or s3:// URL) with what pairing
and tracking need to know; a `Pair` is two scenes of one footprint to be tracked. The
synthetic demo region, STAC imports and the catalog all speak these two types, so the
pipeline never cares where a scene came from.
"""

from glacierflow.processing.scenes.model import Pair, Scene

__all__ = ["Pair", "Scene"]
