"""Assign each lesion a McDonald 2017 region, an MNI centroid, a structure and its long axes.

Anatomy comes from the MNI atlas registered to the subject's working grid
(:mod:`.atlas`), with the lateral ventricles refined on the subject's own
image.  Rules, in this order of precedence:

1. ``infratentorial``: at least half of the lesion lies in brainstem or cerebellum;
2. ``periventricular``: some lesion voxel within ``periventricular_mm`` of a lateral ventricle;
3. ``juxtacortical``: some lesion voxel inside the cortex or within ``juxtacortical_mm`` of it
   (or of the outside of the registered brain, which lies beyond the cortex);
4. ``deep_white_matter``: everything else.

(``spinal_cord`` is assigned by the spinal-cord analysis, not here.)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import ndimage

from ..clock import Clock
from ..lesions import Lesion
from ..preprocess import Preprocessed
from ..preprocess.resample import resample_to_grid
from ..volume import LabelVolume, Volume
from . import atlas
from .dis import MCDONALD_AREAS, dis_verdict

log = logging.getLogger(__name__)

REGIONS = ("periventricular", "juxtacortical", "infratentorial", "deep_white_matter", "spinal_cord")


@dataclass
class LocationOptions:
    """Settings of the location step."""

    periventricular_mm: float = 3.0
    juxtacortical_mm: float = 1.0
    min_long_axis_mm: float = 3.0
    min_areas: int = 2
    infratentorial_fraction: float = 0.5


@dataclass
class LocationResult:
    """Per-region summary and the DIS verdict; ``anatomy`` is the subject-space label map used."""

    regions: dict[str, dict] = field(default_factory=dict)
    mcdonald_dis: dict | None = None
    anatomy: Volume | None = None
    timings: dict[str, float] = field(default_factory=dict)


def long_axis_mm(voxels: np.ndarray, affine: np.ndarray) -> float:
    """Largest extent of a lesion in mm: farthest pair of voxel centres plus one voxel along that line."""
    pts = voxels @ affine[:3, :3].T
    if len(pts) == 1:
        return float(max(np.linalg.norm(affine[:3, :3], axis=0)))
    if len(pts) > 400:
        try:
            from scipy.spatial import ConvexHull

            pts = pts[ConvexHull(pts).vertices]
        except Exception:  # flat lesions (one slice): hull fails in 3-D, keep all points
            pts = pts[:: max(1, len(pts) // 2000)]
    diff = pts[:, None, :] - pts[None, :, :]
    dist = np.einsum("ijk,ijk->ij", diff, diff)
    a, b = np.unravel_index(int(np.argmax(dist)), dist.shape)
    length = float(np.sqrt(dist[a, b]))
    if length == 0:
        return float(min(np.linalg.norm(affine[:3, :3], axis=0)))
    u = (pts[a] - pts[b]) / length
    voxel_extent = float(np.abs(u @ affine[:3, :3]).sum())
    return length + voxel_extent


def axial_long_axis_mm(voxels: np.ndarray, affine: np.ndarray) -> float:
    """Long axis in the axial plane (world/RAS x-y), the size measure of the McDonald criteria.

    The voxel centres are projected onto the x-y plane; the result is the farthest pair plus the
    voxel's in-plane footprint along that line.  Unlike :func:`long_axis_mm` the thickness of axial
    slices does not count: one 1 x 1 x 3 mm voxel measures 1 mm.  On an oblique or sagittal grid a
    voxel counts by its footprint on the axial plane.
    """
    inplane = np.asarray(affine, dtype=float)[:2, :3]  # in-plane part of each voxel axis
    pts = np.unique(np.round(np.asarray(voxels, dtype=float) @ inplane.T, 4), axis=0)
    if len(pts) > 400:
        try:
            from scipy.spatial import ConvexHull

            pts = pts[ConvexHull(pts).vertices]
        except Exception:  # collinear points: the hull fails, thin them out instead
            pts = pts[:: max(1, len(pts) // 2000)]
    diff = pts[:, None, :] - pts[None, :, :]
    dist = np.einsum("ijk,ijk->ij", diff, diff)
    a, b = np.unravel_index(int(np.argmax(dist)), dist.shape)
    length = float(np.sqrt(dist[a, b]))
    if length == 0:  # one column of voxels: the largest in-plane side of a voxel
        return float(max(np.linalg.norm(inplane, axis=0)))
    u = (pts[a] - pts[b]) / length
    return length + float(np.abs(u @ inplane).sum())


def classify(fractions: dict[str, float], dist_ventricle: float, dist_cortex: float,
             options: LocationOptions) -> str:
    """The McDonald region of one lesion from its overlap fractions and distances (mm)."""
    if fractions.get("infratentorial", 0.0) >= options.infratentorial_fraction:
        return "infratentorial"
    if dist_ventricle <= options.periventricular_mm:
        return "periventricular"
    if dist_cortex <= options.juxtacortical_mm:
        return "juxtacortical"
    return "deep_white_matter"


def subject_anatomy(pre: Preprocessed, options: LocationOptions) -> "Anatomy":
    """Register the atlas to ``pre`` and return (fit, subject ventricle mask on the working grid)."""
    image = pre.images.get("t1", pre.flair)
    fit = atlas.fit_template(image, pre.brain_mask.data > 0)
    ventricles = atlas.refine_ventricles(fit.labels.data, pre.flair.data)
    return fit, ventricles


def _min_distance(target: np.ndarray, inner: tuple[slice, ...], own: np.ndarray,
                  spacing: tuple[float, ...]) -> float:
    """Smallest distance (mm) from the lesion voxels ``own`` (at ``inner`` of the box) to ``target``."""
    if not target.any():
        return float("inf")
    dist = ndimage.distance_transform_edt(~target, sampling=spacing)
    return float(dist[inner][own].min())


Anatomy = tuple[atlas.TemplateFit, np.ndarray]


def locate(labels: np.ndarray, lesions: list[Lesion], pre: Preprocessed, options: LocationOptions,
           anatomy: Callable[[], Anatomy] | None = None) -> LocationResult:
    """Fill region, MNI centroid, structure and long axis of every lesion; summarise regions and DIS.

    ``labels`` is the lesion label image on the native FLAIR grid (``pre.native``),
    lesion ``i`` being ``labels == lesions[i].id``.  Steps: long axes (native grid), the
    subject's anatomy (atlas registration; ``anatomy``: where it comes from instead of
    :func:`subject_anatomy`, e.g. a fit started beside the segmentation), each lesion's region
    and structure (working grid).
    """
    clock = Clock()
    timings = clock.timings
    measure_long_axes(labels, lesions, pre.native.affine)
    if not lesions:
        return LocationResult(regions=summarise([]), mcdonald_dis=verdict_for([], options), timings=timings)
    try:
        fit, ventricles = anatomy() if anatomy is not None else subject_anatomy(pre, options)
    except RuntimeError as exc:  # SimpleITK failures: report lesions unlocated rather than fail the analysis
        return _unlocated(lesions, options, exc, timings)
    clock.lap("registration_s")
    classify_lesions(labels, lesions, pre, fit, ventricles, options)
    clock.lap("classify_s")
    subject_labels = fit.labels.with_data(np.where(ventricles, atlas.VENTRICLE,
                                                   np.where(fit.labels.data == atlas.VENTRICLE, atlas.CSF,
                                                            fit.labels.data)).astype(np.uint8))
    return LocationResult(summarise(lesions), verdict_for(lesions, options), subject_labels, timings)


def measure_long_axes(labels: np.ndarray, lesions: list[Lesion], affine: np.ndarray) -> None:
    """Each lesion's 3D and axial long axis (mm) on the native grid (``labels``, ``affine``)."""
    native_objects = ndimage.find_objects(labels)
    for les in lesions:
        sl = native_objects[les.id - 1] if les.id - 1 < len(native_objects) else None
        idx = np.argwhere(labels[sl] == les.id) + [s.start for s in sl] if sl is not None else np.zeros((0, 3))
        les.extra["long_axis_mm"] = round(long_axis_mm(idx.astype(float), affine), 2) if len(idx) else 0.0
        les.extra["long_axis_axial_mm"] = (round(axial_long_axis_mm(idx.astype(float), affine), 2)
                                           if len(idx) else 0.0)


def _unlocated(lesions: list[Lesion], options: LocationOptions, exc: Exception,
               timings: dict[str, float]) -> LocationResult:
    """The result when the atlas registration failed: every lesion 'unclassified', DIS not assessed."""
    log.warning("atlas registration failed (%s); lesion regions are 'unclassified'", exc)
    for les in lesions:
        les.region = "unclassified"
    verdict = verdict_for(lesions, options)
    verdict.update(met=None, status=f"not assessed: atlas registration failed ({str(exc)[:200]})")
    return LocationResult(regions=summarise(lesions), mcdonald_dis=verdict, timings=timings)


def classify_lesions(labels: np.ndarray, lesions: list[Lesion], pre: Preprocessed, fit: atlas.TemplateFit,
                     ventricles: np.ndarray, options: LocationOptions) -> None:
    """Region, MNI centroid and atlas structure of each lesion, measured on the working grid.

    ``fit`` is the atlas fit of :func:`subject_anatomy` (labels on the working grid, ``to_mni``).
    """
    work = pre.flair
    anat = fit.labels.data
    lab_work = resample_to_grid(LabelVolume(labels.astype(np.int32), pre.native.affine), work.shape,
                                work.affine).data
    spacing = tuple(float(z) for z in np.linalg.norm(work.affine[:3, :3], axis=0))
    margin = [int(np.ceil(max(options.periventricular_mm, options.juxtacortical_mm) / z)) + 2 for z in spacing]
    objects = ndimage.find_objects(lab_work)
    inv_work = np.linalg.inv(work.affine)
    mni = fit.to_mni(np.array([[l.centroid_x, l.centroid_y, l.centroid_z] for l in lesions]))
    for les, (x, y, z) in zip(lesions, mni):
        les.extra.update(mni_x=round(float(x), 1), mni_y=round(float(y), 1), mni_z=round(float(z), 1))
        found = objects[les.id - 1] if les.id - 1 < len(objects) else None
        if found is None:  # lesion thinner than a working voxel: use its centroid's working voxel
            c = np.rint(inv_work @ np.array([les.centroid_x, les.centroid_y, les.centroid_z, 1.0]))[:3].astype(int)
            c = np.clip(c, 0, np.array(work.shape) - 1)
            found = tuple(slice(int(v), int(v) + 1) for v in c)
            own = np.ones((1, 1, 1), bool)
        else:
            own = None
        # a local box around the lesion is enough: only distances up to the rule's thresholds matter
        box = tuple(slice(max(0, s.start - m), min(n, s.stop + m)) for s, m, n in zip(found, margin, work.shape))
        inner = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(found, box))
        if own is None:
            own = lab_work[found] == les.id
        vals = anat[found][own]
        dv = _min_distance(ventricles[box], inner, own, spacing)
        # outside the registered brain is beyond the cortex: a lesion reaching it touches the cortex
        dc = _min_distance(np.isin(anat[box], (atlas.CORTEX, atlas.OUTSIDE)), inner, own, spacing)
        fractions = {"infratentorial": float(np.isin(vals, (atlas.BRAINSTEM, atlas.CEREBELLUM)).mean())}
        les.region = classify(fractions, dv, dc, options)
        les.extra["structure"] = structure_name(vals, float(x))
        # a lesion can span areas; the structure follows the region where that is unambiguous
        if les.region == "infratentorial" and les.extra["structure"] not in ("brainstem",) \
                and "cerebellum" not in les.extra["structure"]:
            les.extra["structure"] = "brainstem" if abs(float(x)) < 12 else f"{_side(float(x))} cerebellum"


def _side(x_mni: float) -> str:
    return "left" if x_mni < 0 else "right"


def structure_name(anat_values: np.ndarray, x_mni: float) -> str:
    """The atlas structure most of the lesion lies in (CSF and outside ignored), with hemisphere."""
    vals = anat_values[anat_values > atlas.CSF]
    if vals.size == 0:
        vals = anat_values
    code = int(np.bincount(vals.astype(np.int64), minlength=8).argmax())
    name = atlas.LABEL_NAMES[code]
    return name if code in (atlas.BRAINSTEM, atlas.OUTSIDE, atlas.CSF) else f"{_side(x_mni)} {name}"


def summarise(lesions: list[Lesion]) -> dict[str, dict]:
    """Count and volume (mL) of lesions per region; every region is listed."""
    out: dict[str, dict] = {r: {"count": 0, "volume_ml": 0.0} for r in REGIONS}
    for les in lesions:
        entry = out.setdefault(les.region or "unclassified", {"count": 0, "volume_ml": 0.0})
        entry["count"] += 1
        entry["volume_ml"] += les.volume_ml
    for entry in out.values():
        entry["volume_ml"] = round(float(entry["volume_ml"]), 4)
    return out


def verdict_for(lesions: list[Lesion], options: LocationOptions) -> dict:
    """DIS verdict from located lesions: only lesions whose axial long axis reaches the minimum count.

    The size is measured in the axial plane (``long_axis_axial_mm``, see :func:`axial_long_axis_mm`),
    as the McDonald criteria do, so a speck one voxel wide never counts through slice thickness.
    """
    counts = {area: 0 for area in MCDONALD_AREAS if area != "spinal_cord"}
    for les in lesions:
        if les.region in counts and float(les.extra.get("long_axis_axial_mm", 0.0)) >= options.min_long_axis_mm:
            counts[les.region] += 1
    return dis_verdict(counts, options)
