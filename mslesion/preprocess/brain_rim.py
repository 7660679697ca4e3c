"""Trim scalp that a brain mask took in: a bright rim continuous with the tissue outside the mask.

On raw clinical FLAIR with skull (thick slices, strong bias at the vertex), brain
extraction sometimes reaches past the dark CSF / bone ring into the bright scalp
fat and diploe.  The lesion model then calls that fat "lesion" (isbi_training01:
84 false components at the vertex, ``notes/issue-15.md``, session 26).  Such
tissue is bright on FLAIR *and* continuous with bright tissue outside the mask;
a juxtacortical lesion is bright, but cortex, CSF and bone separate it from the
scalp.  So: inside the mask's outer shell, remove the bright voxels that connect,
through bright voxels, to bright tissue outside the mask.

Pure array function; the pipeline applies it to masks found on images with skull
(never to an input that is already skull-stripped, whose outside is empty).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

#: FLAIR robust z (``normalize.robust_zscore`` in the untrimmed mask) above which tissue counts as bright.
#: Chosen on the ISBI scans: at 0.8 no rater lesion lies within 3 voxels of what is trimmed; at 0.6 some do.
RIM_Z = 0.8
#: how deep into the mask (mm from its surface) the rim may be trimmed.
RIM_DEPTH_MM = 10.0
#: the bright tissue outside the mask a rim must connect to (mm^3): scalp, not a stray voxel.
MIN_OUTSIDE_MM3 = 50.0


def bright_rim(flair_z: np.ndarray, mask: np.ndarray, zooms: tuple[float, float, float],
               z_min: float = RIM_Z, depth_mm: float = RIM_DEPTH_MM,
               min_outside_mm3: float = MIN_OUTSIDE_MM3) -> np.ndarray:
    """Voxels of ``mask`` within ``depth_mm`` of its surface, brighter than ``z_min``, and connected
    through such voxels to at least ``min_outside_mm3`` of bright tissue outside the mask."""
    inside = np.asarray(mask, dtype=bool)
    if not inside.any() or inside.all():
        return np.zeros(inside.shape, bool)
    depth = ndimage.distance_transform_edt(inside, sampling=zooms)
    shell = inside & (depth <= depth_mm)
    bright = flair_z > z_min
    outside_bright = bright & ~inside
    labels, n = ndimage.label(bright & (shell | ~inside))
    if n == 0:
        return np.zeros(inside.shape, bool)
    voxel_mm3 = float(np.prod(zooms))
    outside_count = np.bincount(labels[outside_bright], minlength=n + 1)
    leaking = np.nonzero(outside_count * voxel_mm3 >= min_outside_mm3)[0]
    leaking = leaking[leaking > 0]
    return np.isin(labels, leaking) & shell


def trim_bright_rim(flair_z: np.ndarray, mask: np.ndarray, zooms: tuple[float, float, float]) -> np.ndarray:
    """``mask`` without its :func:`bright_rim`, holes filled, largest component kept."""
    trimmed = np.asarray(mask, dtype=bool) & ~bright_rim(flair_z, mask, zooms)
    labels, n = ndimage.label(trimmed)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        trimmed = labels == int(np.argmax(sizes))
    return ndimage.binary_fill_holes(trimmed)
