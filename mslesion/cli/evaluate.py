"""`mslesion evaluate`: score predicted lesion masks against reference masks (one pair or a cohort)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Dice, lesion-wise F1 and volume difference of masks against references",
                       description="Score one --pred/--ref pair, or a cohort listed in --pairs CSV (columns "
                                   "subject,pred,ref; relative paths from the CSV's folder). Masks must be binary "
                                   "(0 and one other value); a probability or label map is refused unless "
                                   "--threshold is given. A prediction on another grid is resampled onto the "
                                   "reference's (nearest neighbour) and the output says so (pred_resampled). A pair "
                                   "that cannot be scored is recorded and the others go on; exit code 1 if any failed.")
    p.add_argument("--pred", type=Path, help="predicted lesion mask")
    p.add_argument("--ref", type=Path, help="reference (expert) lesion mask")
    p.add_argument("--pairs", type=Path, help="CSV with columns subject,pred,ref (cohort evaluation)")
    p.add_argument("--out", type=Path, help="also write the scores: .json (summary and rows) or .csv (one row each)")
    p.add_argument("--connectivity", type=int, choices=[6, 18, 26], default=26,
                   help="voxels joined into one lesion: 6 (faces), 18 (faces, edges) or 26 (faces, edges, "
                        "corners) neighbours (default: 26)")
    p.add_argument("--min-lesion-mm3", type=float, default=0.0,
                   help="drop lesions smaller than this from both masks before scoring (default 0: keep all)")
    p.add_argument("--threshold", type=_positive, default=None, metavar="T",
                   help="count voxels >= T as lesion in a mask that is not binary, e.g. 0.5 for a "
                        "lesion_probability.nii.gz (default: none; non-binary masks are refused)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..atomic import write_json, write_text
    from ..errors import InputError

    single = args.pred is not None or args.ref is not None
    if (args.pairs is not None and single) or (args.pairs is None and (args.pred is None or args.ref is None)):
        raise InputError(None, "give either --pred and --ref, or --pairs CSV")
    if not args.min_lesion_mm3 >= 0:  # also refuses nan
        raise InputError(None, f"--min-lesion-mm3 must be >= 0, got {args.min_lesion_mm3}")
    if args.out is not None and args.out.suffix.lower() not in (".json", ".csv"):
        raise InputError(args.out, "--out must end in .json or .csv")
    if args.pairs is None:
        from ..io import load_mask
        from ..metrics import evaluate

        scores = evaluate(load_mask(args.pred, "prediction"), load_mask(args.ref, "reference"),
                          connectivity=args.connectivity, min_lesion_mm3=args.min_lesion_mm3,
                          threshold=args.threshold).as_dict()
        print(json.dumps(scores, indent=2))
        if args.out is not None:
            if args.out.suffix.lower() == ".json":
                write_json(args.out, scores)
            else:
                write_text(args.out, _csv([{"pred": str(args.pred), "ref": str(args.ref), **scores}]))
        return 0
    from ..cohort_eval import evaluate_pairs, read_pairs

    cohort = evaluate_pairs(read_pairs(args.pairs), connectivity=args.connectivity,
                            min_lesion_mm3=args.min_lesion_mm3, threshold=args.threshold)
    summary = cohort.summary()
    print(json.dumps(summary, indent=2))
    for failure in cohort.failures:
        print(f"mslesion evaluate: {failure['subject']} not scored: {failure['error']}", file=sys.stderr)
    if args.out is not None:
        if args.out.suffix.lower() == ".json":
            write_json(args.out, {"summary": summary, "subjects": cohort.rows, "failures": cohort.failures})
        else:
            write_text(args.out, _csv(cohort.table()))
    return 1 if cohort.failures else 0


def _positive(text: str) -> float:
    """argparse type of --threshold: a finite number > 0."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0.0 < value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _csv(rows: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
