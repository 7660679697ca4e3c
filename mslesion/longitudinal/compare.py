"""Compare a follow-up scan with a baseline scan: new, enlarging, shrinking and disappearing lesions.

    from mslesion.longitudinal import compare_scans
    result = compare_scans({"flair": "ses-1_FLAIR.nii.gz"}, {"flair": "ses-2_FLAIR.nii.gz"}, "out/")

Steps: load and check both time points; preprocess each (working grid, N4,
normalisation: :func:`mslesion.preprocess.preprocess`) with brain extraction on the
baseline only; register the follow-up to the baseline (rigid, mutual information,
baseline brain mask: ``preprocess.registration.register_rigid``) and map the
baseline brain mask onto the follow-up, so both time points share one mask;
segment both with the same segmenter; bring the follow-up onto the baseline
working grid; detect changes jointly (:func:`~mslesion.longitudinal.change.detect_changes`);
locate them (McDonald regions, :func:`mslesion.location.locate`); write label
masks on both native grids, a table, a QC page and ``compare_report.json`` (last).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..clock import Clock
from ..errors import InputError
from ..inputs import load_inputs, prepare_out_dir
from ..io import load_volume
from ..lesions import Lesion
from ..pipeline import AnalyzeOptions, Analyzer
from ..preprocess import Preprocessed, preprocess
from ..preprocess.normalize import robust_zscore
from ..preprocess.resample import isotropic_grid, resample_like, resample_to_grid
from ..segment import Segmenter
from ..volume import Volume, bounding_box
from .change import ChangeMaps, ChangeOptions, detect_changes
from .outputs import write_compare_outputs
from .report import CompareReport
from .result import CompareResult
from .transforms import rigid_parameters

log = logging.getLogger(__name__)

#: grid spacing (mm) of the images handed to rigid registration
REGISTRATION_MM = 2.0

OUTPUT_FILES = ("new_enlarging_baseline.nii.gz", "new_enlarging_followup.nii.gz", "changes_baseline.nii.gz",
                "changes_followup.nii.gz", "change_labels_baseline.nii.gz", "changes.csv", "compare_report.json")


@dataclass
class CompareOptions:
    """Settings of a comparison: segmentation/preprocessing (``analyze``) and change thresholds."""

    analyze: AnalyzeOptions = field(default_factory=AnalyzeOptions)
    change: ChangeOptions = field(default_factory=ChangeOptions)
    #: optional brain mask in the baseline's world space (any grid) replacing the automatic one
    brain_mask: Path | None = None


def compare_analyze_options(aopts: AnalyzeOptions) -> AnalyzeOptions:
    """``aopts`` with model "auto" made :data:`~mslesion.model.DEFAULT_COMPARE_MODEL` (the model measured
    best for change calls); a named model or the baseline is kept."""
    from ..model import DEFAULT_COMPARE_MODEL

    if aopts.model != "auto":
        return aopts
    log.info("compare segments with %s (the default model for change detection)", DEFAULT_COMPARE_MODEL)
    return replace(aopts, model=DEFAULT_COMPARE_MODEL)


def compare_scans(baseline: dict[str, str | Path | None], followup: dict[str, str | Path | None],
                  out_dir: str | Path | None = None, options: CompareOptions | None = None,
                  segmenter: Segmenter | None = None) -> CompareResult:
    """Detect lesion change from ``baseline`` to ``followup`` (dicts of contrast -> path, 'flair' required)."""
    opts = options or CompareOptions()
    if not opts.change.evidence.required:
        log.warning("change calls are NOT checked against both scans (evidence not required): faint or "
                    "one-scan-only changes are reported; the DIT verdict does not count them")
    clock = Clock()
    timings = clock.timings
    vols0 = _load("baseline", baseline)
    vols1 = _load("follow-up", followup)
    if set(vols0) != set(vols1):
        log.info("contrasts differ between time points (%s vs %s); using the shared ones",
                 sorted(vols0), sorted(vols1))
        shared = set(vols0) & set(vols1)
        vols0 = {k: v for k, v in vols0.items() if k in shared}
        vols1 = {k: v for k, v in vols1.items() if k in shared}
    given = load_volume(opts.brain_mask, role="brain mask") if opts.brain_mask is not None else None
    out = prepare_out_dir(out_dir) if out_dir is not None else None
    from ..preprocess.registration import register_rigid, resample_moving  # issue 3 (preprocessing)

    aopts = compare_analyze_options(opts.analyze)
    with clock.step("preprocess_s"):
        # brain extraction runs once, on the baseline (unless a mask is given); the follow-up gets the
        # baseline mask through the registration: same head, and one mask for both time points
        popts = aopts.preprocess_options()
        strip0 = popts.skull_strip and given is None
        pre0 = preprocess(vols0, replace(popts, skull_strip=strip0, check_brain=popts.check_brain and strip0))
        pre1 = preprocess(vols1, replace(popts, skull_strip=False, check_brain=False))
        if given is not None:
            mask0 = resample_like(given.with_data(given.data > 0).as_labels(), pre0.flair).data > 0
            if mask0.sum() < 1000:
                raise InputError(opts.brain_mask, "brain mask covers almost none of the baseline image")
            pre0 = _with_brain(pre0, mask0)
    with clock.step("register_s"):
        fixed, fmask = _registration_view(pre0.flair, pre0.brain_mask.data > 0)
        moving, _ = _registration_view(pre1.flair, pre1.brain_mask.data > 0)
        transform = register_rigid(fixed, moving, fixed_mask=fmask)
    log.info("follow-up -> baseline: %s", rigid_parameters(transform))
    back = np.linalg.inv(transform)  # follow-up world -> baseline world
    mask1 = resample_moving(pre0.brain_mask.with_data(pre0.brain_mask.data.astype(np.float32)), pre1.flair, back, 1)
    pre1 = _with_brain(pre1, mask1.data >= 0.5)
    # the Analyzer's steps: segmenter, threshold, segmentation and location as ``analyze`` does them
    analyzer = Analyzer(aopts, segmenter=segmenter, contrasts=set(vols0))
    seg = analyzer.segmenter_for(set(vols0))
    threshold = analyzer.threshold_for(seg)
    with clock.step("segment_s"):
        prob0 = analyzer.segment(pre0, seg)
        prob1 = analyzer.segment(pre1, seg)
    with clock.step("volumes_s"):
        from ..volumes.outputs import compare_volumes  # issue 18 (brain volumes)

        volume_change = compare_volumes(pre0, prob0, pre1, prob1, threshold)
    with clock.step("detect_s"):
        f1 = resample_moving(pre1.flair, pre0.flair, transform, order=1)
        p1 = resample_moving(prob1, pre0.flair, transform, order=1)
        fov1 = resample_moving(pre1.flair.with_data(np.ones(pre1.flair.shape, np.float32)), pre0.flair, transform, 1)
        brain = (pre0.brain_mask.data > 0) & (fov1.data >= 0.99)
        changes = _detect_in_box(pre0.flair.data, f1.data, prob0.data, p1.data, brain, pre0.flair.zooms, threshold,
                                 opts.change)
        changes = drop_small_changes(changes, aopts.min_lesion_mm3)
    kinds_work = pre0.flair.with_data(changes.kinds).as_labels()
    comps_work = pre0.flair.with_data(changes.components).as_labels()
    kinds0 = _as_uint8(pre0.to_native(kinds_work))
    comps0 = pre0.to_native(comps_work)
    kinds1 = _as_uint8(resample_moving(kinds_work, pre1.native, back))
    with clock.step("location_s"):
        labels0, lesions = _lesions_on_grid(comps0, changes)
        location = analyzer.locate(labels0, lesions, pre0)
    clock.total("total_s")
    report = CompareReport.build(vols0, vols1, seg, threshold, changes, lesions, location, transform, timings,
                                 opts.change, opts.analyze.device, opts.analyze.min_lesion_mm3)
    report.volume_change = volume_change
    result = CompareResult(changes, kinds0, kinds1, lesions, location, transform, report, out,
                           comps0.with_data(labels0.astype(np.int16)))
    if out is not None:
        write_compare_outputs(result, out, pre0, f1)
    return result


def _detect_in_box(f0: np.ndarray, f1: np.ndarray, p0: np.ndarray, p1: np.ndarray, brain: np.ndarray,
                   spacing: tuple[float, float, float], threshold: float, options: ChangeOptions) -> ChangeMaps:
    """Run :func:`detect_changes` on the brain's bounding box only (much faster), then paste back."""
    if not brain.any():
        raise InputError(None, "the brain masks of the two time points do not overlap after registration")
    box = bounding_box(brain, margin=8)
    found = detect_changes(f0[box], f1[box], np.clip(p0[box], 0, 1), np.clip(p1[box], 0, 1), brain[box], spacing,
                           threshold, options)
    kinds = np.zeros(brain.shape, found.kinds.dtype)
    comps = np.zeros(brain.shape, found.components.dtype)
    kinds[box] = found.kinds
    comps[box] = found.components
    return ChangeMaps(kinds, comps, found.table, found.noise_sigma, found.rejected, found.levels)


def drop_small_changes(changes: ChangeMaps, min_lesion_mm3: float) -> ChangeMaps:
    """Remove the changes whose lesion is below ``min_lesion_mm3`` at both time points (as ``analyze`` does)."""
    small = [c.label for c in changes.table if max(c.baseline_mm3, c.followup_mm3) < min_lesion_mm3]
    if not small:
        return changes
    gone = np.isin(changes.components, small)
    kinds, comps = changes.kinds.copy(), changes.components.copy()
    kinds[gone] = 0
    comps[gone] = 0
    log.info("%d change(s) of lesions below %g mm^3 dropped", len(small), min_lesion_mm3)
    return ChangeMaps(kinds, comps, [c for c in changes.table if c.label not in small], changes.noise_sigma,
                      changes.rejected, changes.levels)


def _with_brain(pre: Preprocessed, mask: np.ndarray) -> Preprocessed:
    """``pre`` with ``mask`` as its brain mask and every image re-normalised inside it.

    ``robust_zscore`` is affine in the intensities, so re-applying it inside the new mask gives
    the model's input contract (brain median 0, (p99 - p1) / 4 = 1) whatever mask came first.
    """
    if mask.sum() < 1000:
        raise InputError(pre.native.path, "the brain mask mapped onto this scan covers almost none of it; "
                                          "are both scans of the same head?")
    images = {k: v.with_data(robust_zscore(v.data, mask)) for k, v in pre.images.items()}
    return Preprocessed(native=pre.native, images=images, brain_mask=pre.flair.with_data(mask.astype(np.uint8)),
                        timings=pre.timings)


def _registration_view(vol: Volume, mask: np.ndarray, spacing: float = REGISTRATION_MM,
                       margin_mm: float = 12.0) -> tuple[Volume, np.ndarray]:
    """The brain's bounding box (plus a margin) on a coarser grid, intensities made non-negative.

    Registration's finest level works at about this spacing anyway; handing it a small image
    instead of the whole 1 mm working grid makes it several times faster.  The transform is in
    world millimetres, so it applies unchanged to the full-resolution grids.
    """
    if not mask.any():
        mask = np.ones(vol.shape, bool)
    box = bounding_box(mask, margin=int(np.ceil(margin_mm / min(vol.zooms))))
    offset = np.eye(4)
    offset[:3, 3] = [b.start for b in box]
    data = vol.data[box]
    crop = Volume(np.ascontiguousarray(data - float(data.min())), vol.affine @ offset, vol.path, vol.meta.copy())
    shape, affine = isotropic_grid(crop, spacing)
    small = resample_to_grid(crop, shape, affine, order=1)
    small_mask = resample_to_grid(crop.with_data(mask[box].astype(np.float32)), shape, affine, order=1).data >= 0.5
    return small, ndimage.binary_dilation(small_mask, iterations=2)


def _load(when: str, paths: dict[str, str | Path | None]) -> dict[str, Volume]:
    if not paths.get("flair"):
        raise InputError(None, f"a {when} FLAIR image is required")
    return load_inputs({k: v for k, v in paths.items() if v})


def _as_uint8(vol: Volume) -> Volume:
    return vol.with_data(np.rint(vol.data).astype(np.uint8))


def _lesions_on_grid(comps: Volume, changes: ChangeMaps) -> tuple[np.ndarray, list[Lesion]]:
    """One Lesion per change component, measured on ``comps``'s grid (ids = component labels)."""

    labels = np.rint(comps.data).astype(np.int32)
    lesions: list[Lesion] = []
    n = len(changes.table)
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    present = [c for c in changes.table if counts[c.label] > 0]
    ids = [c.label for c in present]
    centres = ndimage.center_of_mass(np.ones_like(labels, np.uint8), labels, ids) if present else []
    for comp, centre in zip(present, centres):
        world = comps.affine @ np.append(np.asarray(centre, float), 1.0)
        lesions.append(Lesion(id=comp.label, voxels=int(counts[comp.label]), volume_ml=round(comp.change_mm3 / 1000, 5),
                              centroid_x=round(float(world[0]), 2), centroid_y=round(float(world[1]), 2),
                              centroid_z=round(float(world[2]), 2),
                              extra={"change": comp.kind, "baseline_volume_ml": round(comp.baseline_mm3 / 1000, 5),
                                     "followup_volume_ml": round(comp.followup_mm3 / 1000, 5),
                                     "peak_z": comp.peak_z, "mean_z": comp.mean_z,
                                     "lesion_probability": comp.lesion_probability,
                                     **_evidence_columns(comp.evidence)}))
    missing = n - len(present)
    if missing:
        log.info("%d tiny change component(s) vanished when resampled to the native grid", missing)
    return labels, lesions


def _evidence_columns(evidence: dict) -> dict:
    """The evidence of one change as flat table columns (robust-z FLAIR units)."""
    names = {"difference": "flair_difference", "significance": "difference_significance",
             "bright_flair": "flair_where_bright", "other_flair": "flair_where_normal",
             "support_mm3": "support_mm3", "resolved_fraction": "resolved_fraction"}
    cols = {new: evidence.get(old) for old, new in names.items()}
    cols["evidence_supported"] = evidence.get("supported")
    cols["evidence_failed"] = "; ".join(evidence.get("failed", []))
    return cols
