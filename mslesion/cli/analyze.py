"""`mslesion analyze`: one subject, whole pipeline."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..pipeline import AnalyzeOptions, Analyzer
from ..preprocess import PreprocessOptions


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="segment and report lesions for one subject",
                       description="Segment MS lesions in one subject and write mask, probability, CSV and JSON.")
    p.add_argument("--flair", required=True, type=Path, help="FLAIR NIfTI file or DICOM series folder")
    p.add_argument("--t1", type=Path, help="optional T1 image")
    p.add_argument("--t2", type=Path, help="optional T2 image")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    add_model_arguments(p)
    p.add_argument("--save-preprocessed", action="store_true", help="also write preprocessed volumes and QC PNGs")
    p.set_defaults(func=run)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that segments."""
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                   help="where the model runs (auto: cuda, then mps, then cpu)")
    p.add_argument("--model", default="auto", help="model id or folder under models/, or 'baseline' (default: auto)")
    p.add_argument("--threshold", type=float, default=None, help="probability threshold (default: the model's)")


def options_from_args(args: argparse.Namespace) -> AnalyzeOptions:
    pre = PreprocessOptions(save_dir=Path("preprocessed") if getattr(args, "save_preprocessed", False) else None)
    return AnalyzeOptions(model=args.model, device=args.device, threshold=args.threshold, preprocess=pre)


def run(args: argparse.Namespace) -> int:
    inputs = {"flair": args.flair, "t1": args.t1, "t2": args.t2}
    contrasts = {k for k, v in inputs.items() if v}
    result = Analyzer(options_from_args(args), contrasts=contrasts).run(inputs, args.out)
    summary = {k: result.report[k] for k in ("lesion_count", "total_volume_ml")}
    summary["model"] = result.report["model"]["id"]
    summary["out"] = str(args.out)
    print(json.dumps(summary))
    return 0
