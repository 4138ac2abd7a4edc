"""Tracking presets by kind of sensor: what changes between optical and radar scenes.

Radar amplitude is speckled: every resolution cell is the sum of many scatterers, so its
brightness is multiplicative noise around the surface's backscatter. In dB that noise is
additive and of one spread everywhere, and larger chips average more independent speckle
cells; ITS_LIVE tracks Sentinel-1 with chips about twice the optical ones for that
reason. The preset of a pair follows from its scenes' platform and instrument.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Preset(StrEnum):
    """The kind of scenes a pair is made of."""

    OPTICAL = "optical"
    RADAR = "radar"


@dataclass(frozen=True)
class PresetValues:
    """What a preset sets, in the user's units."""

    chip_min_m: float
    chip_max_m: float
    amplitude_db: bool  # read the images as radar backscatter in dB


PRESETS = {
    Preset.OPTICAL: PresetValues(chip_min_m=240.0, chip_max_m=960.0, amplitude_db=False),
    Preset.RADAR: PresetValues(chip_min_m=480.0, chip_max_m=1920.0, amplitude_db=True),
}

_RADAR_INSTRUMENTS = {"c-sar", "sar", "c-band sar", "sar-c"}


def preset_for(platform: str, instrument: str) -> Preset:
    """Radar for Sentinel-1 (STAC platform "sentinel-1a", instrument "c-sar") and any SAR
    instrument; optical otherwise."""
    if instrument.lower() in _RADAR_INSTRUMENTS or platform.lower().startswith("sentinel-1"):
        return Preset.RADAR
    return Preset.OPTICAL
