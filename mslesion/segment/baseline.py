"""Classical baseline: FLAIR hyperintensity outliers inside the brain.

This is NOT a trained model.  It flags voxels whose FLAIR intensity is more
than ``k`` robust standard deviations (MAD) above the brain median.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..preprocess import Preprocessed
from ..volume import Volume

BASELINE_ID = "flair-threshold-baseline"


class ThresholdSegmenter:
    """FLAIR median + k * MAD threshold inside the (eroded) brain mask."""

    model_id = BASELINE_ID
    kind = "classical-baseline"
    threshold = 0.5
    min_peak = 0.0

    def __init__(self, k: float = 3.5, softness: float = 0.5) -> None:
        self.k = k
        self.softness = softness

    def predict(self, pre: Preprocessed) -> Volume:
        flair = pre.flair.data
        brain = ndimage.binary_erosion(pre.brain_mask.data.astype(bool), iterations=3)
        if brain.sum() < 100:
            brain = pre.brain_mask.data.astype(bool)
        vals = flair[brain]
        med = float(np.median(vals))
        mad = float(np.median(np.abs(vals - med))) * 1.4826 or 1.0
        z = (flair - med) / mad
        prob = 1.0 / (1.0 + np.exp(-(z - self.k) / self.softness))
        prob[~brain] = 0.0
        return pre.flair.with_data(prob.astype(np.float32))
