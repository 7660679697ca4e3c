#!/usr/bin/env python
"""Train one lesion U-Net (the reproducible training command).

    .venv/bin/python scripts/prepare_training_data.py --out .devdata/train_v3
    .venv/bin/python scripts/train.py --data .devdata/train_v3 --out .devdata/runs/flair \
        --channels flair --iterations 3000 --seed 0

A run can be split over several calls: ``--session-seconds S`` stops after S seconds with
``checkpoint.pt`` in ``--out``, and the same command resumes it (set ``--iterations``, not
``--max-seconds``, as the schedule's length then).  Leave-one-subject-out folds: add ``--holdout <subject>``; the held-out case is then
predicted at the end (``pred_<case>.npz``).  ``scripts/gpu_train.sh`` runs all folds
and the final models in parallel on one GPU.  Package a run into ``models/<id>/`` with
``scripts/train.py package RUN_DIR models/<id> <id>`` (or ``mslesion train ... --package-as``), and
combine packaged models into one (mean probability) with ``scripts/train.py combine models/<id> <id>
--parts ID ID``. ``--arch 2.5d --patch 5 160 160`` trains the 2.5-D model (a 2-D U-Net on stacks of 5
neighbouring slices, cut along all three axes).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a bare checkout too

from mslesion.cli.train import add_training_arguments  # noqa: E402
from mslesion.model.augment import AugmentConfig  # noqa: E402
from mslesion.model.training import TrainConfig, train  # noqa: E402


def parse(argv: list[str] | None = None) -> TrainConfig:
    ap = argparse.ArgumentParser(description="Train a lesion segmentation U-Net on prepared npz cases.")
    add_training_arguments(ap)
    ap.add_argument("--base", type=int, default=16, help="channels of the first level (default: 16)")
    ap.add_argument("--levels", type=int, default=4, help="resolutions of the U-Net (default: 4)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--infer-window", type=int, nargs=3, default=(160, 192, 160))
    ap.add_argument("--synthetic-lesions", type=float, default=0.0, metavar="P",
                    help="probability per patch of pasting synthetic lesions into normal tissue")
    ap.add_argument("--no-holdout-tta", action="store_true", help="skip flip TTA when predicting held-out cases")
    ap.add_argument("--no-holdout-predict", action="store_true",
                    help="leave the held-out cases out of training but do not predict them at the end")
    ap.add_argument("--init", default="", help="start from these weights (fine-tuning), e.g. a run's weights.pt")
    ap.add_argument("--lesion-sampling", choices=["voxel", "component"], default="voxel",
                    help="lesion-centred patches: uniform over lesion voxels, or over connected lesions")
    ap.add_argument("--tissue-bump", type=float, default=0.0, metavar="P",
                    help="probability per patch of a grey/white-contrast change (a bump of FLAIR intensity)")
    ap.add_argument("--small-lesion-weight", type=float, default=1.0, metavar="W",
                    help="BCE weight up to W on the voxels of lesions under 100 voxels (sqrt(100/size); 1: off)")
    ap.add_argument("--blob-loss", type=float, default=0.0, metavar="W",
                    help="add W x the lesion-wise Dice (every lesion in a patch weighs alike; 0: off)")
    ap.add_argument("--blob-margin", type=int, default=6, metavar="V",
                    help="voxels around each lesion in which its blob Dice is taken (0: the whole patch)")
    ap.add_argument("--false-blob-loss", type=float, default=0.0, metavar="W",
                    help="add W x the mean BCE of each false lesion (component >= 0.5 away from every lesion)")
    ap.add_argument("--lesion-fraction", type=float, default=0.6, help="share of patches centred on a lesion")
    a = ap.parse_args(argv)
    channels = tuple(c.strip() for c in a.channels.split(",") if c.strip())
    if not channels or channels[0] != "flair":
        ap.error("--channels must start with flair")
    return TrainConfig(data_dir=str(a.data), out_dir=str(a.out), channels=channels,
                       holdout=tuple(h for h in a.holdout.split(",") if h), iterations=a.iterations,
                       max_seconds=a.max_seconds, patch=tuple(a.patch), batch=a.batch, base=a.base, levels=a.levels, lr=a.lr,
                       seed=a.seed, device=a.device, infer_window=tuple(a.infer_window),
                       holdout_tta=not a.no_holdout_tta, holdout_predict=not a.no_holdout_predict, session_seconds=a.session_seconds,
                       augment=AugmentConfig(p_synthetic=a.synthetic_lesions, p_tissue_bump=a.tissue_bump),
                       init_weights=a.init, small_lesion_weight=a.small_lesion_weight,
                       lesion_sampling=a.lesion_sampling, lesion_fraction=a.lesion_fraction,
                       blob_weight=a.blob_loss, blob_margin=a.blob_margin,
                       false_blob_weight=a.false_blob_loss, arch=a.arch, channels_last=a.channels_last,
                       compile=a.compile)


def package(argv: list[str]) -> int:
    """``scripts/train.py package RUN_DIR DEST_FOLDER MODEL_ID [--card CARD.md] [--no-auto] [--also RUN ...]``."""
    from mslesion.model.store import package_run

    ap = argparse.ArgumentParser(description="Package a training run as a model folder.")
    ap.add_argument("run", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("model_id")
    ap.add_argument("--card", type=Path, help="model card markdown to copy in")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--min-peak", type=float, default=0.0,
                    help="keep a lesion only where its highest probability reaches this (choose it on held-out "
                         "scans with scripts/holdout_eval.py score --min-peak; default 0: off)")
    ap.add_argument("--no-auto", action="store_true", help="never pick this model for --model auto")
    ap.add_argument("--cpu-window", type=int, nargs=3, help="CPU sliding window (default: the training patch)")
    ap.add_argument("--also", type=Path, nargs="+", default=[],
                    help="further runs (seeds/folds) of the same set-up: package the ensemble (mean probability)")
    a = ap.parse_args(argv)
    card = a.card.read_text(encoding="utf-8") if a.card else None
    extra = {"auto_select": not a.no_auto, **({"min_peak": a.min_peak} if a.min_peak > 0 else {})}
    folder = package_run(a.run, a.dest, a.model_id, a.threshold, card_md=card, extra=extra,
                         cpu_window=a.cpu_window, also=a.also)
    print(json.dumps(json.loads((folder / "model.json").read_text())["sha256"]))
    return 0


def combine(argv: list[str]) -> int:
    """``scripts/train.py combine DEST_FOLDER MODEL_ID --parts ID ID ... [--part-weights W W ...] [--threshold T]
    [--min-peak P] [--validation FILE.json] [--card CARD.md]``."""
    from mslesion.model.combined import write_combined_folder

    ap = argparse.ArgumentParser(description="Write a combined model folder: the mean probability of sibling "
                                             "model folders (e.g. a 3-D and a 2.5-D model), each pinned by sha256.")
    ap.add_argument("dest", type=Path, help="the new folder, beside its parts (e.g. models/mslesion-flair-v4)")
    ap.add_argument("model_id")
    ap.add_argument("--parts", nargs="+", required=True, help="ids (folder names) of the parts, beside DEST")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--min-peak", type=float, default=0.0)
    ap.add_argument("--part-weights", type=float, nargs="+",
                    help="each part's weight in the mean, in the order of --parts (default equal)")
    ap.add_argument("--card", type=Path, help="model card markdown to copy in")
    ap.add_argument("--no-auto", action="store_true", help="never pick this model for --model auto")
    ap.add_argument("--validation", type=Path,
                    help="JSON file with the model's measured validation block (copied to model.json 'validation', "
                         "and from there to report.json)")
    a = ap.parse_args(argv)
    extra: dict = {"auto_select": not a.no_auto}
    if a.validation:
        extra["validation"] = json.loads(a.validation.read_text(encoding="utf-8"))
    folder = write_combined_folder(a.dest, a.model_id, a.parts, a.threshold, a.min_peak, extra=extra,
                                   card_md=a.card.read_text(encoding="utf-8") if a.card else None,
                                   part_weights=a.part_weights)
    print(json.dumps(json.loads((folder / "model.json").read_text())["parts_sha256"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if argv[:1] == ["package"]:
        return package(argv[1:])
    if argv[:1] == ["combine"]:
        return combine(argv[1:])
    summary = train(parse(argv))
    print(json.dumps({k: summary.get(k) for k in ("complete", "iterations", "train_seconds", "total_seconds", "device")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
