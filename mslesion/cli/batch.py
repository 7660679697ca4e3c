"""`mslesion batch`: a whole BIDS dataset (or CSV manifest) into a BIDS-derivatives folder."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .analyze import add_model_arguments, options_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch", help="analyse every subject/session of a BIDS dataset or CSV manifest",
        description="Analyse every subject/session of a BIDS dataset (sub-*/[ses-*/]anat/*_FLAIR.nii.gz, optional "
                    "_T1w/_T2w) or a CSV manifest (columns subject,[session],flair,[t1],[t2],[spine]; relative "
                    "paths in the CSV are read from the CSV's own folder, not from the current folder) into a "
                    "BIDS-derivatives folder with a cohort table, a failures table and index.html (titled with "
                    "the Name in the dataset's dataset_description.json). Resumable: a rerun skips complete "
                    "subjects. Exit code 1 if any subject failed.")
    p.add_argument("input", type=Path,
                   help="BIDS dataset folder or CSV manifest (relative paths inside it: from the CSV's folder)")
    p.add_argument("--out", required=True, type=Path, help="derivatives folder (e.g. BIDS/derivatives/mslesion)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes, each loading the model once")
    p.add_argument("--scheduler", help="run on a Dask distributed cluster, e.g. tcp://host:8786 (outputs must be "
                                       "on a file system the workers share)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--longitudinal", action="store_true", help="also compare consecutive sessions of each subject")
    p.add_argument("--no-input-check", action="store_true",
                   help="on resume, trust existing outputs without re-hashing the inputs")
    add_model_arguments(p)
    p.add_argument("--save-preprocessed", action="store_true", help="also write preprocessed volumes and QC PNGs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..batch import BatchOptions, run_batch

    if args.workers < 1:
        print("mslesion batch: error: --workers must be at least 1", file=sys.stderr)
        return 2
    batch = BatchOptions(workers=args.workers, scheduler=args.scheduler, quiet=args.quiet,
                         longitudinal=args.longitudinal, check_inputs=not args.no_input_check)
    result = run_batch(args.input, args.out, options_from_args(args), batch)
    summary = {"done": result.done, "skipped": result.skipped, "failed": len(result.failures),
               "seconds": round(result.seconds, 1), "cohort": str(result.deriv / "cohort.csv"),
               "failures": str(result.deriv / "failures.csv")}
    print(json.dumps(summary))
    for f in result.failures:
        print(f"mslesion batch: {f['key']} failed: {f['reason']}", file=sys.stderr)
    return result.exit_code
