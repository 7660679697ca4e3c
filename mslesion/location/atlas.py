"""The MNI region atlas shipped with mslesion, and its registration to a subject.

The atlas (``mslesion/data/mni_regions_1mm.nii.gz``) and the template T1
(``mni_t1_2mm.nii.gz``) are built by ``scripts/make_atlas.py`` from the ICBM
2009a template inside nilearn; see ``mslesion/data/ATLAS_LICENSE.txt``.

Registration uses SimpleITK: the subject's working-grid image is the fixed
image, the template the moving one, so the fitted transform maps a subject
point (world mm) to the corresponding MNI point: similarity then affine, Mattes
mutual information (so FLAIR or T1 both work), keeping the best-scoring stage.
SimpleITK works in LPS; this module converts to and from RAS at its edges.
"""
from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nibabel.spatialimages import SpatialImage
from scipy import ndimage

from ..errors import InputError
from ..preprocess.sitk_bridge import registration_method, reproducible_threads
from ..volume import Volume

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
ATLAS_FILE = DATA_DIR / "mni_regions_1mm.nii.gz"
TEMPLATE_FILE = DATA_DIR / "mni_t1_2mm.nii.gz"

OUTSIDE, CSF, VENTRICLE, CORTEX, WM, DEEP_GM, BRAINSTEM, CEREBELLUM = range(8)
LABEL_NAMES = {OUTSIDE: "outside brain", CSF: "CSF", VENTRICLE: "lateral ventricle", CORTEX: "cerebral cortex",
               WM: "cerebral white matter", DEEP_GM: "deep grey matter", BRAINSTEM: "brainstem",
               CEREBELLUM: "cerebellum"}
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class TemplateFit:
    """A subject-to-MNI transform and the atlas labels resampled onto the subject's working grid."""

    transform: sitk.Transform
    labels: Volume
    metric: float

    def to_mni(self, points_ras: np.ndarray) -> np.ndarray:
        """Map (N, 3) subject world points (RAS mm) to MNI (RAS mm)."""
        pts = np.atleast_2d(np.asarray(points_ras, dtype=float))
        out = np.empty_like(pts)
        for n, (x, y, z) in enumerate(pts):
            px, py, pz = self.transform.TransformPoint((-x, -y, z))
            out[n] = (-px, -py, pz)
        return out


def to_sitk(data: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image whose voxel (i, j, k) is ``data[i, j, k]`` at the same world place."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(data, (2, 1, 0))))
    lps = _LPS @ np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in (lps[:3, :3] / spacing).ravel()])
    img.SetOrigin([float(v) for v in lps[:3, 3]])
    return img


def from_sitk(img: sitk.Image) -> np.ndarray:
    return np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0))


@lru_cache(maxsize=1)
def load_atlas() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(labels, labels_affine, template_t1, template_affine), read once per process."""
    for f in (ATLAS_FILE, TEMPLATE_FILE):
        if not f.exists():
            raise InputError(f, "mslesion's atlas file is missing; reinstall mslesion or run scripts/make_atlas.py")
    # nib.load is typed as returning any image; both files are NIfTI (SpatialImages)
    lab = cast(SpatialImage, nib.load(str(ATLAS_FILE)))
    t1 = cast(SpatialImage, nib.load(str(TEMPLATE_FILE)))
    return (np.asarray(lab.dataobj, dtype=np.uint8), lab.affine, np.asarray(t1.dataobj, dtype=np.float32),
            t1.affine)


def _downsample(vol: Volume, mask: np.ndarray | None, spacing: float) -> tuple[sitk.Image, sitk.Image | None]:
    """Subject image (and mask) as SimpleITK images on a ``spacing`` mm grid."""
    img = to_sitk(vol.data.astype(np.float32), vol.affine)
    factor = [max(1, int(round(spacing / s))) for s in img.GetSpacing()]
    img = sitk.SmoothingRecursiveGaussian(img, spacing / 2.0)
    img = sitk.Shrink(img, factor)
    m = None
    if mask is not None and mask.any():
        m = to_sitk(mask.astype(np.uint8), vol.affine)
        m = sitk.Shrink(sitk.BinaryDilate(m, [2, 2, 2]), factor)
    return img, m


#: translations (LPS mm) tried as starting points of the registration; the best coarse fit wins.
#: Five starts chosen by coarse MI were tried and did not help (the bad fits came from the affine
#: stage, now guarded by _evaluate), so one start.
START_SHIFTS_MM: tuple[tuple[float, float, float], ...] = ((0.0, 0.0, 0.0),)
#: fraction of fixed-image voxels sampled by the MI metric (5% gave wrong optima on an ISBI scan)
SAMPLING = 0.2


def _run(fixed: sitk.Image, moving: sitk.Image, fixed_mask: sitk.Image | None, moving_mask: sitk.Image,
         initial: sitk.Transform, shrink: list[int], iterations: int,
         learning_rate: float = 1.0) -> tuple[sitk.Transform, float]:
    """One multi-resolution Mattes-MI registration stage; returns (fitted transform, final metric)."""
    reg = registration_method()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(SAMPLING, 7)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=learning_rate, minStep=1e-3,
                                                 numberOfIterations=iterations, relaxationFactor=0.6,
                                                 gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    reg.SetMetricMovingMask(moving_mask)
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel([s / 2.0 for s in shrink])
    reg.SetSmoothingSigmasAreSpecifiedInPhysicalUnits(False)
    reg.SetInitialTransform(initial, inPlace=False)
    with reproducible_threads():
        out = reg.Execute(fixed, moving)
    metric = float(reg.GetMetricValue())
    log.info("template %s: MI %.4f after %d iterations", initial.GetName(), metric, reg.GetOptimizerIteration())
    if isinstance(out, sitk.CompositeTransform) and out.GetNumberOfTransforms() == 1:
        out = out.GetNthTransform(0)
    return out, metric


def _evaluate(fixed: sitk.Image, moving: sitk.Image, fixed_mask: sitk.Image | None, moving_mask: sitk.Image,
              transform: sitk.Transform) -> float:
    """Mattes MI of ``transform`` at full resolution on a fixed random sample (lower is better)."""
    reg = registration_method()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.2, 3)
    reg.SetInterpolator(sitk.sitkLinear)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    reg.SetMetricMovingMask(moving_mask)
    reg.SetInitialTransform(transform)
    try:
        with reproducible_threads():
            return float(reg.MetricEvaluate(fixed, moving))
    except RuntimeError:  # e.g. too few samples overlap: the worst possible score
        return 0.0


def fit_template(image: Volume, brain_mask: np.ndarray | None, threads: int | None = None, spacing_mm: float = 2.0,
                 levels: tuple[list[int], list[int]] = ([4, 2], [2, 1])) -> TemplateFit:
    """Register the MNI template to ``image`` (similarity, then affine) and bring the atlas labels over.

    A deformable (B-spline) stage was tried and dropped: about 200 s per subject on 2 cores, far
    over the 30 s budget; the subject's own ventricles (:func:`refine_ventricles`) handle the
    largest anatomical variation (enlarged ventricles) instead.
    """
    if threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)  # resampling; registrations use 1 thread
    labels, lab_aff, t1, t1_aff = load_atlas()
    fixed, fixed_mask = _downsample(image, brain_mask, spacing_mm)
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    key = _cache_key(image, fixed, fixed_mask, spacing_mm, levels)
    if key in _FIT_CACHE:  # the same image again in this process (batch retries, test suites)
        _FIT_CACHE.move_to_end(key)
        return _FIT_CACHE[key]
    moving = to_sitk(t1, t1_aff)
    moving_mask = sitk.BinaryDilate(sitk.Cast(moving > 40, sitk.sitkUInt8), [3, 3, 3])
    # centre of mass of the brain (mask) for a robust start, even with skull in the image
    init = sitk.CenteredTransformInitializer(
        sitk.Cast(fixed_mask, sitk.sitkFloat32) if fixed_mask is not None else fixed,
        sitk.Cast(moving_mask, sitk.sitkFloat32), sitk.Similarity3DTransform(),
        sitk.CenteredTransformInitializerFilter.MOMENTS)
    # multi-start at the coarsest level: a head with neck or a cropped field of view can put the
    # centre of mass several cm from the brain's centre, and MI then finds a wrong local optimum
    starts = []
    for shift in START_SHIFTS_MM:
        cand = sitk.Similarity3DTransform(init)
        cand.SetTranslation([t + d for t, d in zip(init.GetTranslation(), shift)])
        fitted, coarse_metric = _run(fixed, moving, fixed_mask, moving_mask, cand, levels[0][:1], 60)
        starts.append((coarse_metric, shift, fitted))
    best_metric, best_shift, best = min(starts, key=lambda s: s[0])
    log.info("template start shift %s mm chosen (MI %.4f)", best_shift, best_metric)
    best = sitk.Similarity3DTransform(best) if not isinstance(best, sitk.Similarity3DTransform) else best
    similarity, _ = _run(fixed, moving, fixed_mask, moving_mask, best, levels[0][1:] or levels[0], 100)
    start = sitk.AffineTransform(3)
    # SimpleITK returns the fitted Similarity3DTransform typed as its base class Transform (no getters there)
    start.SetCenter(similarity.GetCenter())  # type: ignore[attr-defined]
    start.SetMatrix(similarity.GetMatrix())  # type: ignore[attr-defined]
    start.SetTranslation(similarity.GetTranslation())  # type: ignore[attr-defined]
    affine, _ = _run(fixed, moving, fixed_mask, moving_mask, start, levels[1], 80, learning_rate=0.3)
    # gradient descent can wander off (MI getting worse); keep whichever fit is best on one fixed sample
    scored = [(_evaluate(fixed, moving, fixed_mask, moving_mask, t), name, t)
              for name, t in (("coarse similarity", best), ("similarity", similarity), ("affine", affine))]
    metric, chosen, transform = min(scored, key=lambda s: s[0])
    log.info("template fit: %s", ", ".join(f"{n} MI {m:.4f}" for m, n, _ in scored) + f"; using {chosen}")
    ref = to_sitk(np.zeros(image.shape, np.uint8), image.affine)
    lab_img = sitk.Resample(to_sitk(labels, lab_aff), ref, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    subject_labels = image.with_data(from_sitk(lab_img).astype(np.uint8))
    fit = TemplateFit(transform, subject_labels, float(metric))
    _FIT_CACHE[key] = fit
    while len(_FIT_CACHE) > 4:
        _FIT_CACHE.popitem(last=False)
    return fit


_FIT_CACHE: "OrderedDict[str, TemplateFit]" = OrderedDict()


def _cache_key(image: Volume, fixed: sitk.Image, mask: sitk.Image | None, spacing: float, levels: object) -> str:
    h = hashlib.sha1(sitk.GetArrayViewFromImage(fixed).tobytes())
    if mask is not None:
        h.update(sitk.GetArrayViewFromImage(mask).tobytes())
    h.update(np.asarray(image.affine, dtype=np.float64).tobytes())
    h.update(repr((image.shape, spacing, levels)).encode())
    return h.hexdigest()


def refine_ventricles(labels: np.ndarray, image: np.ndarray, reach_vox: int = 8) -> np.ndarray:
    """Subject's own lateral ventricles: dark voxels near the atlas ventricles, grown from them.

    ``image`` is a FLAIR or T1 on the labels' grid (CSF dark in both).  The
    atlas ventricles are the seed; dark voxels (below the midpoint of the
    ventricle and white-matter medians) connected to them within
    ``reach_vox`` voxels are added, so enlarged ventricles are followed.
    Returns a boolean mask; falls back to the atlas ventricles if the image
    gives no usable contrast.
    """
    atlas_v = labels == VENTRICLE
    wm = labels == WM
    if atlas_v.sum() < 50 or wm.sum() < 50:
        return atlas_v
    core = ndimage.binary_erosion(atlas_v, iterations=1)
    v_med = float(np.median(image[core])) if core.any() else float(np.median(image[atlas_v]))
    w_med = float(np.median(image[wm]))
    if not w_med > v_med:
        log.warning("no ventricle/white-matter contrast; using atlas ventricles as registered")
        return atlas_v
    dark = image < (v_med + w_med) / 2.0
    region = ndimage.binary_dilation(atlas_v, iterations=reach_vox) & (labels != OUTSIDE)
    region &= ~np.isin(labels, (BRAINSTEM, CEREBELLUM))
    cand = dark & region
    # opening cuts thin dark threads (sulci, vessels, noise) that would carry the growth into white matter
    opened = ndimage.binary_opening(cand)
    comps, n = ndimage.label(opened)
    if n == 0:
        return atlas_v
    hit = np.unique(comps[atlas_v & opened])
    hit = hit[hit > 0]
    subject_v = ndimage.binary_dilation(np.isin(comps, hit)) & cand
    # atlas ventricle voxels that are bright in this subject (e.g. lesion, misregistration) are dropped
    return subject_v if subject_v.sum() >= 0.2 * atlas_v.sum() else atlas_v
