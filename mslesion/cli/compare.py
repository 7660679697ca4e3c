"""`mslesion compare`: new, enlarging, shrinking and disappearing lesions between two scans."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..longitudinal import ChangeOptions, CompareOptions, compare_scans
from ..longitudinal.evidence import EvidenceOptions
from .analyze import add_model_arguments, options_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="new and enlarging lesions between a baseline and a follow-up scan",
                       description="Register the follow-up to the baseline and detect new, enlarging, shrinking "
                                   "and disappearing lesions from both scans jointly.")
    p.add_argument("--baseline-flair", required=True, type=Path, help="baseline FLAIR (NIfTI or DICOM folder)")
    p.add_argument("--followup-flair", required=True, type=Path, help="follow-up FLAIR (NIfTI or DICOM folder)")
    p.add_argument("--baseline-t1", type=Path, help="optional baseline T1")
    p.add_argument("--followup-t1", type=Path, help="optional follow-up T1")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--brain-mask", type=Path,
                   help="optional brain mask in the baseline's space (replaces the automatic one)")
    d = ChangeOptions()
    p.add_argument("--min-growth-mm3", type=float, default=d.abs_growth_mm3,
                   help=f"enlarging: least absolute growth in mm^3 (default {d.abs_growth_mm3:g})")
    p.add_argument("--min-growth-fraction", type=float, default=d.rel_growth,
                   help=f"enlarging: least growth relative to the baseline lesion (default {d.rel_growth:g})")
    p.add_argument("--min-new-mm3", type=float, default=d.min_new_mm3,
                   help=f"smallest new lesion in mm^3 (default {d.min_new_mm3:g})")
    p.add_argument("--change-z", type=float, default=d.z_seed,
                   help=f"z-score of the difference image that starts a change (default {d.z_seed:g})")
    e = EvidenceOptions()
    p.add_argument("--min-difference", type=float, default=e.min_difference,
                   help="least FLAIR difference (robust z, brain p1-p99 span = 4) inside a change "
                        f"(default {e.min_difference:g})")
    p.add_argument("--min-significance", type=float, default=e.min_significance,
                   help="least difference over the local noise around a change "
                        f"(default {e.min_significance:g})")
    p.add_argument("--no-evidence", action="store_true",
                   help="keep change calls that the two scans do not support (issue-8 behaviour; "
                        "recorded in the report)")
    add_model_arguments(p, hysteresis=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    base = {"flair": args.baseline_flair, "t1": args.baseline_t1}
    follow = {"flair": args.followup_flair, "t1": args.followup_t1}
    change = ChangeOptions(abs_growth_mm3=args.min_growth_mm3, rel_growth=args.min_growth_fraction,
                           min_new_mm3=args.min_new_mm3, z_seed=args.change_z,
                           z_grow=min(ChangeOptions().z_grow, args.change_z),
                           evidence=EvidenceOptions(required=not args.no_evidence, min_difference=args.min_difference,
                                                    min_significance=args.min_significance))
    opts = CompareOptions(analyze=options_from_args(args), change=change, brain_mask=args.brain_mask)
    result = compare_scans(base, follow, args.out, opts)
    rep = result.report
    summary: dict[str, object] = {k: rep.changes[k].count for k in ("new", "enlarging", "shrinking", "disappearing")}
    summary["new_t2_lesion"] = rep.new_lesion_evidence.new_t2_lesion
    dit = rep.new_lesion_evidence.dissemination_in_time
    summary["dissemination_in_time"] = dit.verdict
    summary["dit_supported_by"] = [e.id for e in dit.supporting_lesions]
    summary["rejected_candidates"] = rep.rejected_candidates
    vc = rep.volume_change
    summary.update(brain_pct_change=None if vc is None else vc.brain_pct_change,
                   bpf_change=None if vc is None else vc.bpf_change)
    summary["model"] = rep.model.id
    summary["out"] = str(args.out)
    print(json.dumps(summary))
    return 0
