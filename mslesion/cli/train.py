"""`mslesion train`: train a lesion U-Net on cases prepared by scripts/prepare_training_data.py."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a lesion segmentation U-Net (see scripts/train.py)",
                       description="Train a lesion U-Net on npz cases made by scripts/prepare_training_data.py; "
                                   "optionally package it as a model folder.")
    add_training_arguments(p)
    p.add_argument("--package-as", type=Path, help="also write a model folder here (id = folder name)")
    p.set_defaults(func=run)


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The training options shared by `mslesion train` and scripts/train.py."""
    p.add_argument("--data", required=True, type=Path, help="folder with cases.json and <case>.npz")
    p.add_argument("--out", required=True, type=Path, help="run folder (weights.pt, train_log.jsonl, summary)")
    p.add_argument("--channels", default="flair", help="comma list from flair,t1,t2, flair first")
    p.add_argument("--holdout", default="", help="comma list of subjects to leave out and predict")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--max-seconds", type=float, default=1e9, help="time box (the LR schedule follows it)")
    p.add_argument("--patch", type=int, nargs=3, default=(112, 112, 112))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.add_argument("--session-seconds", type=float, default=1e9,
                   help="end this call after this long with a checkpoint; the same command resumes")


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..model.store import package_run
    from ..model.training import TrainConfig, train

    channels = tuple(c.strip() for c in args.channels.split(",") if c.strip())
    if not channels or channels[0] != "flair" or not set(channels) <= {"flair", "t1", "t2"}:
        raise InputError(None, f"--channels must be flair[,t1][,t2], got {args.channels!r}")
    if not (args.data / "cases.json").is_file():
        raise InputError(args.data, "no cases.json here (run scripts/prepare_training_data.py first)")
    cfg = TrainConfig(data_dir=str(args.data), out_dir=str(args.out), channels=channels,
                      holdout=tuple(h for h in args.holdout.split(",") if h), iterations=args.iterations,
                      max_seconds=args.max_seconds, patch=tuple(args.patch), batch=args.batch, seed=args.seed,
                      device=args.device, session_seconds=args.session_seconds)
    try:
        summary = train(cfg)
    except ValueError as exc:  # a checkpoint of another run in --out
        raise InputError(args.out, str(exc)) from exc
    if summary["complete"] and args.package_as is not None:
        package_run(args.out, args.package_as, args.package_as.name)
    print(json.dumps({k: summary[k] for k in ("complete", "iterations", "train_seconds", "device")}))
    return 0
