"""Limits every image reader checks before reading voxels.

NIfTI in :mod:`mslesion.io`, DICOM in :mod:`mslesion.dicom`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError

#: refuse a declared axis longer than this (voxels) before reading any data.
MAX_AXIS = 4096
#: refuse a declared volume with more voxels than this before reading any data.
MAX_VOXELS = 1024**3


def check_affine(path: Path | None, affine: np.ndarray, role: str) -> None:
    """Refuse a singular (or non-finite) voxel-to-world affine."""
    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    det = float(np.linalg.det(m))
    if not np.isfinite(det) or abs(det) < 1e-6:
        raise InputError(path, f"{role} has a singular voxel-to-world affine (determinant {det:.3g})")
