"""Segmentation scores: voxel Dice, lesion-wise detection, volume difference."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from .errors import InputError
from .lesions import label_components, remove_small
from .preprocess.resample import resample_like
from .volume import Volume

log = logging.getLogger(__name__)


@dataclass
class Scores:
    dice: float
    lesion_sensitivity: float
    lesion_precision: float
    lesion_f1: float
    ref_lesions: int
    pred_lesions: int
    detected_ref_lesions: int
    true_pred_lesions: int
    ref_volume_ml: float
    pred_volume_ml: float
    abs_volume_diff_ml: float
    # lesion-wise sensitivity by reference lesion size (None where the class is empty)
    ref_lesions_lt30: int = 0
    detected_lt30: int = 0
    sensitivity_lt30: float | None = None
    ref_lesions_30to100: int = 0
    detected_30to100: int = 0
    sensitivity_30to100: float | None = None
    ref_lesions_gt100: int = 0
    detected_gt100: int = 0
    sensitivity_gt100: float | None = None
    #: the prediction was resampled (nearest neighbour) onto the reference's grid to be scored
    pred_resampled: bool = False
    #: which masks were not binary and were thresholded at ``threshold`` ("", "pred", "ref" or "pred+ref")
    thresholded: str = ""
    threshold: float | None = None

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


#: the score names, in the order of :class:`Scores` (CSV columns)
SCORE_FIELDS = tuple(f.name for f in fields(Scores))


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Voxel Dice; 1.0 when both masks are empty."""
    p, r = pred.astype(bool), ref.astype(bool)
    denom = p.sum() + r.sum()
    return 1.0 if denom == 0 else float(2.0 * np.logical_and(p, r).sum() / denom)


def lesion_detection(pred: np.ndarray, ref: np.ndarray, connectivity: int = 26) -> tuple[int, int, int, int]:
    """(ref lesions, detected ref lesions, pred lesions, pred lesions overlapping ref).

    A lesion is a connected component; it counts as detected when any voxel overlaps.
    """
    p, r = pred.astype(bool), ref.astype(bool)
    ref_lab, n_ref = label_components(r, connectivity)
    pred_lab, n_pred = label_components(p, connectivity)
    detected = len(np.setdiff1d(np.unique(ref_lab[p]), [0]))
    true_pred = len(np.setdiff1d(np.unique(pred_lab[r]), [0]))
    return n_ref, detected, n_pred, true_pred


def score_arrays(pred: np.ndarray, ref: np.ndarray, voxel_ml: float, connectivity: int = 26) -> Scores:
    n_ref, det, n_pred, tp = lesion_detection(pred, ref, connectivity)
    sens = det / n_ref if n_ref else 1.0
    prec = tp / n_pred if n_pred else (1.0 if n_ref == 0 else 0.0)
    f1 = 0.0 if sens + prec == 0 else 2 * sens * prec / (sens + prec)
    rv = float(ref.astype(bool).sum()) * voxel_ml
    pv = float(pred.astype(bool).sum()) * voxel_ml
    by_size: dict[str, Any] = {}
    for name, counts in detection_by_size(pred, ref, voxel_ml, connectivity).items():
        n = int(counts["ref_lesions"])
        by_size.update({f"ref_lesions_{name}": n, f"detected_{name}": int(counts["detected"]),
                        f"sensitivity_{name}": counts["sensitivity"] if n else None})
    return Scores(dice(pred, ref), sens, prec, f1, n_ref, n_pred, det, tp, rv, pv, abs(pv - rv), **by_size)


#: lesion size classes (mm^3) for lesion-wise sensitivity: (name, lower bound, upper bound)
SIZE_CLASSES: tuple[tuple[str, float, float], ...] = (
    ("lt30", 0.0, 30.0), ("30to100", 30.0, 100.0), ("gt100", 100.0, float("inf")))


def detection_by_size(pred: np.ndarray, ref: np.ndarray, voxel_ml: float,
                      connectivity: int = 26) -> dict[str, dict[str, float]]:
    """Per size class of the reference lesions: how many there are, how many any prediction touches.

    Classes are :data:`SIZE_CLASSES` in mm^3 (< 30, 30-100, > 100). Sensitivity is NaN for an
    empty class.
    """
    ref_lab, n_ref = label_components(ref.astype(bool), connectivity)
    sizes_mm3 = np.bincount(ref_lab.ravel(), minlength=n_ref + 1)[1:] * voxel_ml * 1000.0
    hit = np.zeros(n_ref + 1, bool)
    hit[np.unique(ref_lab[pred.astype(bool)])] = True
    hit = hit[1:]
    out: dict[str, dict[str, float]] = {}
    for name, lo, hi in SIZE_CLASSES:
        sel = (sizes_mm3 >= lo) & (sizes_mm3 < hi)
        n, det = int(sel.sum()), int((hit & sel).sum())
        out[name] = {"ref_lesions": n, "detected": det, "sensitivity": det / n if n else float("nan")}
    return out


def reliability(prob: np.ndarray, ref: np.ndarray, bins: int = 10) -> tuple[list[dict[str, float]], float]:
    """Reliability table (equal-width probability bins) and expected calibration error.

    ``prob`` and ``ref`` are voxel arrays of the same shape (restrict them to the brain first).
    Each row: bin edges, voxel count, mean predicted probability, observed lesion fraction.
    ECE is the voxel-weighted mean of |observed - predicted| over the bins.
    """
    p = np.asarray(prob, np.float64).ravel()
    r = np.asarray(ref, bool).ravel()
    idx = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(idx, minlength=bins)
    psum = np.bincount(idx, weights=p, minlength=bins)
    rsum = np.bincount(idx, weights=r.astype(np.float64), minlength=bins)
    rows, ece = [], 0.0
    for b in range(bins):
        n = int(count[b])
        mean_p = float(psum[b] / n) if n else float("nan")
        frac = float(rsum[b] / n) if n else float("nan")
        if n:
            ece += n / max(1, len(p)) * abs(frac - mean_p)
        rows.append({"lo": b / bins, "hi": (b + 1) / bins, "voxels": n, "mean_prob": mean_p, "lesion_fraction": frac})
    return rows, float(ece)


def is_binary(data: np.ndarray) -> bool:
    """Whether ``data`` holds at most one nonzero value (0 = background, that value = lesion)."""
    nonzero = data[data != 0]
    return nonzero.size == 0 or bool((nonzero == nonzero.flat[0]).all())


def binary_mask(vol: Volume, threshold: float | None = None, role: str = "mask") -> tuple[np.ndarray, bool]:
    """(lesion voxels, whether ``threshold`` was applied) of a mask volume.

    A binary mask (background 0 and one other value) is used as it is.  Any other volume, a
    probability map or a map of several labels, needs ``threshold`` (voxels >= it are lesion):
    scoring "every voxel above 0" of a probability map would count the whole brain as lesion.
    """
    if is_binary(vol.data):
        return vol.data != 0, False
    if threshold is None:
        nonzero = vol.data[vol.data != 0]
        raise InputError(vol.path, f"{role} is not a binary mask: it holds {np.unique(nonzero).size} different "
                                   f"nonzero values from {float(nonzero.min()):g} to {float(nonzero.max()):g} (a "
                                   "probability or label map?); pass --threshold T to count voxels >= T as lesion, "
                                   "e.g. --threshold 0.5 for a lesion_probability map")
    return vol.data >= threshold, True


def evaluate(pred: Volume, ref: Volume, connectivity: int = 26, min_lesion_mm3: float = 0.0,
             threshold: float | None = None) -> Scores:
    """Score ``pred`` against ``ref``; ``pred`` is resampled onto ``ref``'s grid by world coordinates.

    Both must be binary masks unless ``threshold`` is given, which then turns a non-binary one
    (e.g. a probability map) into a mask of the voxels >= ``threshold`` (see :func:`binary_mask`).
    ``min_lesion_mm3`` > 0 drops smaller connected lesions from both masks first (a common
    convention, e.g. 3 mm^3, so that specks do not count as lesions).  The scores say whether
    the prediction was resampled and which masks were thresholded.
    """
    p, p_thr = binary_mask(pred, threshold, "prediction")
    r, r_thr = binary_mask(ref, threshold, "reference")
    resampled = not pred.same_grid(ref)
    if resampled:
        log.warning("%s: prediction resampled (nearest neighbour) from a %s grid of %s mm onto the reference's "
                    "%s grid of %s mm", pred.path, pred.shape, _mm(pred), ref.shape, _mm(ref))
        p = resample_like(pred.with_data(p).as_labels(), ref).data > 0
    if min_lesion_mm3 > 0:
        min_vox = int(np.ceil(min_lesion_mm3 / (ref.voxel_volume_ml * 1000.0) - 1e-9))
        p, r = remove_small(p, min_vox, connectivity), remove_small(r, min_vox, connectivity)
    scores = score_arrays(p, r, ref.voxel_volume_ml, connectivity)
    scores.pred_resampled = resampled
    scores.thresholded = "+".join(n for n, done in (("pred", p_thr), ("ref", r_thr)) if done)
    scores.threshold = threshold if (p_thr or r_thr) else None
    return scores


def _mm(vol: Volume) -> str:
    return "x".join(f"{z:g}" for z in np.round(vol.zooms, 3))
