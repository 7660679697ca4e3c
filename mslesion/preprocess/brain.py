"""Brain extraction: the deepbet network (default, :mod:`.brain_net`) or a template fit of our own.

Template method (no trained weights): the MNI152 2009 T1 brain template and
its brain mask, which ship inside ``nilearn`` (no download), are registered
to the image with an affine, mutual-information registration (SimpleITK),
initialised from the top of the head.  The warped mask is then refined with
the image's own intensities: tissue brighter than CSF/bone, opened to cut
thin bridges to the dura and scalp, closed to an envelope, holes filled, and
kept within a few millimetres of the template prior.  Works on FLAIR and T1,
with or without skull. It is the fallback when deepbet fails on an image.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import cast

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from skimage.filters import threshold_otsu

from ..errors import InputError
from ..volume import Volume, VolumeMeta
from .sitk_bridge import registration_method, reproducible_threads, to_sitk, transform_to_ras_matrix

log = logging.getLogger(__name__)

#: plausible adult brain-mask volume (ml); outside it the image is refused as "not a brain".
BRAIN_ML_RANGE = (700.0, 2200.0)
#: a fitted brain must lie at least this much inside the imaged head.
MIN_IN_HEAD = 0.9


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


def _erode(mask: np.ndarray, r_vox: float) -> np.ndarray:
    return ndimage.distance_transform_edt(mask) > r_vox


def _dilate(mask: np.ndarray, r_vox: float) -> np.ndarray:
    return ndimage.distance_transform_edt(~mask) <= r_vox


_TEMPLATE_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


@lru_cache(maxsize=1)
def mni_template() -> tuple[Volume, Volume]:
    """(T1 brain template, brain mask) of MNI152 2009 at 2 mm.

    The 1 mm template ships inside the ``nilearn`` package (no download); it is read
    with nibabel without importing nilearn, block-averaged to 2 mm, and the mask is
    the template above 0.2 of its maximum (nilearn's own definition).
    """
    import importlib.util
    import os

    import nibabel as nib
    from nibabel.spatialimages import SpatialImage

    spec = importlib.util.find_spec("nilearn")
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", _TEMPLATE_FILE)
    if path is None or not os.path.exists(path):
        raise InputError(path, "brain extraction needs the MNI152 template shipped with nilearn (pip install nilearn)")
    # nib.load is typed as returning any image; the nilearn template is NIfTI (a SpatialImage)
    img = cast(SpatialImage, nib.load(path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    data /= max(float(data.max()), 1e-6)
    n = [s // 2 * 2 for s in data.shape]
    small = data[: n[0], : n[1], : n[2]].reshape(n[0] // 2, 2, n[1] // 2, 2, n[2] // 2, 2).mean(axis=(1, 3, 5))
    aff = img.affine.copy()
    aff[:3, :3] *= 2.0
    aff[:3, 3] = (img.affine @ np.array([0.5, 0.5, 0.5, 1.0]))[:3]
    return Volume(small, aff), Volume((small > 0.2).astype(np.float32), aff)


def _head_top(vol: Volume, head: np.ndarray) -> np.ndarray | None:
    """World point at the top of the head (centre of the highest large axial slice)."""
    # the working grid is RAS-canonical, so axis 2 runs inferior -> superior
    area = head.sum(axis=(0, 1))
    if area.max() == 0:
        return None
    big = np.nonzero(area > 0.1 * area.max())[0]
    ztop = int(big.max())
    span = max(1, int(round(80 / vol.zooms[2])))
    sl = head[:, :, max(0, ztop - span):max(1, ztop - span // 4)]
    if not sl.any():
        sl = head[:, :, :ztop + 1]
    ij = np.array(np.nonzero(sl)).mean(1)
    return (vol.affine @ np.array([ij[0], ij[1], ztop, 1.0]))[:3]


def register_template(vol: Volume, head: np.ndarray, shrink: int = 2) -> np.ndarray:
    """Affine (4x4 RAS) map from ``vol``'s world space to MNI space (mutual information)."""
    tmpl, tmask = mni_template()
    ring = _dilate(tmask.data > 0.5, 1.5)  # template brain + 3 mm (2 mm voxels)
    fixed = sitk.Shrink(sitk.SmoothingRecursiveGaussian(to_sitk(vol), 1.0), [shrink] * 3)
    moving = to_sitk(tmpl)
    moving_mask = to_sitk(tmask, ring.astype(np.uint8), pixel=sitk.sitkUInt8)
    ijk = np.array(np.nonzero(tmask.data > 0.5))
    mni_top = tmask.affine @ np.array([*ijk[:2].mean(1), ijk[2].max(), 1.0])
    top = _head_top(vol, head)
    if top is None:
        raise InputError(vol.path, "no head or brain found in the image (empty foreground)")
    subj_brain_top = top - np.array([0.0, 0.0, 8.0])
    flip = np.array([-1.0, -1.0, 1.0])
    tx = sitk.Similarity3DTransform()
    tx.SetCenter(tuple(float(x) for x in (subj_brain_top - [0, 0, 60.0]) * flip))
    tx.SetTranslation(tuple(float(x) for x in (mni_top[:3] - subj_brain_top) * flip))
    reg = registration_method()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.1, seed=1)
    reg.SetMetricMovingMask(moving_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetShrinkFactorsPerLevel([4, 2])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetOptimizerAsRegularStepGradientDescent(2.0, 0.01, 150, relaxationFactor=0.6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(tx, inPlace=True)
    with reproducible_threads():
        reg.Execute(fixed, moving)
    aff = sitk.AffineTransform(3)
    aff.SetCenter(tx.GetCenter())
    aff.SetMatrix(tx.GetMatrix())
    aff.SetTranslation(tx.GetTranslation())
    reg.SetInitialTransform(aff, inPlace=True)
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    reg.SetOptimizerAsRegularStepGradientDescent(1.0, 0.01, 100, relaxationFactor=0.6)
    reg.SetOptimizerScalesFromPhysicalShift()
    with reproducible_threads():
        reg.Execute(fixed, moving)
    log.info("template registration metric %.4f", reg.GetMetricValue())
    return transform_to_ras_matrix(aff)


def template_prior(vol: Volume, to_mni: np.ndarray) -> np.ndarray:
    """MNI brain mask warped onto ``vol``'s grid (values 0..1)."""
    _, tmask = mni_template()
    vox = np.linalg.inv(tmask.affine) @ to_mni @ vol.affine
    return ndimage.affine_transform(tmask.data, vox[:3, :3], vox[:3, 3], output_shape=vol.shape, order=1)


def refine_mask(data: np.ndarray, prior: np.ndarray, zooms: tuple[float, float, float],
                margin_mm: float = 6.0, work_mm: float = 2.0) -> np.ndarray:
    """Brain envelope from intensities, kept within ``margin_mm`` of the template prior.

    The morphology runs on a box around the prior, block-averaged to about
    ``work_mm`` voxels (fast); the result is interpolated back.
    """
    out = np.zeros(data.shape, dtype=bool)
    inside = prior > 0.5
    if inside.sum() < 100:
        return inside
    vox = float(np.mean(zooms))
    f = max(1, int(round(work_mm / vox)))
    pad = int(np.ceil((margin_mm + 4) / vox))
    idx = np.array(np.nonzero(inside))
    lo = np.maximum(idx.min(1) - pad, 0)
    hi = np.minimum(idx.max(1) + pad + 1, data.shape)
    hi = lo + (hi - lo) // f * f
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    d, p = data[box], prior[box]
    if f > 1:
        shp = [n // f for n in d.shape]
        d = d.reshape(shp[0], f, shp[1], f, shp[2], f).mean(axis=(1, 3, 5))
        p = p.reshape(shp[0], f, shp[1], f, shp[2], f).mean(axis=(1, 3, 5))
    small = _refine_box(d, p > 0.5, vox * f, margin_mm)
    if f > 1:
        up = ndimage.zoom(small.astype(np.float32), f, order=1, mode="nearest", grid_mode=True)
        small = up[: hi[0] - lo[0], : hi[1] - lo[1], : hi[2] - lo[2]] > 0.5
    out[box] = small
    return out


def _refine_box(data: np.ndarray, inside: np.ndarray, vox: float, margin_mm: float) -> np.ndarray:
    core = _erode(inside, margin_mm / vox)
    if core.sum() < 100:
        core = inside
    allowed = _dilate(inside, margin_mm / vox)
    ref = float(np.median(data[core]))
    tissue = ((data > 0.45 * ref) & allowed) | core
    opened = _erode(tissue, 2.0 / vox)
    lab, n = ndimage.label(opened)
    if n > 1:
        keep = np.unique(lab[core & opened])
        opened = np.isin(lab, keep[keep > 0])
    mask = _dilate(opened, 2.0 / vox) & tissue
    mask = _erode(_dilate(mask, 5.0 / vox), 5.0 / vox) & allowed
    # ventricles and midline CSF are brain too: keep the prior's interior
    mask |= _erode(inside, 3.0 / vox)
    mask = ndimage.binary_fill_holes(mask)
    for axis in range(3):
        for k in range(mask.shape[axis]):
            idx = (slice(None),) * axis + (k,)
            mask[idx] = ndimage.binary_fill_holes(mask[idx])
    return largest_component(mask)


def stripped_foreground(data: np.ndarray, voxel_ml: float) -> np.ndarray | None:
    """The brain, if the image is already skull-stripped (exact-zero background, brain-sized rest)."""
    nonzero = data != 0
    if nonzero.mean() > 0.7:
        return None
    fg = ndimage.binary_fill_holes(largest_component(ndimage.binary_opening(nonzero, iterations=1)))
    ml = float(fg.sum()) * voxel_ml
    lo, hi = BRAIN_ML_RANGE
    # a raw head (scalp, skull, often neck) is well above the brain range
    return fg if lo <= ml <= min(hi, 1900.0) else None


#: brain-extraction methods: a pretrained network (default) or the MNI template fit of our own.
BRAIN_METHODS = ("deepbet", "template")


def extract_brain(vol: Volume, contrast: str = "flair", method: str = "deepbet", device: str = "auto") -> Volume:
    """Binary brain mask of ``vol`` (same grid). Works on FLAIR and T1, with or without skull.

    ``vol`` should be RAS-canonical with ~1 mm voxels (the working grid is); ``contrast`` is
    kept for logging. An image that is already skull-stripped keeps its own foreground as
    the mask. ``method`` 'deepbet' runs the pretrained network (:mod:`.brain_net`) and falls
    back to the template fit when the network fails or finds no plausible brain in a
    brain-sized head; 'template' runs only the template fit (:func:`template_brain`).
    """
    if method not in BRAIN_METHODS:
        raise InputError(vol.path, f"unknown brain-extraction method {method!r}; choose one of {BRAIN_METHODS}")
    data = np.asarray(vol.data, dtype=np.float32)
    stripped = stripped_foreground(data, vol.voxel_volume_ml)
    if stripped is not None:
        log.info("brain mask (%s) %s: already skull-stripped, %.0f ml", contrast, vol.path,
                 stripped.sum() * vol.voxel_volume_ml)
        return vol.with_data(stripped.astype(np.uint8), brain_method="stripped-input")
    head = foreground_mask(data)
    if method == "deepbet":
        from .brain_net import BrainNetError, deepbet_mask

        try:
            mask = deepbet_mask(data, device)
        except BrainNetError as exc:
            log.warning("%s: %s; using the template method", vol.path, exc)
        else:
            found = _described(vol, mask, head, "deepbet", contrast)
            head_ml = float(np.count_nonzero(head)) * vol.voxel_volume_ml
            if head_ml < BRAIN_ML_RANGE[0] or _plausible(found):
                return found
            log.warning("%s: deepbet found an implausible brain (%.0f ml, %.0f%% inside the head); "
                        "using the template method", vol.path, mask.sum() * vol.voxel_volume_ml,
                        100 * found.meta["in_head_fraction"])
    return template_brain(vol, data, head, contrast)


def template_brain(vol: Volume, data: np.ndarray, head: np.ndarray, contrast: str = "flair") -> Volume:
    """Brain mask from the affine MNI template fit plus intensity refinement (module docstring)."""
    to_mni = register_template(vol, head)
    prior = template_prior(vol, to_mni)
    mask = refine_mask(data, prior, vol.zooms)
    return _described(vol, mask, head, "template+refine", contrast, to_mni=to_mni)


def _described(vol: Volume, mask: np.ndarray, head: np.ndarray, method: str, contrast: str,
               to_mni: np.ndarray | None = None) -> Volume:
    in_head = head_fraction(mask, head)
    log.info("brain mask (%s, %s) %s: %.0f ml, %.1f%% inside the head", contrast, method, vol.path,
             mask.sum() * vol.voxel_volume_ml, 100 * in_head)
    meta = VolumeMeta(brain_method=method, in_head_fraction=in_head)
    if to_mni is not None:
        meta["to_mni"] = to_mni
    return vol.with_data(mask.astype(np.uint8), **meta)


def _plausible(mask: Volume) -> bool:
    return brain_ml_plausible(mask) and float(mask.meta["in_head_fraction"]) >= MIN_IN_HEAD


def head_fraction(mask: np.ndarray, head: np.ndarray) -> float:
    """Fraction of ``mask`` inside the head foreground (each axial slice's holes filled).

    A real brain lies inside the imaged head; a template forced onto a neck or
    spine volume spills out of it.
    """
    if not mask.any():
        return 0.0
    filled = np.zeros_like(head, dtype=bool)
    for k in range(head.shape[2]):
        filled[:, :, k] = ndimage.binary_fill_holes(head[:, :, k])
    return float(np.count_nonzero(mask & filled) / np.count_nonzero(mask))


def brain_ml_plausible(mask: Volume) -> bool:
    """Whether the mask's volume lies in :data:`BRAIN_ML_RANGE`."""
    ml = float(np.count_nonzero(mask.data)) * mask.voxel_volume_ml
    return BRAIN_ML_RANGE[0] <= ml <= BRAIN_ML_RANGE[1]


def check_brain_plausible(mask: Volume, path: str | Path | None = None) -> float:
    """Raise :class:`InputError` unless the mask's volume is that of an adult brain; return ml."""
    ml = float(np.count_nonzero(mask.data)) * mask.voxel_volume_ml
    lo, hi = BRAIN_ML_RANGE
    inside = float(mask.meta.get("in_head_fraction", 1.0))
    if inside < MIN_IN_HEAD:
        raise InputError(
            path if path is not None else mask.path,
            f"the FLAIR does not look like a brain: no brain found ({100 * (1 - inside):.0f}% of the brain mask "
            "found lies outside the imaged body; is it a spine or a non-head image?)",
        )
    if not lo <= ml <= hi:
        raise InputError(
            path if path is not None else mask.path,
            f"the FLAIR does not look like a brain: brain mask {ml:.0f} ml, expected {lo:.0f}-{hi:.0f} ml "
            "(is it a spine, a cropped or a non-head image?)",
        )
    return ml
