"""`mslesion analyze`: one subject, whole pipeline."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..memory import parse_size
from ..pipeline import AnalyzeOptions, Analyzer
from ..preprocess import PreprocessOptions
from ..preprocess.brain import BRAIN_METHODS
from ._outdir import removed_if_failed


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="segment and report lesions for one subject",
                       description="Segment MS lesions in one subject and write mask, probability, CSV and JSON.")
    p.add_argument("--flair", required=True, type=Path, help="FLAIR NIfTI file or DICOM series folder")
    p.add_argument("--t1", type=Path, help="optional T1 image")
    p.add_argument("--t2", type=Path, help="optional T2 image")
    p.add_argument("--t1post", type=Path,
                   help="optional post-gadolinium T1 (needs --t1, the pre-contrast T1): enhancing lesions and "
                        "single-visit dissemination in time; without it, DIT from this scan is 'not assessed'")
    p.add_argument("--spine", type=Path, action="append", default=[], metavar="F",
                   help="spinal image of the same subject (repeatable); its cord lesions join the report and DIS")
    p.add_argument("--spine-contrast", choices=["t2", "t2s", "t1", "stir", "psir"], default="t2",
                   help="contrast of the --spine images (default: t2)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    add_model_arguments(p)
    p.add_argument("--save-preprocessed", action="store_true", help="also write preprocessed volumes and QC PNGs")
    p.add_argument("--max-memory", type=memory_limit, default=None, metavar="SIZE",
                   help="refuse images whose analysis would need more memory than this, e.g. 4G or 512M "
                        "(default: 85%% of the memory available now; 'off' disables the check)")
    p.set_defaults(func=run)


def add_model_arguments(p: argparse.ArgumentParser, hysteresis: bool = True) -> None:
    """Options shared by every command that segments (``hysteresis``: also ``--min-peak``)."""
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                   help="where the model runs (auto: cuda, then mps, then cpu)")
    p.add_argument("--model", default="auto", help="model id or folder under models/, or 'baseline' (default: auto)")
    p.add_argument("--threshold", type=probability, default=None, help="probability threshold (default: the model's)")
    if hysteresis:
        p.add_argument("--min-peak", type=unit_interval, default=None, metavar="P",
                       help="keep a lesion only where its highest probability reaches P (default: the model's, "
                            "chosen on held-out scans; 0 turns it off)")
    p.add_argument("--tta", choices=["auto", "on", "off"], default="auto",
                   help="flip test-time augmentation (auto: on for GPUs, off for CPUs, as validated in the model card)")
    p.add_argument("--fp32", action="store_true",
                   help="full fp32 inference (default: bf16/fp16 on GPUs and on CPUs with native bf16)")
    p.add_argument("--min-lesion-mm3", type=non_negative, default=AnalyzeOptions.min_lesion_mm3, metavar="MM3",
                   help="drop lesions smaller than this volume in mm^3 (default %(default)g; recorded in "
                        "report.json); dissemination in space also needs an in-plane long axis >= 3 mm")
    p.add_argument("--brain-extraction", choices=list(BRAIN_METHODS), default="deepbet",
                   help="deepbet: pretrained network shipped in the deepbet package (default); "
                        "template: MNI template fit (the masks the v1 models were trained with)")


def options_from_args(args: argparse.Namespace) -> AnalyzeOptions:
    pre = PreprocessOptions(save_dir=Path("preprocessed") if getattr(args, "save_preprocessed", False) else None,
                            brain_extraction=args.brain_extraction)
    tta = {"auto": None, "on": True, "off": False}[args.tta]
    return AnalyzeOptions(model=args.model, device=args.device, tta=tta, fp32=args.fp32, threshold=args.threshold,
                          min_peak=getattr(args, "min_peak", None), min_lesion_mm3=args.min_lesion_mm3, preprocess=pre,
                          max_memory=getattr(args, "max_memory", None))


def non_negative(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0.0 <= value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """argparse type of --threshold: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0.0 < value < 1.0:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """argparse type of --min-peak: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value


def memory_limit(text: str) -> int:
    """argparse type of --max-memory: a size in bytes, or 0 for 'off'."""
    if text.strip().lower() in ("off", "none", "unlimited"):
        return 0
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    inputs = {"flair": args.flair, "t1": args.t1, "t2": args.t2, "t1post": args.t1post}
    contrasts = {k for k, v in inputs.items() if v}
    with removed_if_failed(args.out):
        options = options_from_args(args)
        spine = [(path, args.spine_contrast) for path in args.spine]
        result = Analyzer(options, contrasts=contrasts).run(inputs, args.out, spine=spine)
    report = result.report
    summary: dict[str, object] = {"lesion_count": report.lesion_count, "total_volume_ml": report.total_volume_ml}
    if report.spine:
        summary["spinal_cord_lesions"] = report.regions["spinal_cord"].count
    summary["dis_met"] = report.mcdonald_dis.met if report.mcdonald_dis is not None else None
    summary["dit_single_visit_met"] = report.enhancement.dissemination_in_time.met if report.enhancement else None
    summary["model"] = report.model.id
    summary["out"] = str(args.out)
    print(json.dumps(summary))
    return 0
