"""Benchmark `mslesion batch`: subjects/hour for 1 and 2 workers, and batch overhead vs single analyses.

Builds a BIDS dataset of N subjects from ../shared/data (symlinks in a temp
folder, never in the repository; scans are reused under several subject IDs
when there are fewer scans than subjects), then in ONE run:

1. analyses every subject once with a single warm ``Analyzer.run`` (the
   `mslesion analyze` work without process start / model load): T_single;
2. ``run_batch`` with 1 worker into a fresh folder: T_batch1 ->
   overhead = T_batch1 / T_single - 1 (also: batch wall minus the pipeline's
   own total_s summed from the reports, i.e. time spent in batch bookkeeping);
3. ``run_batch`` with 2 workers (and more with --workers) -> subjects/hour;
4. with --device cuda: the same with shared inference (CPU workers feeding one GPU model).

    .venv/bin/python scripts/bench_batch.py --subjects 8 --model baseline
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data" / "brain_ms").resolve()

SCANS = [  # (name, {bids suffix: file})
    ("lj07", {"FLAIR": "ljubljana/patient07/flair.nii.gz", "T1w": "ljubljana/patient07/t1.nii.gz",
              "T2w": "ljubljana/patient07/t2.nii.gz"}),
    ("isbi01", {"FLAIR": "isbi2015/training01/flair.nii.gz"}),
    ("lj26", {"FLAIR": "ljubljana/patient26/flair.nii.gz", "T1w": "ljubljana/patient26/t1.nii.gz",
              "T2w": "ljubljana/patient26/t2.nii.gz"}),
    ("isbi02", {"FLAIR": "isbi2015/training02/flair.nii.gz"}),
    ("long12s1", {"FLAIR": "longitudinal/patient12/study1_flair.nii.gz"}),
    ("isbi03", {"FLAIR": "isbi2015/training03/flair.nii.gz"}),
    ("long12s2", {"FLAIR": "longitudinal/patient12/study2_flair.nii.gz"}),
]


def build_bids(root: Path, n: int, data: Path = DATA) -> list[dict]:
    """sub-01..sub-NN, each a symlink set to one real scan (cycled over the scans present under ``data``)."""
    scans = [(name, files) for name, files in SCANS if all((data / rel).is_file() for rel in files.values())]
    if not scans:
        raise SystemExit(f"no scans found under {data}")
    subjects = []
    for i in range(n):
        name, files = scans[i % len(scans)]
        sub = f"{i + 1:02d}"
        anat = root / f"sub-{sub}" / "anat"
        anat.mkdir(parents=True)
        inputs = {}
        for suffix, rel in files.items():
            link = anat / f"sub-{sub}_{suffix}.nii.gz"
            link.symlink_to((data / rel).resolve())
            inputs[{"FLAIR": "flair", "T1w": "t1", "T2w": "t2"}[suffix]] = link
        subjects.append({"sub": sub, "scan": name, "inputs": inputs})
    return subjects


def untrained_unet(folder: Path) -> Path:
    """A model folder holding a randomly initialised U-Net (for timing only: its output is meaningless)."""
    import torch

    from mslesion.model.store import DEFAULT_INFERENCE, write_model_folder
    from mslesion.model.unet import build_unet

    arch = {"in_channels": 1, "base": 16, "levels": 4, "residual": True, "max_channels": 256}
    torch.manual_seed(0)
    weights = folder.parent / "untrained-weights.pt"
    torch.save(build_unet(arch).state_dict(), weights)
    return write_model_folder(folder, weights, "untrained-unet-timing", ["flair"], arch, [96, 96, 96], 0.5,
                              {**DEFAULT_INFERENCE, "window_accelerator": [96, 96, 96]})


def paired(subjects: list[dict], tmp: Path, opts, figures: dict) -> None:
    """Per subject: single analysis vs a one-subject batch, alternating which runs first (cancels load drift)."""
    import statistics

    from mslesion.batch import BatchOptions, run_batch
    from mslesion.pipeline import Analyzer

    analyzer = Analyzer(opts)
    ratios, t_single_all, t_batch_all = [], 0.0, 0.0
    for i, s in enumerate(subjects):
        one = tmp / f"one-{s['sub']}"
        one.mkdir()
        (one / f"sub-{s['sub']}").symlink_to(tmp / "bids" / f"sub-{s['sub']}", target_is_directory=True)
        times = {}
        for what in (("single", "batch") if i % 2 == 0 else ("batch", "single")):
            t0 = time.perf_counter()
            if what == "single":
                analyzer.run(dict(s["inputs"]), out_dir=tmp / "paired-single" / s["sub"])
            else:
                run_batch(one, tmp / f"paired-deriv-{s['sub']}", opts, BatchOptions(quiet=True))
            times[what] = time.perf_counter() - t0
        ratios.append(times["batch"] / times["single"] - 1)
        t_single_all += times["single"]
        t_batch_all += times["batch"]
        print(f"  paired sub-{s['sub']} ({s['scan']}): single {times['single']:.2f} s, one-subject batch "
              f"{times['batch']:.2f} s ({100 * ratios[-1]:+.1f}%)", flush=True)
    med = statistics.median(ratios)
    figures["paired"] = {"median_overhead_pct": round(100 * med, 2), "single_s": round(t_single_all, 2),
                         "batch_s": round(t_batch_all, 2), "per_subject_pct": [round(100 * r, 2) for r in ratios]}
    print(f"paired: one-subject batch vs single analysis, median {100 * med:+.2f}% per subject "
          f"(sum {t_batch_all:.1f} s vs {t_single_all:.1f} s; target <= 5%)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--model", default="baseline")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", default="1,2", help="comma list of worker counts")
    ap.add_argument("--shared", action="store_true", help="also run the workers>1 counts with shared inference")
    ap.add_argument("--skip-single", action="store_true", help="do not time single analyses (no overhead figure)")
    ap.add_argument("--paired", action="store_true",
                    help="also time, subject by subject and in alternating order, a single Analyzer.run against a "
                         "whole `run_batch` of that one subject (fixed per-batch costs included)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--data", type=Path, default=DATA, help="folder laid out like ../shared/data/brain_ms")
    ap.add_argument("--untrained-unet", action="store_true",
                    help="time a randomly initialised U-Net of the default architecture (speed only; no trained "
                         "model needed) instead of --model")
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"needs {args.data}", file=sys.stderr)
        return 2
    from mslesion.batch import BatchOptions, run_batch
    from mslesion.pipeline import AnalyzeOptions, Analyzer

    figures: dict = {"subjects": args.subjects, "model": args.model, "device": args.device,
                     "cpus": os.cpu_count(), "host": platform.node(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="mslesion-bench-") as tmp:
        tmp = Path(tmp)
        if args.untrained_unet:
            args.model = str(untrained_unet(tmp / "untrained-unet"))
            figures["model"] = "untrained U-Net (default architecture, random weights)"
        opts = AnalyzeOptions(model=args.model, device=args.device)
        subjects = build_bids(tmp / "bids", args.subjects, args.data)
        if args.device != "cpu":
            import torch

            figures["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
            print(f"GPU: {figures['gpu']}", flush=True)
        print(f"BIDS dataset: {args.subjects} subjects from {len({s['scan'] for s in subjects})} real scans; "
              f"model={args.model} device={args.device} cpus={os.cpu_count()}", flush=True)
        if not args.skip_single:
            analyzer = Analyzer(opts)
            t0 = time.perf_counter()
            for s in subjects:
                analyzer.run(dict(s["inputs"]), out_dir=tmp / "single" / s["sub"])
            t_single = time.perf_counter() - t0
            figures["single_s"] = round(t_single, 2)
            print(f"single analyses (warm Analyzer, sequential): {t_single:.1f} s = {t_single / args.subjects:.2f} "
                  f"s/subject = {3600 * args.subjects / t_single:.0f} subjects/hour", flush=True)
        if args.paired:
            paired(subjects, tmp, opts, figures)
        runs = [(int(w), False) for w in args.workers.split(",") if w]
        if args.shared:
            runs += [(w, True) for w, _ in runs if w > 1]
        for workers, shared in runs:
            deriv = tmp / f"deriv-w{workers}{'-shared' if shared else ''}"
            res = run_batch(tmp / "bids", deriv, opts,
                            BatchOptions(workers=workers, quiet=True, shared_inference=shared if workers > 1 else None))
            # time spent inside Analyzer.run (incl. its output writing), measured by the batch around each call
            pipeline_s = sum(o.get("analyze_s", 0.0) for o in res.outcomes)
            run = {"workers": workers, "shared_inference": shared, "wall_s": round(res.seconds, 2), "done": res.done,
                   "failed": len(res.failures), "subjects_per_hour": round(3600 * res.done / res.seconds, 1),
                   "pipeline_s_sum": round(pipeline_s, 2), **({"inference": res.extra["inference"]}
                                                              if "inference" in res.extra else {})}
            line = (f"batch workers={workers}{' shared-inference' if shared else ''}: {res.seconds:.1f} s, "
                    f"{res.done} done, {len(res.failures)} failed -> {run['subjects_per_hour']:.0f} subjects/hour")
            if workers == 1:
                again = run_batch(tmp / "bids", deriv, opts, BatchOptions(quiet=True))
                run["resume_all_complete_s"] = round(again.seconds, 3)
                print(f"resume of the complete dataset (all {again.skipped} skipped, inputs re-hashed, tables and "
                      f"index rewritten): {again.seconds:.3f} s", flush=True)
                own = (res.seconds - pipeline_s) / pipeline_s
                run["bookkeeping_overhead_pct"] = round(100 * own, 2)
                line += f"; batch bookkeeping beyond Analyzer.run: {res.seconds - pipeline_s:.2f} s ({100 * own:+.2f}%)"
                if "single_s" in figures:
                    over = res.seconds / figures["single_s"] - 1
                    run["overhead_vs_single_pct"] = round(100 * over, 2)
                    line += f"; vs single analyses: {100 * over:+.2f}% per subject (target <= 5%)"
            reports = sorted(deriv.rglob("*_desc-lesions_report.json"))
            if reports:
                model = json.loads(reports[0].read_text())["model"]
                run["model_id"], run["model_kind"] = model["id"], model["kind"]
                line += f" [model {model['id']} ({model['kind']})]"
            if "inference" in run:
                busy = run["inference"]["busy_s"]
                line += f"; inference server busy {busy:.1f} s = {100 * busy / res.seconds:.0f}% of the wall time"
            print(line, flush=True)
            for f in res.failures:
                print(f"   failed {f['key']}: {f['reason']}", flush=True)
            figures["runs"].append(run)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
