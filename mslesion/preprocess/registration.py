"""Rigid, mutual-information co-registration (SimpleITK) and resampling by world coordinates.

Convention: a transform is a 4x4 matrix in RAS world millimetres that maps a
point of the *fixed* image's space to the corresponding point of the
*moving* image's space (the direction resampling needs).
"""
from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..volume import LabelVolume, Volume
from .sitk_bridge import FLIP, registration_method, reproducible_threads, to_sitk, transform_to_ras_matrix

log = logging.getLogger(__name__)


def _prepared(vol: Volume) -> sitk.Image:
    """Float SimpleITK image, clipped at its 99.5th percentile (bright outliers would crowd the histogram)."""
    data = np.asarray(vol.data, dtype=np.float32)
    pos = data[data > 0]
    hi = float(np.percentile(pos, 99.5)) if pos.size > 100 else float(data.max())
    return to_sitk(vol, np.clip(data, 0, hi))


def register_rigid(fixed: Volume, moving: Volume, fixed_mask: np.ndarray | None = None,
                   init: np.ndarray | None = None, coarse_mm: float = 2.0, fine: bool = True,
                   sampling: float = 0.15, seed: int = 7) -> np.ndarray:
    """Rigid (6 dof) registration maximising Mattes mutual information.

    Returns the 4x4 RAS matrix mapping a fixed-space point to the moving-space
    point.  The images are assumed to be roughly aligned in world space (same
    session) unless ``init`` says otherwise; the search starts there.  A coarse
    pass runs on copies smoothed and shrunk to about ``coarse_mm`` (levels 2x and
    1x of that); ``fine`` adds a short pass at full resolution.
    """
    f_img = _prepared(fixed)
    m_img = _prepared(moving)
    f_mask = None
    if fixed_mask is not None and np.any(fixed_mask):
        f_mask = to_sitk(fixed, np.asarray(fixed_mask).astype(np.uint8), pixel=sitk.sitkUInt8)
        centre_vox = np.array(np.nonzero(fixed_mask)).mean(1)
    else:
        centre_vox = (np.asarray(fixed.shape) - 1) / 2.0
    tx = sitk.Euler3DTransform()
    centre = (fixed.affine @ np.append(centre_vox, 1.0))[:3]
    tx.SetCenter(tuple(float(x) for x in centre * FLIP.diagonal()[:3]))
    if init is not None:
        lps = FLIP @ np.asarray(init, dtype=np.float64) @ FLIP
        tx.SetMatrix(tuple(float(x) for x in lps[:3, :3].ravel()))
        c = np.asarray(tx.GetCenter())
        tx.SetTranslation(tuple(float(x) for x in lps[:3, :3] @ c + lps[:3, 3] - c))

    def shrunk(img: sitk.Image, mask: bool = False) -> sitk.Image:
        factors = [max(1, int(round(coarse_mm / sp))) for sp in img.GetSpacing()]
        if mask:
            return sitk.Shrink(img, factors)
        return sitk.Shrink(sitk.SmoothingRecursiveGaussian(img, coarse_mm / 2.0), factors)

    def run(f: sitk.Image, m: sitk.Image, mask: sitk.Image | None, shrink: list[int], sigmas: list[float],
            pct: float, lr: float, iters: int) -> sitk.ImageRegistrationMethod:
        reg = registration_method()
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(pct, seed=seed)
        if mask is not None:
            reg.SetMetricFixedMask(mask)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=lr, minStep=0.002, numberOfIterations=iters,
                                                     relaxationFactor=0.5, gradientMagnitudeTolerance=1e-6)
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetShrinkFactorsPerLevel(shrink)
        reg.SetSmoothingSigmasPerLevel(sigmas)
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        reg.SetInitialTransform(tx, inPlace=True)
        with reproducible_threads():
            reg.Execute(f, m)
        return reg

    reg = run(shrunk(f_img), shrunk(m_img), shrunk(f_mask, True) if f_mask is not None else None,
              [2, 1], [coarse_mm, 0.0], sampling, 2.0, 200)
    if fine:
        reg = run(f_img, m_img, f_mask, [1], [0.0], min(sampling, 0.03), 0.5, 40)
    log.info("rigid registration %s -> %s: MI %.4f (%s)", moving.path, fixed.path,
             reg.GetMetricValue(), reg.GetOptimizerStopConditionDescription())
    return transform_to_ras_matrix(tx)


#: a contrast whose head centre lies farther than this (mm) from the FLAIR's in world space is not taken as
#: roughly aligned: its registration starts from the head centres instead of the scanner's world coordinates
#: (a different field of view, e.g. with the neck, moves the centre by up to a few cm)
WORLD_OFFSET_NOTE_MM = 50.0


def head_centre(vol: Volume) -> np.ndarray | None:
    """World (RAS mm) centroid of the bright voxels (above half the Otsu level of a voxel sample): the head's
    centre, to within millimetres, at a fraction of :func:`~mslesion.preprocess.brain.foreground_mask`'s cost.
    None for an image without contrast."""
    from skimage.filters import threshold_otsu

    data = np.asarray(vol.data, dtype=np.float32)
    sample = data.ravel()[:: max(1, data.size // 500_000)]
    sample = sample[np.isfinite(sample)]
    if sample.size < 100 or float(sample.min()) == float(sample.max()):
        return None
    ijk = np.array(np.nonzero(data > 0.5 * threshold_otsu(sample)), dtype=np.float64)
    if ijk.shape[1] == 0:
        return None
    return vol.affine[:3, :3] @ ijk.mean(axis=1) + vol.affine[:3, 3]


def centre_start(fixed_centre: np.ndarray | None, moving_centre: np.ndarray | None
                 ) -> tuple[np.ndarray | None, list[float] | None]:
    """The registration start of :func:`register_rigid` (``init``) for two head centres, and their offset (mm):
    None (the world coordinates) unless the offset exceeds :data:`WORLD_OFFSET_NOTE_MM`, else the translation
    that puts the centres together. Without both centres: (None, None)."""
    if fixed_centre is None or moving_centre is None:
        return None, None
    offset = np.asarray(moving_centre, float) - np.asarray(fixed_centre, float)
    rounded = [round(float(v), 1) for v in offset]
    if float(np.linalg.norm(offset)) <= WORLD_OFFSET_NOTE_MM:
        return None, rounded
    init = np.eye(4)
    init[:3, 3] = offset
    return init, rounded


def resample_moving(moving: Volume, fixed: Volume, transform: np.ndarray, order: int = 1) -> Volume:
    """``moving`` resampled onto ``fixed``'s grid through ``transform`` (fixed -> moving, RAS mm).

    A :class:`~mslesion.volume.LabelVolume` is resampled by nearest neighbour and keeps its dtype and type.
    """
    labels = isinstance(moving, LabelVolume)
    vox = np.linalg.inv(moving.affine) @ np.asarray(transform, dtype=np.float64) @ fixed.affine
    src = np.asarray(moving.data, dtype=np.float32)
    out = ndimage.affine_transform(src, vox[:3, :3], vox[:3, 3], output_shape=fixed.shape, order=0 if labels else order,
                                   mode="constant", cval=0.0)
    make = LabelVolume if labels else Volume
    out = out.astype(moving.data.dtype if labels else np.float32)
    return make(out, fixed.affine, moving.path, {**moving.meta, "registered_to": str(fixed.path)})


def rigid_matrix(angles_deg: tuple[float, float, float], translation_mm: tuple[float, float, float],
                 centre: np.ndarray | None = None) -> np.ndarray:
    """4x4 rotation (x, then y, then z axis, degrees) about ``centre`` plus translation."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    r = rz @ ry @ rx
    c = np.zeros(3) if centre is None else np.asarray(centre, dtype=np.float64)
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = c - r @ c + np.asarray(translation_mm, dtype=np.float64)
    return m


def surface_error_mm(estimated: np.ndarray, truth: np.ndarray, points: np.ndarray) -> float:
    """Mean distance (mm) between where two transforms send ``points`` (N x 3 world mm)."""
    p = np.c_[points, np.ones(len(points))]
    return float(np.linalg.norm((p @ estimated.T - p @ truth.T)[:, :3], axis=1).mean())
