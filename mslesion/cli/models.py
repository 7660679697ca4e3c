"""`mslesion models`: the installed lesion models, with their contrasts, training and hash check."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

#: what a model's sha256_ok says (True, False, or None/absent: not checked)
SHA256_WORDS: dict[object, str] = {True: "sha256 ok", False: "SHA256 MISMATCH"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the installed lesion models (and check their weights)",
                       description="List the model folders under models/ (or --root): id, contrasts, whether "
                                   "--model auto may pick it, training, and the model card. --verify recomputes "
                                   "each weights file's sha256; exit code 1 if any does not match.")
    p.add_argument("--root", type=Path, default=None, help="folder of model folders (default: the installed models/)")
    p.add_argument("--verify", action="store_true", help="recompute the sha256 of every weights file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def part_words(parts: list[str], weights: list[float]) -> str:
    """The parts of a combined model, with their weights in the mean when these are not equal."""
    if len(set(round(w, 6) for w in weights)) <= 1:
        return ", ".join(parts)
    return ", ".join(f"{p} ({w:.2f})" for p, w in zip(parts, weights))


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..model.store import describe_models, models_root
    from ..preprocess.brain_net import weights_status

    root = args.root or models_root()
    if not root.is_dir():
        raise InputError(root, "no such models folder")
    rows = describe_models(root, verify=args.verify)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"models in {root}:")
        for r in rows:
            if "error" in r:
                print(f"  {r['id']}: unreadable ({r['error']})")
                continue
            check = SHA256_WORDS.get(r.get("sha256_ok"), "sha256 not checked")
            trained = ", ".join(f"{k} {v}" for k, v in r["trained"].items())
            print(f"  {r['id']}: {contrast_words(r['channels'], r['required'])}; {selection_words(r)}; "
                  + (f"mean probability of the models {part_words(r['parts'], r['part_weights'])} "
                     "(no weights of its own), "
                     if r.get("parts") else
                     f"ensemble of {r['ensemble_members']} networks (mean probability), "
                     if r.get("ensemble_members", 1) > 1 else "")
                  + ("" if r.get("parts") else f"{r['weights_mb']} MB, ") + check
                  + (f"; trained: {trained}" if trained else "") + (f"; card: {r['card']}" if r["card"] else ""))
        if not rows:
            print("  (none)")
    brain = weights_status(verify=args.verify)
    if not args.json:
        check = SHA256_WORDS.get(brain.get("sha256_ok"), "sha256 not checked")
        state = brain.get("error") or (f"{brain['folder']}, {check}" if brain["present"] else "weights missing")
        print(f"brain extraction (default): deepbet: {state}")
    bad = [r for r in [*rows, brain] if "error" in r or r.get("sha256_ok") is False or r.get("present") is False]
    return 1 if bad else 0


def _names(contrasts: list[str]) -> str:
    """['flair', 't1', 't2'] -> 'FLAIR, T1 and T2'."""
    names = [c.upper() for c in contrasts]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def contrast_words(channels: list[str], required: list[str]) -> str:
    """What a model needs, in words: 'needs FLAIR and T1; uses T2 too when given'."""
    optional = [c for c in channels if c not in required]
    return f"needs {_names([c for c in channels if c in required])}" + (
        f"; also uses {_names(optional)} when given, works without" if optional else "")


def selection_words(row: dict) -> str:
    """When the model runs: picked by --model auto (and for which inputs), or only when named."""
    from ..model import DEFAULT_FLAIR_MODEL, DEFAULT_MULTI_MODEL

    if row["auto_select"] and row["id"] == DEFAULT_FLAIR_MODEL:
        return "the default (--model auto)"
    if row["auto_select"] and row["id"] == DEFAULT_MULTI_MODEL:
        return "the default (--model auto) when a T1 is given"
    return f"runs only when named: --model {row['id']}"
