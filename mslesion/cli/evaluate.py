"""`mslesion evaluate`: score a predicted mask against a reference mask."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..io import load_volume
from ..metrics import evaluate


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Dice, lesion-wise F1 and volume difference of a mask against a reference")
    p.add_argument("--pred", required=True, type=Path, help="predicted lesion mask")
    p.add_argument("--ref", required=True, type=Path, help="reference (expert) lesion mask")
    p.add_argument("--connectivity", type=int, choices=[6, 18, 26], default=26, help="lesion connectivity")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    pred = load_mask(args.pred, "prediction")
    ref = load_mask(args.ref, "reference")
    scores = evaluate(pred, ref, connectivity=args.connectivity)
    print(json.dumps(scores.as_dict(), indent=2))
    return 0


def load_mask(path: Path, role: str):
    """Load a mask; an empty mask is valid here (unlike an all-zero image)."""
    from ..errors import InputError

    try:
        return load_volume(path, role=f"{role} mask")
    except InputError as exc:
        if "all zeros" not in exc.problem:
            raise
        from ..io import _load_nifti

        return _load_nifti(path, f"{role} mask")
