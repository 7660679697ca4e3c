"""`mslesion train`: train a lesion U-Net on prepared (preprocessed, cropped) cases."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

#: the training-data layout, told in `mslesion train -h`
DATA_FORMAT = ("--data is a folder with cases.json ({\"channels\": [\"flair\", \"t1\", \"t2\"], \"cases\": "
               "[{\"case\": ID, \"subject\": SUBJECT, \"contrasts\": [...]}, ...]}) and one ID.npz per case "
               "holding image (3 x D x H x W float: flair, t1, t2 preprocessed as mslesion analyze does, zeros "
               "where absent), present (3 flags), labels (raters x D x H x W, 0/1) and brain (D x H x W, 0/1). "
               "The mslesion source repository builds such a folder from labelled scans "
               "(prepare_training_data.py there); it is not part of the installed package.")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a lesion segmentation U-Net on prepared cases",
                       description="Train a lesion U-Net on prepared cases and optionally package it as a model "
                                   "folder (model.json, weights.pt) for --model. " + DATA_FORMAT)
    add_training_arguments(p)
    p.add_argument("--package-as", type=Path, metavar="FOLDER",
                   help="when training completes, also write a model folder here (model id = the folder's name); "
                        "use it with mslesion analyze --model FOLDER")
    p.set_defaults(func=run)


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The training options shared by `mslesion train` and the repository's training script."""
    p.add_argument("--data", required=True, type=Path, help="folder with cases.json and <case>.npz (see above)")
    p.add_argument("--out", required=True, type=Path,
                   help="run folder: weights.pt, train_log.jsonl, train_summary.json and a checkpoint to resume from")
    p.add_argument("--channels", default="flair",
                   help="input contrasts, a comma list from flair,t1,t2 with flair first (default: flair)")
    p.add_argument("--holdout", default="",
                   help="comma list of subjects (or case ids) to leave out of training and predict at the end "
                        "(default: none)")
    p.add_argument("--iterations", type=int, default=3000, help="training steps (default: %(default)s)")
    p.add_argument("--max-seconds", type=float, default=1e9,
                   help="time box in seconds; the learning-rate schedule follows it (default: no limit)")
    p.add_argument("--patch", type=int, nargs=3, default=(112, 112, 112), metavar=("D", "H", "W"),
                   help="training patch size in voxels of the 1 mm working grid (default: 112 112 112)")
    p.add_argument("--batch", type=int, default=2, help="patches per step (default: %(default)s)")
    p.add_argument("--arch", choices=["3d", "2.5d"], default="3d",
                   help="3d: a 3-D U-Net on D x H x W patches; 2.5d: a 2-D U-Net on stacks of D neighbouring "
                        "slices of H x W, cut along all three axes and fused at inference (default: 3d)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                   help="where to train (auto: cuda, then mps, then cpu)")
    p.add_argument("--session-seconds", type=float, default=1e9,
                   help="end this call after this long with a checkpoint; the same command resumes "
                        "(default: no limit)")
    p.add_argument("--channels-last", action="store_true",
                   help="channels-last memory layout for the network and its input (faster on GPUs)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (slow first steps, then faster on GPUs; needs a C++ compiler "
                        "on the CPU)")


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..model.store import package_run
    from ..model.training import TrainConfig, train

    channels = tuple(c.strip() for c in args.channels.split(",") if c.strip())
    if not channels or channels[0] != "flair" or not set(channels) <= {"flair", "t1", "t2"}:
        raise InputError(None, f"--channels must be flair[,t1][,t2], got {args.channels!r}")
    if not (args.data / "cases.json").is_file():
        raise InputError(args.data, "no cases.json here: --data must be a folder of prepared cases "
                                    "(see mslesion train -h)")
    cfg = TrainConfig(data_dir=str(args.data), out_dir=str(args.out), channels=channels,
                      holdout=tuple(h for h in args.holdout.split(",") if h), iterations=args.iterations,
                      max_seconds=args.max_seconds, patch=tuple(args.patch), batch=args.batch, seed=args.seed,
                      device=args.device, session_seconds=args.session_seconds, arch=args.arch,
                      channels_last=args.channels_last, compile=args.compile)
    try:
        summary = train(cfg)
    except ValueError as exc:  # a checkpoint of another run in --out
        raise InputError(args.out, str(exc)) from exc
    if summary["complete"] and args.package_as is not None:
        package_run(args.out, args.package_as, args.package_as.name)
    print(json.dumps({k: summary[k] for k in ("complete", "iterations", "train_seconds", "device")}))
    return 0
