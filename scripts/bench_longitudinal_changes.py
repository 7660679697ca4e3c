#!/usr/bin/env python
"""Score `compare`'s new / enlarging / disappearing calls lesion-wise (issue 21).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_longitudinal_changes.py [--cache .devdata/lg21] [--reuse]

Pairs:
* MSLesSeg P14 T1->T2 and T2->T3 (one MNI space, expert mask per visit).  Reference *new* =
  components of the later mask touching no earlier lesion; *disappearing* = the reverse;
  *enlarging* = later lesions touching an earlier one whose part outside the earlier mask is
  >= 6 mm^3 and >= 20 % of it (the compare defaults), scored on that grown part.
* patient12 against its change ground truth (common space, distributor transforms verified by
  `scripts/bench_longitudinal.py`): new+enlarging and all changes.

Also prints, independent of the pipeline, the FLAIR change (robust z, brain p1-p99 span = 4) inside
each P14 mask-new and mask-disappeared lesion.  `--cache DIR` stores the registered images and
probability maps of each pair, `--reuse` reruns only the change detection from them.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
    os.environ.setdefault(var, "1")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import mslesion.longitudinal.compare as cmp  # noqa: E402
from mslesion.lesions import label_components  # noqa: E402
from mslesion.longitudinal import ChangeOptions, read_itk_transform  # noqa: E402
from mslesion.metrics import score_arrays  # noqa: E402
from mslesion.pipeline import AnalyzeOptions  # noqa: E402
from mslesion.preprocess.normalize import robust_zscore  # noqa: E402
from mslesion.preprocess.resample import resample_like  # noqa: E402
from mslesion.volume import Volume  # noqa: E402

DATA = ROOT / ".." / "shared" / "data" / "brain_ms"
P14 = DATA / "mslesseg"
P12 = DATA / "longitudinal" / "patient12"
PAIRS = {"P14_T1-T2": ("T1", "T2"), "P14_T2-T3": ("T2", "T3"), "patient12": None}


def _mask(visit: str) -> np.ndarray:
    return np.asarray(nib.load(str(P14 / f"P14_{visit}" / "lesions.nii.gz")).dataobj) > 0


def p14_references(a: str, b: str) -> dict[str, np.ndarray]:
    """Reference new, disappearing and enlarging (grown part) masks from the two expert masks."""
    la, lb = _mask(a), _mask(b)
    lab_b, nb = label_components(lb)
    lab_a, na = label_components(la)
    new = np.isin(lab_b, [i for i in range(1, nb + 1) if not la[lab_b == i].any()])
    gone = np.isin(lab_a, [i for i in range(1, na + 1) if not lb[lab_a == i].any()])
    grown = np.zeros_like(lb)
    for i in range(1, nb + 1):
        comp = lab_b == i
        if not la[comp].any():
            continue
        earlier = np.isin(lab_a, np.setdiff1d(np.unique(lab_a[comp]), [0]))
        part = comp & ~earlier
        if part.sum() >= 6 and part.sum() >= 0.2 * earlier.sum():
            grown |= part
    return {"new": new, "disappearing": gone, "enlarging": grown}


def p14_signal(a: str, b: str) -> dict:
    """Mean FLAIR change (robust z in the joint brain mask) inside each mask-new / mask-gone lesion."""
    f = {v: np.asarray(nib.load(str(P14 / f"P14_{v}" / "flair.nii.gz")).dataobj).astype(np.float32) for v in (a, b)}
    brain = (f[a] > 0) & (f[b] > 0)
    d = robust_zscore(f[b], brain) - robust_zscore(f[a], brain)
    refs = p14_references(a, b)
    out = {}
    for name in ("new", "disappearing"):
        lab, n = label_components(refs[name])
        out[name] = sorted(round(float(d[lab == i].mean()), 2) for i in range(1, n + 1))
    persisting = _mask(b) & ~refs["new"]
    lab, n = label_components(persisting)
    out["persisting_mean"] = round(float(np.mean([d[lab == i].mean() for i in range(1, n + 1)])), 3)
    return out


def run_pair(name: str, cache: Path | None, reuse: bool, options: ChangeOptions,
             model: str = "auto") -> tuple[dict, object, float]:
    """(cached detection inputs, ChangeMaps, seconds) for one pair; runs the whole compare unless reused."""
    path = cache / f"{name}.pkl" if cache else None
    if reuse and path and path.exists():
        with open(path, "rb") as fh:
            c = pickle.load(fh)
        t0 = time.perf_counter()
    else:
        if name == "patient12":
            base, follow = P12 / "study1_flair.nii.gz", P12 / "study2_flair.nii.gz"
        else:
            a, b = PAIRS[name]
            base, follow = P14 / f"P14_{a}" / "flair.nii.gz", P14 / f"P14_{b}" / "flair.nii.gz"
        c = {}
        detect, pre = cmp._detect_in_box, cmp.preprocess

        def keep_detect(f0, f1, p0, p1, brain, spacing, threshold, opts):  # record the detector's inputs
            c.update(f0=f0, f1=f1, p0=p0, p1=p1, brain=brain, spacing=spacing, threshold=threshold)
            return detect(f0, f1, p0, p1, brain, spacing, threshold, opts)

        def keep_pre(*a, **k):
            res = pre(*a, **k)
            c.setdefault("native", res.native)
            c.setdefault("work_affine", res.flair.affine)
            return res

        cmp._detect_in_box, cmp.preprocess = keep_detect, keep_pre
        try:
            t0 = time.perf_counter()
            result = cmp.compare_scans({"flair": base}, {"flair": follow}, None,
                                       cmp.CompareOptions(analyze=AnalyzeOptions(model=model), change=options))
            c["timings"] = result.report["timings_s"]
        finally:
            cmp._detect_in_box, cmp.preprocess = detect, pre
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                pickle.dump(c, fh)
        t0 = time.perf_counter()
    changes = cmp._detect_in_box(c["f0"], c["f1"], c["p0"], c["p1"], c["brain"], c["spacing"], c["threshold"],
                                 options)
    return c, changes, time.perf_counter() - t0


def on_native(c: dict, arr: np.ndarray) -> np.ndarray:
    return np.rint(resample_like(Volume(arr.astype(np.float32), c["work_affine"]), c["native"], order=0).data)


def _score(pred: np.ndarray, ref: np.ndarray) -> dict:
    s = score_arrays(pred > 0, ref > 0, 0.001)
    return {"f1": round(s.lesion_f1, 3), "sens": round(s.lesion_sensitivity, 3), "prec": round(s.lesion_precision, 3),
            "found": f"{s.detected_ref_lesions}/{s.ref_lesions}", "calls": s.pred_lesions,
            "false_calls": s.pred_lesions - s.true_pred_lesions}


def score_p14(name: str, c: dict, changes) -> dict:
    a, b = PAIRS[name]
    refs = p14_references(a, b)
    kinds = on_native(c, changes.kinds)
    return {"new": _score(kinds == 1, refs["new"]),
            "new_or_enlarging_vs_new": _score(np.isin(kinds, (1, 2)), refs["new"]),
            "enlarging_vs_grown": _score(kinds == 2, refs["enlarging"]),
            "disappearing": _score(kinds == 4, refs["disappearing"]),
            "shrinking_or_disappearing_vs_disappearing": _score(np.isin(kinds, (3, 4)), refs["disappearing"])}


def score_patient12(c: dict, changes) -> dict:
    from bench_longitudinal import to_grid

    gt = nib.load(str(P12 / "new_lesions_common_space.nii.gz"))
    ref = Volume(np.asarray(gt.dataobj).astype(np.float32), gt.affine)
    tx = read_itk_transform(P12 / "study1_flair_to_common_space.txt")
    kinds = np.rint(to_grid(c["native"].with_data(on_native(c, changes.kinds).astype(np.float32)), ref, tx, 0))
    return {"new_or_enlarging": _score(np.isin(kinds, (1, 2)), ref.data), "all_changes": _score(kinds > 0, ref.data)}


def _dit(changes, dit_verdict) -> dict:
    """The DIT verdict from the change table (regions are not located here)."""
    from mslesion.lesions import Lesion

    lesions = [Lesion(id=t.label, voxels=t.voxels, volume_ml=t.change_mm3 / 1000, centroid_x=0.0, centroid_y=0.0,
                      centroid_z=0.0,
                      extra={"change": t.kind, "evidence_supported": t.evidence.get("supported")})
               for t in changes.table]
    v = dit_verdict(changes, lesions)
    return {"verdict": v["verdict"], "supporting": len(v["supporting_lesions"]), "reason": v["reason"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=None, help="folder for the per-pair detection inputs")
    ap.add_argument("--reuse", action="store_true", help="rerun only the change detection from --cache")
    ap.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    ap.add_argument("--no-evidence", action="store_true", help="score the calls without the two-scan evidence")
    ap.add_argument("--model", default="auto", help="lesion model of the compare (default: the default model)")
    args = ap.parse_args()
    options = ChangeOptions()
    options.evidence.required = not args.no_evidence
    from mslesion.longitudinal.verdict import dit_verdict

    for name in args.pairs:
        c, changes, secs = run_pair(name, args.cache, args.reuse, options, args.model)
        counts = {k: changes.count(k) for k in ("new", "enlarging", "shrinking", "disappearing")}
        rejected = {}
        for cand in changes.rejected:
            rejected[cand.kind] = rejected.get(cand.kind, 0) + 1
        scores = score_patient12(c, changes) if name == "patient12" else score_p14(name, c, changes)
        out = {"pair": name, "model": args.model, "calls": counts, "rejected_candidates": rejected, "scores": scores,
               "dit": _dit(changes, dit_verdict), "detect_s": round(secs, 1),
               "compare_timings_s": c.get("timings")}
        if name != "patient12":
            out["reference_signal_robust_z"] = p14_signal(*PAIRS[name])
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
