"""Assign each lesion a region. (Placeholder until the atlas-based method lands.)"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..lesions import Lesion
from ..preprocess import Preprocessed

REGIONS = ("periventricular", "juxtacortical", "infratentorial", "deep_white_matter", "spinal_cord")


@dataclass
class LocationOptions:
    periventricular_mm: float = 3.0
    min_long_axis_mm: float = 3.0


@dataclass
class LocationResult:
    regions: dict[str, dict] = field(default_factory=dict)
    mcdonald_dis: dict | None = None


def locate(labels: np.ndarray, lesions: list[Lesion], pre: Preprocessed | None, options: LocationOptions) -> LocationResult:
    """Fill ``lesion.region`` for every lesion; return per-region counts."""
    for les in lesions:
        les.region = "unclassified"
    return LocationResult(regions={"unclassified": {"count": len(lesions), "volume_ml": sum(l.volume_ml for l in lesions)}})
