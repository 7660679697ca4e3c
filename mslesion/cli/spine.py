"""`mslesion spine`: cord segmentation, vertebral levels and cord lesions of one spinal image."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..spine import CONTRASTS, SpineOptions, analyze_spine
from ._outdir import removed_if_failed


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spine", help="segment the spinal cord and its lesions, label vertebral levels",
                       description="Cord mask, cord-lesion mask, per-lesion CSV, sagittal QC PNG and report.json. "
                                   "An image with no plausible spinal cord is refused (exit 2).")
    p.add_argument("--image", required=True, type=Path, help="spinal NIfTI image (sagittal or axial)")
    p.add_argument("--contrast", choices=list(CONTRASTS), default=None,
                   help="t2/t2s/stir: lesions bright; t1/psir: lesions dark. Default: read from the file name "
                        "(BIDS suffix _T2w, _T2star, _T1w, ... or t2s, t1w, ...), else from the image (cord darker "
                        "or brighter than the CSF around it); if neither tells, mslesion stops and asks for it")
    p.add_argument("--disc-labels", type=Path, default=None,
                   help="intervertebral disc labels (SCT convention: 3 = C2/C3 disc) to number vertebral levels")
    p.add_argument("--top-disc", type=int, default=3,
                   help="without --disc-labels: number of the most superior detected disc (default 3 = C2/C3)")
    p.add_argument("--no-levels", action="store_true", help="do not detect discs / vertebral levels")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with removed_if_failed(args.out):
        result = analyze_spine(args.image, args.contrast, args.out,
                               SpineOptions(disc_labels=args.disc_labels, auto_levels=not args.no_levels,
                                            top_disc=args.top_disc))
    rep = result.report
    print(json.dumps({"contrast": rep["image"]["contrast"], "contrast_source": rep["image"]["contrast_source"],
                      "lesion_count": rep["lesion_count"], "total_lesion_volume_mm3": rep["total_lesion_volume_mm3"],
                      "cord_volume_mm3": rep["cord"]["volume_mm3"], "levels": rep["levels"]["covered"],
                      "out": str(args.out)}))
    return 0
