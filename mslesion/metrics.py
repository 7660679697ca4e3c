"""Segmentation scores: voxel Dice, lesion-wise detection, volume difference."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from .lesions import label_components, remove_small
from .preprocess.resample import resample_like
from .volume import Volume


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
    return Scores(dice(pred, ref), sens, prec, f1, n_ref, n_pred, det, tp, rv, pv, abs(pv - rv))


def evaluate(pred: Volume, ref: Volume, connectivity: int = 26, min_lesion_mm3: float = 0.0) -> Scores:
    """Score ``pred`` against ``ref``; ``pred`` is resampled onto ``ref``'s grid by world coordinates.

    ``min_lesion_mm3`` > 0 drops smaller connected lesions from both masks first (a common
    convention, e.g. 3 mm^3, so that specks do not count as lesions).
    """
    if not pred.same_grid(ref):
        pred = resample_like(pred.with_data((pred.data > 0).astype(np.float32)), ref, order=0)
    p, r = pred.data > 0, ref.data > 0
    if min_lesion_mm3 > 0:
        min_vox = int(np.ceil(min_lesion_mm3 / (ref.voxel_volume_ml * 1000.0) - 1e-9))
        p, r = remove_small(p, min_vox, connectivity), remove_small(r, min_vox, connectivity)
    return score_arrays(p, r, ref.voxel_volume_ml, connectivity)
