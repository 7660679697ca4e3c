#!/usr/bin/env python
"""Training throughput of one process: iterations/s and voxels/s per batch size and speed option.

    .venv/bin/python scripts/bench_train_speed.py [--data .devdata/train_v4 | --synthetic 4] [--device cuda] \\
        [--arch 3d] [--patch 80 80 80] [--batch 2 8] [--steps 50] [--warmup 10] \\
        [--variants plain channels_last compile compile+channels_last]

Each variant trains a fresh network with the real training loop (patch sampling, augmentation, the
recipe's loss, AdamW; ``mslesion.model.training.train``) for warmup + steps iterations in a temporary
folder, and times the last ``steps`` from the run's log.  Printed per row: iterations/s, output voxels/s
(3-D: batch x patch; 2.5-D: batch x the centre slice, as the issue's CPU figures count them), and the peak
GPU memory on CUDA.  ``--synthetic N`` trains on N generated 160 x 192 x 160 cases instead of prepared
data (throughput does not depend on the images), so the benchmark runs on a bare machine.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mslesion.model.augment import AugmentConfig  # noqa: E402
from mslesion.model.training import TrainConfig, train  # noqa: E402

VARIANTS = {"plain": (False, False), "channels_last": (True, False), "compile": (False, True),
            "compile+channels_last": (True, True)}


def write_synthetic_cases(folder: Path, n: int, shape: tuple[int, int, int] = (160, 192, 160)) -> Path:
    """``n`` cases in the prepared-data layout: a bright ellipsoid 'brain' with noise and a few lesions."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    brain = (grid ** 2).sum(0) < 0.8
    infos = []
    for i in range(n):
        image = np.zeros((3,) + shape, np.float16)
        flair = rng.normal(0, 0.3, shape).astype(np.float32) * brain
        labels = np.zeros(shape, np.uint8)
        for _ in range(12):
            c = rng.uniform(-0.5, 0.5, 3)
            r = rng.uniform(0.02, 0.08)
            blob = ((grid - c[:, None, None, None]) ** 2).sum(0) < r ** 2
            labels |= blob.astype(np.uint8)
            flair[blob] += 2.0
        image[0] = flair
        np.savez(folder / f"syn{i}.npz", image=image, present=np.array([1, 0, 0], np.uint8), labels=labels[None],
                 brain=brain.astype(np.uint8), offset=np.zeros(3, int), work_shape=np.array(shape),
                 work_affine=np.eye(4))
        infos.append({"case": f"syn{i}", "subject": f"syn{i}", "contrasts": ["flair"]})
    (folder / "cases.json").write_text(json.dumps({"channels": ["flair", "t1", "t2"], "cases": infos}))
    return folder


def time_variant(data: Path, args: argparse.Namespace, batch: int, channels_last: bool, compiled: bool) -> dict:
    """Train warmup + steps iterations; iterations/s over the last ``steps`` (from the run's log)."""
    import torch

    every = math.gcd(args.warmup, args.steps)
    with tempfile.TemporaryDirectory() as run:
        cfg = TrainConfig(data_dir=str(data), out_dir=run, arch=args.arch, patch=tuple(args.patch), batch=batch,
                          base=args.base, levels=args.levels, iterations=args.warmup + args.steps, device=args.device,
                          log_every=every, checkpoint_every=0, holdout_predict=False, lesion_sampling="component",
                          augment=AugmentConfig(p_synthetic=0.3, p_tissue_bump=0.3), small_lesion_weight=4.0,
                          channels_last=channels_last, compile=compiled)
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        summary = train(cfg)
        wall = time.perf_counter() - t0
        log = [json.loads(line) for line in (Path(run) / "train_log.jsonl").read_text().splitlines()]
    at = {r["it"]: r["s"] for r in log}
    seconds = at[args.warmup + args.steps] - at[args.warmup]
    per_it = batch * (math.prod(args.patch) if args.arch == "3d" else args.patch[1] * args.patch[2])
    row = {"batch": batch, "channels_last": channels_last, "compile": compiled, "it_per_s": args.steps / seconds,
           "voxels_per_s": args.steps * per_it / seconds, "wall_s": wall, "device": summary["device"]}
    if args.device == "cuda":
        row["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--data", type=Path, default=Path(".devdata/train_v4"), help="prepared cases (cases.json)")
    src.add_argument("--synthetic", type=int, metavar="N", help="train on N generated cases instead")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--arch", choices=["3d", "2.5d"], default="3d")
    ap.add_argument("--patch", type=int, nargs=3, default=(80, 80, 80))
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--batch", type=int, nargs="+", default=[2])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["plain", "channels_last"])
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic_cases(Path(tmp) / "cases", args.synthetic) if args.synthetic else args.data
        if not (data / "cases.json").is_file():
            ap.error(f"{data}: no cases.json (prepare it with scripts/prepare_training_data.py, or pass --synthetic N)")
        rows = []
        print(f"arch {args.arch}, patch {tuple(args.patch)}, base {args.base}, levels {args.levels}, "
              f"{args.steps} timed steps after {args.warmup}, torch {torch.__version__}")
        for batch in args.batch:
            for name in args.variants:
                row = time_variant(data, args, batch, *VARIANTS[name])
                rows.append({"variant": name, **row})
                mem = f", peak GPU {row['peak_gpu_gib']:.1f} GiB" if "peak_gpu_gib" in row else ""
                print(f"{row['device']:>6s} batch {batch:3d} {name:22s} {row['it_per_s']:7.2f} it/s "
                      f"{row['voxels_per_s'] / 1e6:8.2f} M voxels/s (run {row['wall_s']:.0f} s{mem})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
