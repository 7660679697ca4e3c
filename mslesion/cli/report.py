"""`mslesion report`: McDonald regions and DIS for a lesion mask you already have."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..location import LocationOptions
from ..location.from_mask import report_mask
from ..pipeline import AnalyzeOptions


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="location report (McDonald regions, DIS) for an existing lesion mask",
                       description="Locate the lesions of a given mask (e.g. an expert segmentation) and write "
                                   "lesions.nii.gz, lesions.csv, report.json and QC images (no probability map: "
                                   "a mask has none). A mask on another grid than the FLAIR is resampled onto the "
                                   "FLAIR's grid (nearest neighbour), which can merge or drop small lesions: "
                                   "report.json says so under lesion_mask_input.resampled, with the lesion count on "
                                   "the mask's own grid. DIS is an MRI research measure, not a diagnosis.")
    p.add_argument("--flair", required=True, type=Path, help="FLAIR NIfTI file or DICOM series folder")
    p.add_argument("--t1", type=Path, help="optional T1 image (same subject and session)")
    p.add_argument("--lesions", required=True, type=Path,
                   help="lesion mask (NIfTI, same place in world space as the FLAIR; best on the FLAIR's own grid)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--mask-threshold", type=_fraction, default=0.5, help="mask values >= this are lesion (default 0.5)")
    p.add_argument("--min-lesion-mm3", type=_non_negative, default=0.0,
                   help="drop lesions smaller than this (default 0)")
    p.add_argument("--periventricular-mm", type=_non_negative, default=3.0, help="periventricular distance (default 3)")
    p.add_argument("--min-long-axis-mm", type=_non_negative, default=3.0,
                   help="lesions shorter than this do not count for DIS (default 3)")
    p.set_defaults(func=run)


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _non_negative(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    loc = LocationOptions(periventricular_mm=args.periventricular_mm, min_long_axis_mm=args.min_long_axis_mm)
    opts = AnalyzeOptions(model="baseline", min_lesion_mm3=args.min_lesion_mm3, location=loc, max_memory=0)
    result = report_mask(args.flair, args.lesions, args.out, t1=args.t1, options=opts,
                         mask_threshold=args.mask_threshold)
    rep = result.report
    mask_input = rep.lesion_mask_input
    print(json.dumps({"lesion_count": rep.lesion_count, "total_volume_ml": rep.total_volume_ml,
                      "regions": {k: v.count for k, v in rep.regions.items()},
                      "dis_met": rep.mcdonald_dis.met if rep.mcdonald_dis is not None else None,
                      "lesion_mask_resampled": mask_input is not None and mask_input.resampled is not None,
                      "out": str(args.out)}))
    return 0
