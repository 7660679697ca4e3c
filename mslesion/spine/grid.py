"""The spine working grid: RAS-canonical axes, fine in-plane voxels, native slice spacing.

Axial (x, y) slices of the working grid are processed one by one; the third
axis runs inferior -> superior.  Sagittal, coronal and axial acquisitions all
land on such a grid; anisotropic voxels keep their slice spacing along z.
"""
from __future__ import annotations

import numpy as np

from ..preprocess.resample import grid_covering, reorient_canonical, resample_to_grid
from ..volume import Volume

#: in-plane voxel size (mm) of the working grid (finer native voxels are kept).
INPLANE_MM = 0.5


def working_grid(native: Volume, inplane_mm: float = INPLANE_MM) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the working grid covering ``native``'s field of view."""
    canon = reorient_canonical(native)
    zooms = canon.zooms
    spacing = (min(inplane_mm, zooms[0]), min(inplane_mm, zooms[1]), zooms[2])
    return grid_covering(canon, spacing, min_size=2, tolerance=1e-6)


def to_working(native: Volume, order: int = 1) -> Volume:
    """Resample an image onto its working grid."""
    shape, affine = working_grid(native)
    return resample_to_grid(native, shape, affine, order=order)


def to_native(work: Volume, native: Volume, threshold: float | None = 0.5) -> Volume:
    """Bring a (soft) mask from the working grid back onto the native grid.

    With ``threshold`` the result is binary (uint8); without it, linear values.
    """
    out = resample_to_grid(work.with_data(work.data.astype(np.float32)), native.shape, native.affine, order=1)
    if threshold is None:
        return out
    return out.with_data((out.data >= threshold).astype(np.uint8))


def slice_spacing(vol: Volume) -> float:
    return float(vol.zooms[2])
