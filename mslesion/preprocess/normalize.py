"""Intensity normalisation that removes scanner scale."""
from __future__ import annotations

import numpy as np


def robust_zscore(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Centre on the brain median and scale by the inter-percentile spread (1-99)."""
    vals = data[mask]
    if vals.size < 10:
        vals = data[data > 0] if np.any(data > 0) else data.ravel()
    lo, med, hi = np.percentile(vals, [1, 50, 99])
    scale = (hi - lo) / 4.0 if hi > lo else (float(vals.std()) or 1.0)
    out = (data - med) / scale
    return np.clip(out, -8, 8).astype(np.float32)
