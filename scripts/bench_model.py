#!/usr/bin/env python
"""Benchmark the lesion model: cross-validated scores and inference time.

Cross-validated scores (leave-one-subject-out fold predictions from the GPU run)::

    .venv/bin/python scripts/bench_model.py cv --runs .devdata/gpu/runs --data ../shared/data

Each held-out probability map goes back to the native FLAIR grid exactly like
``mslesion analyze`` does (linear resampling, model threshold, lesions smaller than
3 mm^3 removed) and is scored with :func:`mslesion.metrics.evaluate` against every
rater's mask on the rater's own grid; ISBI scores are averaged over both raters.

fp32 vs mixed precision (bf16 on CPUs with native bf16) on the prepared cases::

    .venv/bin/python scripts/bench_model.py precision --model models/mslesion-flair-v1

Inference time on a 182x218x182 volume (ljubljana patient07 working grid)::

    .venv/bin/python scripts/bench_model.py timing --model models/mslesion-flair-v1 --device cpu --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASE_FOLDERS = {
    "ljubljana_patient07": ("brain_ms/ljubljana/patient07", ["lesions"]),
    "ljubljana_patient26": ("brain_ms/ljubljana/patient26", ["lesions"]),
    "isbi_training01": ("brain_ms/isbi2015/training01", ["lesions_rater1", "lesions_rater2"]),
    "isbi_training02": ("brain_ms/isbi2015/training02", ["lesions_rater1", "lesions_rater2"]),
    "isbi_training03": ("brain_ms/isbi2015/training03", ["lesions_rater1", "lesions_rater2"]),
    **{f"mslesseg_{c}": (f"brain_ms/mslesseg/{c}", ["lesions"]) for c in ("P14_T1", "P14_T2", "P14_T3", "P18_T1",
                                                                           "P39_T1")},
}
#: subject of each case, as prepare_training_data.py and train.py --holdout name them (cross-validation folds are
#: by subject: P14's visits stay together; an MSLesSeg case is <subject>_<visit>)
SUBJECT = {c: (c.rsplit("_", 1)[0] if c.startswith("mslesseg_") else c) for c in CASE_FOLDERS}


def prepare_scoring(prob_crop: np.ndarray, npz: Path, data: Path, case: str) -> SimpleNamespace:
    """The per-case part of scoring: the probability, slab peaks and brain on the native FLAIR grid, and the
    raters' masks (read once; :func:`score_prepared` then scores any threshold / min_peak on them)."""
    from scipy import ndimage

    from mslesion.io import load_volume
    from mslesion.preprocess.brain_rim import trim_bright_rim
    from mslesion.preprocess.resample import resample_like, slab_peak
    from mslesion.volume import Volume

    with np.load(npz) as z:
        shape, affine, offset = tuple(z["work_shape"]), z["work_affine"], z["offset"]
        flair_z, brain_crop = z["image"][0].astype(np.float32), z["brain"] > 0
        rim_done = "rim_trimmed_ml" in z.files   # prepared with the rim trim already (prepare_training_data.py)
    box = tuple(slice(o, o + s) for o, s in zip(offset, prob_crop.shape))
    # as `mslesion analyze` does: the brain mask without the scalp rim it took in, no probability beyond
    # 2 voxels outside it, no lesion mostly outside it, and min_peak read over each thick voxel's slab
    if not rim_done:
        brain_crop = trim_bright_rim(flair_z, brain_crop, (1.0, 1.0, 1.0))
    work, brain = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    work[box] = prob_crop * ndimage.binary_dilation(brain_crop, iterations=2)
    brain[box] = brain_crop
    folder, raters = CASE_FOLDERS[case]
    native = load_volume(data / folder / "flair.nii.gz", role="FLAIR")
    peak = slab_peak(Volume(work, affine), native)
    prob = resample_like(Volume(work, affine), native, order=1)
    refs = {}
    for r in raters:
        ref = load_volume(data / folder / f"{r}.nii.gz", role="lesion mask")
        refs[r] = ref.with_data((ref.data > 0).astype(np.uint8))
    return SimpleNamespace(case=case, prob=prob,
                           peaks=prob if peak is None else resample_like(peak, native, order=1),
                           inside=resample_like(Volume(brain, affine), native, order=1).data >= 0.5, refs=refs)


def score_prepared(prep: SimpleNamespace, threshold: float, min_mm3: float = 3.0, min_peak: float = 0.0) -> dict:
    """Score one prepared case (:func:`prepare_scoring`) at one threshold / lesion size / min_peak setting."""
    from mslesion.lesions import binarize, drop_outside
    from mslesion.metrics import detection_by_size, evaluate
    from mslesion.preprocess.resample import resample_like

    prob = prep.prob
    min_vox = max(1, int(round(min_mm3 / (prob.voxel_volume_ml * 1000.0))))
    mask = prob.with_data(drop_outside(binarize(prob.data, threshold, min_vox, min_peak, peaks=prep.peaks.data),
                                       prep.inside)[0].astype(np.uint8))
    per_rater = {}
    for r, ref in prep.refs.items():
        per_rater[r] = evaluate(mask, ref).as_dict()
        on_ref = mask if mask.same_grid(ref) else resample_like(mask.with_data(mask.data.astype(np.float32)), ref,
                                                                order=0)
        per_rater[r]["by_size"] = detection_by_size(on_ref.data > 0, ref.data > 0, ref.voxel_volume_ml)
    mean = {k: float(np.mean([s[k] for s in per_rater.values()])) for k in ("dice", "lesion_f1", "lesion_sensitivity",
                                                                           "lesion_precision")}
    return {"case": prep.case, **{k: round(v, 4) for k, v in mean.items()}, "per_rater": per_rater}


def score_prediction(prob_crop: np.ndarray, npz: Path, data: Path, case: str, threshold: float,
                     min_mm3: float = 3.0, min_peak: float = 0.0) -> dict:
    """Score one held-out probability map (working-grid crop) at one setting, as `mslesion analyze` would mask it."""
    return score_prepared(prepare_scoring(prob_crop, npz, data, case), threshold, min_mm3, min_peak)


def cmd_cv(args: argparse.Namespace) -> int:
    results = {}
    for prefix in args.prefixes:
        for variant in ("accurate", "fast"):
            rows = []
            for run in sorted(args.runs.glob(f"{prefix}_*")):
                for pred in sorted(run.glob("pred_*.npz")):
                    case = pred.stem[len("pred_"):]
                    with np.load(pred) as z:
                        prob = z[f"{variant}_u8"].astype(np.float32) / 255.0
                    rows.append(score_prediction(prob, args.train_data / f"{case}.npz", args.data, case,
                                                 args.threshold))
            if not rows:
                continue
            print(f"\n== model '{prefix}', inference '{variant}', leave-one-subject-out, threshold {args.threshold}")
            print(f"{'case':22s} {'dice':>6s} {'F1':>6s} {'sens':>6s} {'prec':>6s}  (ISBI: mean of 2 raters)")
            for r in rows:
                print(f"{r['case']:22s} {r['dice']:6.3f} {r['lesion_f1']:6.3f} {r['lesion_sensitivity']:6.3f} "
                      f"{r['lesion_precision']:6.3f}")
            md, mf = np.mean([r["dice"] for r in rows]), np.mean([r["lesion_f1"] for r in rows])
            print(f"{'MEAN':22s} {md:6.3f} {mf:6.3f}")
            results[f"{prefix}/{variant}"] = {"cases": rows, "mean_dice": round(float(md), 4),
                                             "mean_lesion_f1": round(float(mf), 4)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def load_case(npz: Path) -> SimpleNamespace:
    """A prepared training case (``scripts/prepare_training_data.py``) as a Preprocessed-like object."""
    from mslesion.volume import Volume

    with np.load(npz) as z:
        shape, affine, offset = tuple(int(s) for s in z["work_shape"]), z["work_affine"], z["offset"]
        image, present, brain = z["image"].astype(np.float32), z["present"], z["brain"]
    crop = tuple(slice(o, o + s) for o, s in zip(offset, brain.shape))
    images = {}
    for i, name in enumerate(("flair", "t1", "t2")):
        if present[i]:
            full = np.zeros(shape, np.float32)
            full[crop] = image[i]
            images[name] = Volume(full, affine)
    mask = np.zeros(shape, np.uint8)
    mask[crop] = brain
    return SimpleNamespace(images=images, flair=images["flair"], brain_mask=Volume(mask, affine), crop=crop)


def cmd_precision(args: argparse.Namespace) -> int:
    """fp32 vs mixed-precision inference on the prepared cases: agreement and scores of both.

    The released model was trained on these cases, so the scores are in-sample: they only
    show whether mixed precision changes the result, not how good the model is.
    """
    import torch

    torch.set_num_threads(args.threads)
    from mslesion.model import ModelSegmenter
    from mslesion.model.inference import amp_dtype
    from mslesion.model.store import read_spec

    spec = read_spec(args.model)
    segs = {"fp32": ModelSegmenter(spec, device=args.device, amp=False),
            "amp": ModelSegmenter(spec, device=args.device, amp=True)}
    print(f"model {spec.model_id} on {segs['amp'].device}: amp = {amp_dtype(segs['amp'].device, True) or 'fp32'}")
    print(f"{'case':22s} {'agree':>6s} {'maxdiff':>8s} {'s_fp32':>7s} {'s_amp':>7s} {'dice32':>7s} {'diceamp':>7s} "
          f"{'F1_32':>6s} {'F1amp':>6s}")
    for npz in sorted(args.train_data.glob("*.npz")):
        case = npz.stem
        if case not in CASE_FOLDERS:
            continue
        pre = load_case(npz)
        out = {}
        for name, seg in segs.items():
            t0 = time.perf_counter()
            prob = seg.predict(pre).data[pre.crop]
            out[name] = (prob, time.perf_counter() - t0, score_prediction(prob, npz, args.data, case, spec.threshold))
        a, b = out["fp32"][0] >= spec.threshold, out["amp"][0] >= spec.threshold
        agree = 2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))
        diff = float(np.abs(out["fp32"][0] - out["amp"][0]).max())
        s32, sam = out["fp32"][2], out["amp"][2]
        print(f"{case:22s} {agree:6.4f} {diff:8.4f} {out['fp32'][1]:7.1f} {out['amp'][1]:7.1f} {s32['dice']:7.3f} "
              f"{sam['dice']:7.3f} {s32['lesion_f1']:6.3f} {sam['lesion_f1']:6.3f}")
    return 0


def cmd_timing(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    from mslesion.model import ModelSegmenter
    from mslesion.model.inference import amp_dtype
    from mslesion.model.store import read_spec

    pre = load_case(args.case)
    spec = read_spec(args.model)
    shape = pre.flair.shape
    for tta in ([False, True] if args.both_tta else [None]):
        seg = ModelSegmenter(spec, device=args.device, tta=tta, amp=not args.fp32)
        if seg.device.type != "cpu":
            seg.predict(pre)  # warm-up (cuDNN autotune, allocator)
        times, cpu = [], []
        for _ in range(args.repeats):
            if seg.device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            prob = seg.predict(pre)
            if seg.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        print(json.dumps({"model": spec.model_id, "device": str(seg.device), "threads": args.threads,
                          "volume_shape": list(shape), "tta": seg.tta, "precision": str(amp_dtype(seg.device, seg.amp) or torch.float32), "window": list(seg.window),
                          "overlap": seg.overlap, "seconds": [round(t, 3) for t in times],
                          "mean_s": round(float(np.mean(times)), 3),
                          "process_cpu_s": [round(c, 1) for c in cpu], "load_avg_1min": round(os.getloadavg()[0], 1), "voxels_over_0.5": int((prob.data >= 0.5).sum())}))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    cv = sub.add_parser("cv", help="score leave-one-subject-out predictions")
    cv.add_argument("--runs", type=Path, required=True, help="folder with <prefix>_<subject>/pred_<case>.npz")
    cv.add_argument("--prefixes", nargs="+", default=["cvflair", "cvmulti"])
    cv.add_argument("--train-data", type=Path, default=Path(".devdata/train_v3"))
    cv.add_argument("--data", type=Path, default=Path("../shared/data"))
    cv.add_argument("--threshold", type=float, default=0.5)
    cv.add_argument("--json", type=Path)
    tm = sub.add_parser("timing", help="time ModelSegmenter.predict on a 182x218x182 working grid")
    tm.add_argument("--model", type=Path, required=True)
    tm.add_argument("--device", default="cpu")
    tm.add_argument("--threads", type=int, default=2)
    tm.add_argument("--repeats", type=int, default=2)
    tm.add_argument("--both-tta", action="store_true")
    tm.add_argument("--fp32", action="store_true", help="no mixed precision (bf16 autocast on CPUs with native bf16)")
    tm.add_argument("--case", type=Path, default=Path(".devdata/train_v3/ljubljana_patient07.npz"))
    pr = sub.add_parser("precision", help="fp32 vs mixed precision: mask agreement and in-sample scores")
    pr.add_argument("--model", type=Path, default=Path("models/mslesion-flair-v3"))
    pr.add_argument("--device", default="cpu")
    pr.add_argument("--threads", type=int, default=2)
    pr.add_argument("--train-data", type=Path, default=Path(".devdata/train_v3"))
    pr.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = ap.parse_args(argv)
    return {"cv": cmd_cv, "timing": cmd_timing, "precision": cmd_precision}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
