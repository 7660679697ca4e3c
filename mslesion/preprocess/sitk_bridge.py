"""Conversion between :class:`Volume` (RAS affine) and SimpleITK images (LPS geometry).

SimpleITK stores arrays as ``[k, j, i]`` and its physical space is LPS, so
``direction``/``origin`` are the RAS affine with the first two rows negated.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import SimpleITK as sitk

from ..volume import Volume

#: RAS <-> LPS flip (its own inverse).
FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])

#: threads of every registration: ITK sums the metric over threads in a run-dependent order, so a
#: multi-threaded fit differs from run to run (up to ~0.5 mm measured); one thread is reproducible.
REGISTRATION_THREADS = 1


def registration_method() -> sitk.ImageRegistrationMethod:
    """A SimpleITK registration method; run it inside :func:`reproducible_threads`."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetNumberOfThreads(REGISTRATION_THREADS)
    return reg


@contextmanager
def reproducible_threads() -> Iterator[None]:
    """Run the enclosed registration with :data:`REGISTRATION_THREADS` threads, then restore the default.

    The metric's own threader follows the global default, not the method's setting, so the
    global default is what makes a fit reproducible.
    """
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(REGISTRATION_THREADS)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def to_sitk(vol: Volume, data: np.ndarray | None = None, pixel: int = sitk.sitkFloat32) -> sitk.Image:
    """A SimpleITK image with ``vol``'s geometry (and ``data`` if given)."""
    arr = vol.data if data is None else data
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(arr).transpose(2, 1, 0)))
    if pixel is not None:
        img = sitk.Cast(img, pixel)
    zooms = np.asarray(vol.zooms)
    lps = FLIP @ vol.affine
    img.SetSpacing(tuple(float(z) for z in zooms))
    img.SetOrigin(tuple(float(o) for o in lps[:3, 3]))
    img.SetDirection(tuple(float(x) for x in (lps[:3, :3] / zooms).ravel()))
    return img


def from_sitk(img: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Array in nibabel order and its RAS affine."""
    data = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = direction * np.asarray(img.GetSpacing())
    aff[:3, 3] = img.GetOrigin()
    return np.ascontiguousarray(data), FLIP @ aff


def transform_to_ras_matrix(tx: sitk.Transform) -> np.ndarray:
    """4x4 RAS matrix of a SimpleITK affine-type transform (which maps LPS points)."""
    m = np.eye(4)
    # SimpleITK's stubs type registration results as the base Transform, which lacks the affine-family getters
    matrix = np.asarray(tx.GetMatrix(), dtype=np.float64).reshape(3, 3)  # type: ignore[attr-defined]
    center = np.asarray(tx.GetCenter(), dtype=np.float64)  # type: ignore[attr-defined]
    trans = np.asarray(tx.GetTranslation(), dtype=np.float64)  # type: ignore[attr-defined]
    m[:3, :3] = matrix
    m[:3, 3] = trans + center - matrix @ center
    return FLIP @ m @ FLIP


def ras_matrix_to_transform(mat: np.ndarray) -> sitk.AffineTransform:
    """SimpleITK affine transform (LPS) equal to a 4x4 RAS matrix."""
    lps = FLIP @ np.asarray(mat, dtype=np.float64) @ FLIP
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(tuple(float(x) for x in lps[:3, :3].ravel()))
    tx.SetTranslation(tuple(float(x) for x in lps[:3, 3]))
    return tx
