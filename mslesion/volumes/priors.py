"""Spatial tissue priors: the MNI152 2009 grey- and white-matter maps that ship inside nilearn.

The maps are read from the installed nilearn package (no download), block-averaged to
2 mm and warped to the image by the affine MNI registration of :mod:`mslesion.preprocess.brain`
(or a transform the brain extraction already found). The CSF prior is what the two
maps leave inside the intracranial mask. Priors are blurred and mixed with a flat floor,
so atrophy and registration error are left to the intensities to settle.
"""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from typing import cast

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..volume import Volume

_MAPS = {"gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
         "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"}


@lru_cache(maxsize=1)
def mni_tissue_maps() -> tuple[np.ndarray, np.ndarray]:
    """(4-D array [gm, wm] in 0..1 at 2 mm, its 4x4 affine), read from nilearn's data folder."""
    import nibabel as nib

    spec = importlib.util.find_spec("nilearn")
    folder = list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations else None
    maps = []
    aff = np.eye(4)
    for name in ("gm", "wm"):
        path = None if folder is None else os.path.join(folder, "datasets", "data", _MAPS[name])
        if path is None or not os.path.exists(path):
            raise InputError(path, "tissue priors need the MNI152 maps shipped with nilearn (pip install nilearn)")
        img = cast("nib.Nifti1Image", nib.load(path))
        data = np.asarray(img.dataobj, dtype=np.float32) / 255.0
        n = [s // 2 * 2 for s in data.shape]
        small = data[: n[0], : n[1], : n[2]].reshape(n[0] // 2, 2, n[1] // 2, 2, n[2] // 2, 2).mean(axis=(1, 3, 5))
        maps.append(small)
        aff = img.affine.copy()
        aff[:3, :3] *= 2.0
        aff[:3, 3] = (img.affine @ np.array([0.5, 0.5, 0.5, 1.0]))[:3]
    return np.stack(maps, axis=0), aff


def warped_priors(grid: Volume, to_mni: np.ndarray, icv: np.ndarray, blur_mm: float = 2.0,
                  floor: float = 0.1, step: int = 2) -> np.ndarray:
    """(X x Y x Z x 3) priors for (csf, gm, wm) on ``grid``, given the world->MNI affine ``to_mni``.

    Computed on every ``step``-th voxel of the ICV's bounding box, then interpolated (fast).
    """
    maps, aff = mni_tissue_maps()
    prior = np.zeros(grid.shape + (3,), np.float32)
    if not icv.any():
        return prior
    idx = np.array(np.nonzero(icv))
    lo, hi = idx.min(1), idx.max(1) + 1
    coarse = tuple(int(np.ceil((b - a) / step)) + 1 for a, b in zip(lo, hi))
    box_aff = grid.affine @ np.array([[step, 0, 0, lo[0]], [0, step, 0, lo[1]], [0, 0, step, lo[2]], [0, 0, 0, 1.0]])
    vox = np.linalg.inv(aff) @ to_mni @ box_aff
    sigma = [blur_mm / (z * step) for z in grid.zooms]
    small = [ndimage.gaussian_filter(ndimage.affine_transform(m, vox[:3, :3], vox[:3, 3], output_shape=coarse, order=1),
                                     sigma) for m in maps]
    size = tuple(int(b - a) for a, b in zip(lo, hi))
    gm, wm = (_upsample(s, step, size) for s in small)
    total = gm + wm
    scale = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-6), 1.0)
    box = np.stack([1.0 - np.clip(total, 0.0, 1.0), gm * scale, wm * scale], axis=-1)
    box = (1.0 - floor) * box + floor / 3.0
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    prior[sl] = box
    prior[~icv] = 0.0
    return prior


def _upsample(small: np.ndarray, step: int, size: tuple[int, ...]) -> np.ndarray:
    """Trilinear upsampling by ``step`` (coarse voxel j sits on fine voxel j * step), cropped to ``size``."""
    full = tuple((n - 1) * step + 1 for n in small.shape)
    up = ndimage.zoom(small.astype(np.float32), [f / n for f, n in zip(full, small.shape)], order=1, grid_mode=False)
    return up[tuple(slice(0, n) for n in size)]


def _moments(mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World centroid and covariance of a binary mask."""
    ijk = np.array(np.nonzero(mask), dtype=np.float64)
    step = max(1, ijk.shape[1] // 200_000)
    xyz = affine[:3, :3] @ ijk[:, ::step] + affine[:3, 3:4]
    return xyz.mean(axis=1), np.cov(xyz)


def _sqrtm(c: np.ndarray, inverse: bool = False) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    w = np.maximum(w, 1e-9) ** (-0.5 if inverse else 0.5)
    return (v * w) @ v.T


def mask_to_mni(icv: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World -> MNI affine that maps the ICV mask's centroid and second moments onto the MNI brain mask's.

    The symmetric (least-rotation) solution: good for roughly upright heads on a RAS grid, which the
    working grid is; cheap (no intensity registration) and blind to the image contrast.
    """
    from ..preprocess.brain import mni_template

    _, tmask = mni_template()
    c_t, s_t = _moments(tmask.data > 0.5, tmask.affine)
    c_s, s_s = _moments(icv, affine)
    lin = _sqrtm(s_t) @ _sqrtm(s_s, inverse=True)
    out = np.eye(4)
    out[:3, :3] = lin
    out[:3, 3] = c_t - lin @ c_s
    return out
