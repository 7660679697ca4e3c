"""Brain extraction (placeholder method: Otsu foreground + morphology)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def foreground_mask(data: np.ndarray) -> np.ndarray:
    """Head/brain foreground: Otsu threshold, largest component, holes filled."""
    positive = data[data > 0]
    thr = threshold_otsu(positive if positive.size > 100 else data)
    mask = data > thr * 0.5
    mask = ndimage.binary_opening(mask, iterations=1)
    mask = largest_component(mask)
    return ndimage.binary_fill_holes(mask)
