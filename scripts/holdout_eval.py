#!/usr/bin/env python
"""Score lesion models on cases they did not see: predict once, then score many settings.

Predict the held-out cases of a model (or the mean of several models) and keep the
probability maps (working-grid crop, float16) under ``.devdata/preds/<tag>/``::

    .venv/bin/python scripts/holdout_eval.py predict --tag b0 --model ../shared/gpu_runs/2026-11-30/flair-b0 \\
        --cases mslesseg_P14_T1 mslesseg_P14_T2 mslesseg_P14_T3 mslesseg_P18_T1 mslesseg_P39_T1

``--subject S`` predicts every case of subject S (P14's three visits).  ``--fold-models DIR`` instead takes, for each case, the model in ``DIR/<fold>`` whose
``train_summary.json`` holds the case's subject out (leave-one-subject-out predictions).

Score them exactly as ``mslesion analyze`` thresholds them (probability back on the native
FLAIR grid, threshold, lesions < 3 mm^3 removed), against every rater on the rater's grid::

    .venv/bin/python scripts/holdout_eval.py score --tag b0 --thresholds 0.3 0.4 0.5 --min-peak 0.6 0.8 --json F

Printed per case: Dice, lesion F1, sensitivity, precision (ISBI: mean of both raters); then
pooled lesion-wise sensitivity by size class (< 30, 30-100, > 100 mm^3), pooled precision,
and the calibration of the probability map (reliability table, expected calibration error)
on the working grid inside the brain mask.

Pool the ``--json`` files of several leave-one-subject-out folds (each fold's own held-out scans),
so that the threshold and min_peak are chosen on cross-validation: per subject, then the mean
over subjects, for every setting all folds scored (``notes/cv/`` keeps the folds' files, named by
recipe and held-out subject, so that later sessions pool them without training again)::

    .venv/bin/python scripts/holdout_eval.py pool notes/cv/v6-recipe_*.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_model import CASE_FOLDERS, SUBJECT, load_case, prepare_scoring, score_prepared  # noqa: E402

PREDS = Path(".devdata/preds")


def _segmenter(folder: Path, device: str, tta: str, overlap: float | None, window: list[int] | None = None):
    from mslesion.model import ModelSegmenter
    from mslesion.model.store import read_spec

    seg = ModelSegmenter(read_spec(folder), device=device, tta=tta != "off")
    seg.tta_axes = {"off": (0, 1, 2), "lr": (0,), "all": (0, 1, 2)}[tta]
    if overlap is not None:
        seg.overlap = overlap
    if window is not None:
        seg.window = tuple(window)
    return seg


def _fold_model_for(case: str, root: Path) -> Path:
    """The fold model under ``root`` whose holdout contains the case's subject."""
    for run in sorted(root.iterdir()):
        summary = run / "train_summary.json"
        if summary.is_file():
            held = json.loads(summary.read_text())["config"].get("holdout", [])
            if SUBJECT[case] in held or case in held:
                return run
    raise SystemExit(f"no fold model in {root} holds out {case}")


def _cases_of(subjects: str, train_data: Path) -> list[str]:
    """The cases of comma-separated subjects (or case names), as ``train.py --holdout`` reads them."""
    wanted = set(subjects.split(","))
    listed = json.loads((train_data / "cases.json").read_text())["cases"]
    cases = [c["case"] for c in listed if c["subject"] in wanted or c["case"] in wanted]
    if not cases:
        raise SystemExit(f"no case of subject(s) {subjects} in {train_data}/cases.json; subjects: "
                         f"{sorted({c['subject'] for c in listed})}")
    return cases


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    out = PREDS / args.tag
    out.mkdir(parents=True, exist_ok=True)
    cache: dict[Path, object] = {}
    if args.subject:
        args.cases = _cases_of(args.subject, args.train_data)
    for case in args.cases:
        folders = [_fold_model_for(case, args.fold_models)] if args.fold_models else args.model
        pre = load_case(args.train_data / f"{case}.npz")
        t0 = time.perf_counter()
        probs = []
        for f in folders:
            if f not in cache:
                cache[f] = _segmenter(f, args.device, args.tta, args.overlap, args.window)
            probs.append(cache[f].predict(pre).data[pre.crop])
        prob = np.mean(probs, axis=0)
        np.savez_compressed(out / f"{case}.npz", prob=prob.astype(np.float16))
        if args.keep_parts and len(folders) > 1:   # each part's own map too, for weightings made later (combine)
            for f, part in zip(folders, probs):
                (PREDS / f"{args.tag}~{f.name}").mkdir(exist_ok=True)
                np.savez_compressed(PREDS / f"{args.tag}~{f.name}" / f"{case}.npz", prob=part.astype(np.float16))
        print(f"{case}: {time.perf_counter() - t0:.1f} s ({', '.join(str(f) for f in folders)})", flush=True)
    (out / "settings.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items() if k != "func"}, indent=2))
    return 0


def cmd_combine(args: argparse.Namespace) -> int:
    """Mean (or ``--weights``-weighted mean) probability of several kept predictions, without predicting again."""
    weights = args.weights or [1.0] * len(args.tags)
    if len(weights) != len(args.tags) or min(weights) < 0 or sum(weights) <= 0:
        raise SystemExit(f"--weights {weights}: give one non-negative weight per tag ({len(args.tags)}), not all 0")
    out = PREDS / args.tag
    out.mkdir(parents=True, exist_ok=True)
    cases = sorted(set.intersection(*({p.stem for p in (PREDS / t).glob("*.npz")} for t in args.tags)))
    for case in cases:
        probs = [np.load(PREDS / t / f"{case}.npz")["prob"].astype(np.float32) for t in args.tags]
        np.savez_compressed(out / f"{case}.npz", prob=np.average(probs, axis=0, weights=weights).astype(np.float16))
    print(f"{args.tag}: mean of {args.tags} (weights {weights}) on {len(cases)} cases")
    return 0


def _calibration(cases: list[str], tag: str, train_data: Path) -> tuple[list[dict], float]:
    from mslesion.metrics import reliability

    probs, refs = [], []
    for case in cases:
        with np.load(PREDS / tag / f"{case}.npz") as z:
            prob = z["prob"].astype(np.float32)
        with np.load(train_data / f"{case}.npz") as z:
            brain = z["brain"] > 0
            ref = z["labels"].astype(np.float32).mean(axis=0)
        probs.append(prob[brain])
        refs.append(ref[brain] >= 0.5)
    return reliability(np.concatenate(probs), np.concatenate(refs))


def cmd_score(args: argparse.Namespace) -> int:
    cases = args.cases or sorted(p.stem for p in (PREDS / args.tag).glob("*.npz"))
    prepared = {}   # each case read and taken to its native grid once, then scored at every setting
    for case in cases:
        with np.load(PREDS / args.tag / f"{case}.npz") as z:
            prob = z["prob"].astype(np.float32)
        prepared[case] = prepare_scoring(prob, args.train_data / f"{case}.npz", args.data, case)
    settings = []
    for thr in args.thresholds:
        for peak in args.min_peak:
            rows = [score_prepared(prepared[case], thr, args.min_mm3, peak) for case in cases]
            print(f"\n== {args.tag}: threshold {thr}, lesions >= {args.min_mm3} mm^3, peak >= {peak} "
                  "(ISBI: mean of 2 raters)")
            print(f"{'case':22s} {'dice':>6s} {'F1':>6s} {'sens':>6s} {'prec':>6s}")
            for r in rows:
                print(f"{r['case']:22s} {r['dice']:6.3f} {r['lesion_f1']:6.3f} {r['lesion_sensitivity']:6.3f} "
                      f"{r['lesion_precision']:6.3f}")
            pooled = _pooled(rows)
            md, mf = float(np.mean([r["dice"] for r in rows])), float(np.mean([r["lesion_f1"] for r in rows]))
            print(f"{'MEAN':22s} {md:6.3f} {mf:6.3f}")
            print("pooled: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in pooled.items()))
            settings.append({"threshold": thr, "min_peak": peak, "min_mm3": args.min_mm3, "cases": rows,
                             "mean_dice": md, "mean_lesion_f1": mf, "pooled": pooled})
    table, ece = _calibration(cases, args.tag, args.train_data)
    print(f"\ncalibration ({len(cases)} cases, brain voxels): ECE {ece:.4f}")
    print(f"{'bin':>11s} {'voxels':>10s} {'mean p':>7s} {'lesion':>7s}")
    for row in table:
        print(f"{row['lo']:.1f}-{row['hi']:.1f}   {row['voxels']:10d} {row['mean_prob']:7.3f} {row['lesion_fraction']:7.3f}")
    if args.json:
        args.json.write_text(json.dumps({"tag": args.tag, "settings": settings,
                                         "calibration": {"ece": ece, "table": table}}, indent=2))
    return 0


def subject_means(score_files: list[Path]) -> list[dict]:
    """Leave-one-subject-out figures from several folds' ``score --json`` files.

    For every (threshold, min_peak, min_mm3) setting scored in all files: each subject's Dice and
    lesion F1 (the mean of its scans; ISBI scans already average their two raters), then the mean
    over subjects, as the issue's protocol counts them.  Sorted by mean lesion F1, best first.
    """
    per_setting: dict[tuple, dict[str, list[dict]]] = {}
    for path in score_files:
        for s in json.loads(path.read_text())["settings"]:
            key = (s["threshold"], s["min_peak"], s.get("min_mm3", 3.0))
            for row in s["cases"]:
                per_setting.setdefault(key, {}).setdefault(SUBJECT[row["case"]], []).append(row)
    counts = [len(v) for v in per_setting.values()]
    out = []
    for (thr, peak, mm3), subjects in per_setting.items():
        if len(subjects) < max(counts):   # a setting some fold did not score
            continue
        dice = {k: float(np.mean([r["dice"] for r in rows])) for k, rows in subjects.items()}
        f1 = {k: float(np.mean([r["lesion_f1"] for r in rows])) for k, rows in subjects.items()}
        out.append({"threshold": thr, "min_peak": peak, "min_mm3": mm3, "subjects": len(subjects),
                    "mean_dice": float(np.mean(list(dice.values()))), "mean_lesion_f1": float(np.mean(list(f1.values()))),
                    "dice": dice, "lesion_f1": f1})
    return sorted(out, key=lambda r: (-r["mean_lesion_f1"], -r["mean_dice"]))


def cmd_pool(args: argparse.Namespace) -> int:
    rows = subject_means(args.files)
    if not rows:
        print("no setting was scored in every file")
        return 1
    names = sorted(rows[0]["dice"])
    print(f"{len(args.files)} fold file(s), {rows[0]['subjects']} subject(s): {', '.join(names)}")
    print(f"{'threshold':>9s} {'min_peak':>8s} {'Dice':>6s} {'F1':>6s}   per subject Dice / F1")
    for r in rows:
        each = "  ".join(f"{r['dice'][k]:.3f}/{r['lesion_f1'][k]:.3f}" for k in names)
        print(f"{r['threshold']:9.2f} {r['min_peak']:8.2f} {r['mean_dice']:6.3f} {r['mean_lesion_f1']:6.3f}   {each}")
    return 0


def _pooled(rows: list[dict]) -> dict:
    """Lesion counts summed over cases and raters: sensitivity by size class and precision."""
    out: dict = {}
    for cls in ("lt30", "30to100", "gt100"):
        n = sum(r["per_rater"][k]["by_size"][cls]["ref_lesions"] for r in rows for k in r["per_rater"])
        d = sum(r["per_rater"][k]["by_size"][cls]["detected"] for r in rows for k in r["per_rater"])
        out[f"sens_{cls}"] = d / n if n else float("nan")
        out[f"n_{cls}"] = n
    tp = sum(s["true_pred_lesions"] for r in rows for s in r["per_rater"].values())
    npred = sum(s["pred_lesions"] for r in rows for s in r["per_rater"].values())
    nref = sum(s["ref_lesions"] for r in rows for s in r["per_rater"].values())
    det = sum(s["detected_ref_lesions"] for r in rows for s in r["per_rater"].values())
    out["precision"] = tp / npred if npred else float("nan")
    out["sensitivity"] = det / nref if nref else float("nan")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("predict", help="predict held-out cases and keep the probability maps")
    pr.add_argument("--tag", required=True)
    src = pr.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, nargs="+", help="model folder(s); several: mean probability")
    src.add_argument("--fold-models", type=Path, help="folder of fold runs; each case by the fold holding it out")
    which = pr.add_mutually_exclusive_group()
    which.add_argument("--cases", nargs="+", default=sorted(CASE_FOLDERS))
    which.add_argument("--subject", help="every case of these subjects (comma-separated, as train.py --holdout)")
    pr.add_argument("--tta", choices=["off", "lr", "all"], default="off")
    pr.add_argument("--overlap", type=float)
    pr.add_argument("--window", type=int, nargs=3, help="sliding window (default: the model's CPU window)")
    pr.add_argument("--device", default="cpu")
    pr.add_argument("--threads", type=int, default=2)
    pr.add_argument("--keep-parts", action="store_true",
                    help="with several --model: also keep each one's map, as tag <tag>~<model folder name>")
    cb = sub.add_parser("combine", help="(weighted) mean of kept probability maps of several tags")
    cb.add_argument("--tag", required=True)
    cb.add_argument("--tags", nargs="+", required=True)
    cb.add_argument("--weights", type=float, nargs="+", help="one weight per tag (default: equal)")
    sc = sub.add_parser("score", help="score kept probability maps")
    sc.add_argument("--tag", required=True)
    sc.add_argument("--cases", nargs="*")
    sc.add_argument("--thresholds", type=float, nargs="+", default=[0.5])
    sc.add_argument("--min-peak", type=float, nargs="+", default=[0.0],
                    help="keep a lesion only where its highest probability reaches this (hysteresis); several: "
                         "every threshold with every min_peak")
    sc.add_argument("--min-mm3", type=float, default=3.0)
    sc.add_argument("--json", type=Path)
    po = sub.add_parser("pool", help="leave-one-subject-out means from several folds' score --json files")
    po.add_argument("files", type=Path, nargs="+")
    for p in (pr, sc):
        p.add_argument("--train-data", type=Path, default=Path(".devdata/train_v4"))
        p.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = ap.parse_args(argv)
    return {"predict": cmd_predict, "score": cmd_score, "combine": cmd_combine, "pool": cmd_pool}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
