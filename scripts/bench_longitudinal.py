#!/usr/bin/env python
"""Benchmark `compare` on patient12 (issue 8): accuracy in the ground truth's common space, and speed.

    .venv/bin/python scripts/bench_longitudinal.py [--data ../shared/data/brain_ms/longitudinal/patient12]

1. Verifies the distributor's transforms (studyN_flair_to_common_space.txt) against the images:
   both FLAIRs are resampled into the common space under three readings of the file (ITK
   fixed->moving in LPS, its inverse, and no transform) and the in-brain correlation of the two
   studies is printed; the reading is trusted only when it aligns them far better than the others.
2. Runs `mslesion compare` (study1 = baseline, study2 = follow-up) and one `mslesion analyze`
   (study2 FLAIR), each as a fresh CLI process with the same thread limits, timing both.
3. Maps the new/enlarging mask (baseline grid) into the common space with the verified transform
   and scores it with `mslesion.metrics.evaluate` (Dice, lesion F1); also scores all changes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
    os.environ.setdefault(var, "2")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from mslesion.io import load_volume  # noqa: E402
from mslesion.longitudinal import read_itk_transform  # noqa: E402
from mslesion.metrics import evaluate  # noqa: E402
from mslesion.volume import Volume  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "brain_ms" / "longitudinal" / "patient12"


def to_grid(moving: Volume, ref: Volume, transform: np.ndarray, order: int) -> np.ndarray:
    """Resample ``moving`` onto ``ref``'s grid; ``transform`` maps ref world (RAS) -> moving world."""
    vox = np.linalg.inv(moving.affine) @ transform @ ref.affine
    return ndimage.affine_transform(moving.data.astype(np.float32), vox[:3, :3], vox[:3, 3],
                                    output_shape=ref.shape, order=order, cval=0.0)


def verify_transforms(data: Path, ref: Volume, brain: np.ndarray) -> dict[str, np.ndarray]:
    """Print how well each reading of the transform files aligns the two studies; return the trusted one."""
    flairs = {s: load_volume(data / f"{s}_flair.nii.gz", role="FLAIR") for s in ("study1", "study2")}
    itk = {s: read_itk_transform(data / f"{s}_flair_to_common_space.txt") for s in flairs}
    readings = {"itk_fixed_to_moving": itk, "inverse": {s: np.linalg.inv(t) for s, t in itk.items()},
                "identity": {s: np.eye(4) for s in itk}}
    corr = {}
    for name, tx in readings.items():
        a, b = (to_grid(flairs[s], ref, tx[s], 1)[brain] for s in ("study1", "study2"))
        corr[name] = float(np.corrcoef(a, b)[0, 1])
    print("transform check (in-brain correlation of study1 vs study2 in common space):",
          json.dumps({k: round(v, 4) for k, v in corr.items()}))
    best = max(corr, key=corr.get)
    others = max(v for k, v in corr.items() if k != best)
    if best != "itk_fixed_to_moving" or corr[best] < 0.9 or corr[best] - others < 0.2:
        raise SystemExit(f"distributor transforms not trusted (best reading {best}, r={corr[best]:.3f})")
    print(f"-> distributor transforms verified: ITK text, LPS mm, common-space point -> study point (r={corr[best]:.3f})")
    return readings[best]


MSLESION = [sys.executable, "-c", "import sys; from mslesion.cli import main; sys.exit(main())"]


def timed(cmd: list[str]) -> float:
    """Wall-clock seconds of one CLI run in a fresh process (as a user would run it)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:5])} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    print(f"{cmd[3]}: {elapsed:.1f} s -> {proc.stdout.strip()}", flush=True)
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: a temp folder)")
    ap.add_argument("--model", default="auto")
    ap.add_argument("--t1", action="store_true", help="also give both T1 images")
    ap.add_argument("--no-timing", action="store_true", help="skip the analyze timing run")
    ap.add_argument("--reference-brain-mask", action="store_true",
                    help="give compare the dataset's brain mask (mapped to study1 with the verified transform) "
                         "instead of automatic brain extraction, to score detection apart from skull stripping")
    args = ap.parse_args()
    data = args.data.resolve()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_longitudinal_"))
    gt_img = nib.load(str(data / "new_lesions_common_space.nii.gz"))
    ref = Volume(np.asarray(gt_img.dataobj).astype(np.float32), gt_img.affine)
    brain = np.asarray(nib.load(str(data / "brainmask_common_space.nii.gz")).dataobj) > 0
    tx = verify_transforms(data, ref, brain)

    compare_out = out / "compare"
    cmd = [*MSLESION, "compare", "--baseline-flair", str(data / "study1_flair.nii.gz"),
           "--followup-flair", str(data / "study2_flair.nii.gz"), "--out", str(compare_out),
           "--model", args.model, "--device", "cpu"]
    if args.t1:
        cmd += ["--baseline-t1", str(data / "study1_t1.nii.gz"), "--followup-t1", str(data / "study2_t1.nii.gz")]
    if args.reference_brain_mask:
        from mslesion.io import save_volume

        s1 = load_volume(data / "study1_flair.nii.gz", role="FLAIR")
        mask = to_grid(ref.with_data(brain.astype(np.float32)), s1, np.linalg.inv(tx["study1"]), 0)
        cmd += ["--brain-mask", str(save_volume(s1.with_data(mask.astype(np.uint8)), out / "study1_brainmask.nii.gz",
                                               np.uint8))]
    t_analyze = None
    if not args.no_timing:
        acmd = [*MSLESION, "analyze", "--flair", str(data / "study2_flair.nii.gz"), "--out", str(out / "analyze"),
                "--model", args.model, "--device", "cpu"]
        if args.t1:
            acmd += ["--t1", str(data / "study2_t1.nii.gz")]
        t_analyze = timed(acmd)
    t_compare = timed(cmd)
    report = json.loads((compare_out / "compare_report.json").read_text())
    kimg = nib.load(str(compare_out / "changes_baseline.nii.gz"))
    base_vol = Volume(np.asarray(kimg.dataobj).astype(np.float32), kimg.affine)
    kinds_common = to_grid(base_vol, ref, tx["study1"], 0)
    scores = {}
    for name, keep in (("new_enlarging", (1, 2)), ("all_changes", (1, 2, 3, 4)), ("decreases", (3, 4))):
        pred = ref.with_data(np.isin(np.rint(kinds_common), keep).astype(np.float32))
        scores[name] = evaluate(pred, ref).as_dict()
    gt_inc = _gt_direction(data, ref, tx, brain)
    print("ground-truth lesions by intensity change study1->study2 (mean z of FLAIR difference):",
          json.dumps(gt_inc))
    summary = {
        "model": report["model"],
        "brain_mask": "dataset reference" if args.reference_brain_mask else "automatic (preprocess)",
        "changes": report["changes"],
        "rejected_candidates": report.get("rejected_candidates"),
        "dissemination_in_time": {k: report["new_lesion_evidence"]["dissemination_in_time"][k]
                                  for k in ("verdict", "reason")},
        "registration": {k: v for k, v in report["registration"].items() if k != "followup_to_baseline_ras"},
        "scores_common_space": scores,
        "timing_s": {"compare": round(t_compare, 2), "analyze": None if t_analyze is None else round(t_analyze, 2),
                     "ratio": None if not t_analyze else round(t_compare / t_analyze, 3),
                     "compare_breakdown": report["timings_s"]},
        "out": str(out),
    }
    print(json.dumps(summary, indent=2))
    return 0


def _gt_direction(data: Path, ref: Volume, tx: dict[str, np.ndarray], brain: np.ndarray) -> dict[str, int]:
    """How many ground-truth lesions get brighter / darker on FLAIR from study1 to study2."""
    from mslesion.lesions import label_components
    from mslesion.preprocess.normalize import robust_zscore

    f = {}
    for s in ("study1", "study2"):
        img = to_grid(load_volume(data / f"{s}_flair.nii.gz", role="FLAIR"), ref, tx[s], 1)
        f[s] = robust_zscore(img, brain)
    d = f["study2"] - f["study1"]
    sd = float(np.median(np.abs(d[brain] - np.median(d[brain])))) * 1.4826
    labels, n = label_components(ref.data > 0)
    means = ndimage.mean(d / sd, labels, np.arange(1, n + 1)) if n else []
    return {"lesions": n, "brighter(z>1)": int(sum(m > 1 for m in means)), "darker(z<-1)": int(sum(m < -1 for m in means)),
            "unclear": int(sum(-1 <= m <= 1 for m in means))}


if __name__ == "__main__":
    sys.exit(main())
