"""The preprocessing stage shared by every command."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..volume import Volume
from .brain import foreground_mask
from .normalize import robust_zscore
from .resample import isotropic_grid, reorient_canonical, resample_like, resample_to_grid

log = logging.getLogger(__name__)


@dataclass
class PreprocessOptions:
    """Settings of the preprocessing stage."""

    spacing_mm: float = 1.0
    bias_correction: bool = True
    skull_strip: bool = True
    save_dir: Path | None = None


@dataclass
class Preprocessed:
    """All contrasts on the working grid, plus the native FLAIR grid to map back to."""

    native: Volume
    images: dict[str, Volume]
    brain_mask: Volume
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def flair(self) -> Volume:
        return self.images["flair"]

    def to_native(self, vol: Volume, order: int = 1) -> Volume:
        """Resample a working-grid volume back onto the native FLAIR grid."""
        return resample_like(vol, self.native, order=order)


def preprocess(inputs: dict[str, Volume], options: PreprocessOptions | None = None) -> Preprocessed:
    """Bring ``inputs`` (keys 'flair', optional 't1', 't2') onto one normalised working grid."""
    options = options or PreprocessOptions()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    native = inputs["flair"]
    canon = reorient_canonical(native)
    shape, affine = isotropic_grid(canon, options.spacing_mm)
    flair = resample_to_grid(canon, shape, affine, order=1)
    timings["resample"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mask = foreground_mask(flair.data)
    timings["brain_mask"] = time.perf_counter() - t0
    images = {"flair": flair.with_data(robust_zscore(flair.data, mask))}
    for name, vol in inputs.items():
        if name == "flair":
            continue
        moved = resample_to_grid(vol, shape, affine, order=1)
        images[name] = moved.with_data(robust_zscore(moved.data, mask))
    return Preprocessed(native=native, images=images, brain_mask=flair.with_data(mask), timings=timings)
