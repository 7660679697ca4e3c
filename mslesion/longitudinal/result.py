"""What a comparison produced (:func:`mslesion.longitudinal.compare_scans`); also read by its writers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..lesions import Lesion
from ..location import LocationResult
from ..volume import Volume
from .change import ChangeMaps
from .report import CompareReport


@dataclass
class CompareResult:
    """What a comparison produced (also written to ``out_dir``)."""

    changes: ChangeMaps
    kinds_baseline: Volume
    kinds_followup: Volume
    lesions: list[Lesion]
    location: LocationResult
    transform: np.ndarray
    report: CompareReport
    out_dir: Path | None = None
    #: change component ids (the ``id`` column of changes.csv) on the baseline native grid
    labels_baseline: Volume | None = None

    @property
    def new_enlarging_baseline(self) -> Volume:
        return self.kinds_baseline.with_data(np.isin(self.kinds_baseline.data, (1, 2)).astype(np.uint8))

    @property
    def new_enlarging_followup(self) -> Volume:
        return self.kinds_followup.with_data(np.isin(self.kinds_followup.data, (1, 2)).astype(np.uint8))
