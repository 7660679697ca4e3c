#!/usr/bin/env python
"""How much FLAIR change signal do patient12's ground-truth change lesions carry? (issue 8)

Independent of `mslesion compare`: both raw FLAIRs are N4-corrected and resampled once (cubic)
into the ground truth's common space with the distributor's own transforms (verified in
`scripts/bench_longitudinal.py`), normalised inside the distributor's brain mask, and
subtracted.  Prints

  * the background noise of the (in-plane smoothed) difference image: |D| percentiles in the
    brain away from the ground truth;
  * per ground-truth lesion: the sign of its mean change and how many lesions reach beyond the
    background's 99.9th percentile;
  * an upper bound for plain difference thresholding: the best lesion F1 over a grid of
    thresholds / minimum sizes / smoothing chosen *with* the ground truth (an oracle choice).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/longitudinal_signal.py
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mslesion.io import load_volume  # noqa: E402
from mslesion.longitudinal.transforms import read_itk_transform  # noqa: E402
from mslesion.metrics import evaluate  # noqa: E402
from mslesion.preprocess.bias import n4_correct  # noqa: E402
from mslesion.preprocess.brain import foreground_mask  # noqa: E402
from mslesion.preprocess.normalize import robust_zscore  # noqa: E402
from mslesion.preprocess.registration import resample_moving  # noqa: E402
from mslesion.volume import Volume  # noqa: E402

PATIENT = ROOT / ".." / "shared" / "data" / "brain_ms" / "longitudinal" / "patient12"
CUBE = np.ones((3, 3, 3), bool)


def common_space_flairs(folder: Path) -> tuple[np.ndarray, np.ndarray, Volume, np.ndarray]:
    gt = load_volume(folder / "new_lesions_common_space.nii.gz")
    brain = load_volume(folder / "brainmask_common_space.nii.gz").data > 0
    out = []
    for study in ("study1", "study2"):
        vol = load_volume(folder / f"{study}_flair.nii.gz")
        vol = n4_correct(vol, foreground_mask(vol.data))
        moved = resample_moving(vol, gt, read_itk_transform(folder / f"{study}_flair_to_common_space.txt"), order=3)
        out.append(robust_zscore(moved.data, brain))
    return out[0], out[1], gt.with_data((gt.data > 0).astype(np.uint8)), brain


def smoothed(diff: np.ndarray, sigma: float) -> np.ndarray:
    """In-plane Gaussian (voxels), none across the thick slices."""
    return ndimage.gaussian_filter(diff, (sigma, sigma, 0)) if sigma else diff


def signal_report(diff: np.ndarray, gt: np.ndarray, brain: np.ndarray) -> None:
    labels, n = ndimage.label(gt, CUBE)
    background = ndimage.binary_erosion(brain, iterations=3) & ~ndimage.binary_dilation(gt, iterations=2)
    for sigma in (0.0, 0.7, 1.0):
        d = smoothed(diff, sigma)
        q = np.percentile(np.abs(d[background]), [50, 90, 99, 99.9])
        ids = range(1, n + 1)
        means = np.asarray(ndimage.mean(d, labels, ids))
        hi, lo = np.asarray(ndimage.maximum(d, labels, ids)), np.asarray(ndimage.minimum(d, labels, ids))
        beyond = int(np.sum((hi > q[3]) | (lo < -q[3])))
        print(f"[signal] in-plane sigma {sigma} vox: background |D| p50/p90/p99/p99.9 = "
              f"{' / '.join(f'{v:.3f}' for v in q)}; {n} GT lesions: {int(np.sum(means > 0))} brighter, "
              f"{int(np.sum(means < 0))} darker, median |mean change| {np.median(np.abs(means)):.3f}, "
              f"{int(np.sum(np.abs(means) < q[2]))} with |mean| below the background p99, "
              f"{beyond} reach beyond the background p99.9")


def oracle_threshold_bound(diff: np.ndarray, gt: Volume, brain: np.ndarray) -> None:
    inner = ndimage.binary_erosion(brain, iterations=2)
    rows = []
    for sigma, thr, min_vox, signed in itertools.product((0.7, 1.0), (0.5, 0.6, 0.75, 0.9, 1.1, 1.3), (5, 15, 30),
                                                         (True, False)):
        d = smoothed(diff, sigma)
        a = d if signed else np.abs(d)
        low = (a > 0.6 * thr) & inner
        labels, n = ndimage.label(low, CUBE)
        if n == 0:
            continue
        ids = range(1, n + 1)
        keep = np.zeros(n + 1, bool)
        keep[1:] = (np.asarray(ndimage.maximum(a, labels, ids)) > thr) & (np.asarray(ndimage.sum(low, labels, ids)) >= min_vox)
        s = evaluate(gt.with_data(keep[labels].astype(np.uint8)), gt)
        rows.append((s.lesion_f1, s.lesion_sensitivity, s.lesion_precision, sigma, thr, min_vox,
                     "increase" if signed else "|change|"))
    rows.sort(reverse=True)
    for f1, sens, prec, sigma, thr, min_vox, kind in rows[:5]:
        print(f"[oracle] {kind} > {thr} (hysteresis 0.6x), >= {min_vox} voxels, sigma {sigma}: lesion F1 {f1:.3f} "
              f"(sens {sens:.3f}, prec {prec:.3f})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=PATIENT)
    args = ap.parse_args()
    f0, f1, gt, brain = common_space_flairs(args.data)
    diff = f1 - f0
    signal_report(diff, gt.data > 0, brain)
    oracle_threshold_bound(diff, gt, brain)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
