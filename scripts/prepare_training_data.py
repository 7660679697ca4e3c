#!/usr/bin/env python
"""Preprocess the labelled shared cases into compact npz files for training.

    .venv/bin/python scripts/prepare_training_data.py --data ../shared/data --out .devdata/train_v3

Each case runs through :func:`mslesion.preprocess.preprocess` (the same code as
inference), the expert masks are resampled onto the working grid by world
coordinates, and everything is cropped to the brain box (+margin) and saved as
float16 images / uint8 masks.  The npz files need only numpy to read, so they can
travel to a machine without nibabel.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from mslesion.io import load_volume
from mslesion.preprocess import pipeline as pre_pipeline
from mslesion.preprocess.resample import resample_like

log = logging.getLogger("prepare_training_data")

#: (case id, subject id, folder under data root, contrasts, rater mask files)
CASES = [
    ("ljubljana_patient07", "ljubljana_patient07", "brain_ms/ljubljana/patient07", ("flair", "t1", "t2"), ("lesions",)),
    ("ljubljana_patient26", "ljubljana_patient26", "brain_ms/ljubljana/patient26", ("flair", "t1", "t2"), ("lesions",)),
    ("isbi_training01", "isbi_training01", "brain_ms/isbi2015/training01", ("flair",), ("lesions_rater1", "lesions_rater2")),
    ("isbi_training02", "isbi_training02", "brain_ms/isbi2015/training02", ("flair",), ("lesions_rater1", "lesions_rater2")),
    ("isbi_training03", "isbi_training03", "brain_ms/isbi2015/training03", ("flair",), ("lesions_rater1", "lesions_rater2")),
    # MSLesSeg (Guarnera et al., Sci Data 2025, CC BY 4.0); P14's three visits are one subject
    ("mslesseg_P14_T1", "mslesseg_P14", "brain_ms/mslesseg/P14_T1", ("flair", "t1"), ("lesions",)),
    ("mslesseg_P14_T2", "mslesseg_P14", "brain_ms/mslesseg/P14_T2", ("flair", "t1", "t2"), ("lesions",)),
    ("mslesseg_P14_T3", "mslesseg_P14", "brain_ms/mslesseg/P14_T3", ("flair", "t1", "t2"), ("lesions",)),
    ("mslesseg_P18_T1", "mslesseg_P18", "brain_ms/mslesseg/P18_T1", ("flair", "t1"), ("lesions",)),
    ("mslesseg_P39_T1", "mslesseg_P39", "brain_ms/mslesseg/P39_T1", ("flair", "t1"), ("lesions",)),
]
ALL_CHANNELS = ("flair", "t1", "t2")
MARGIN = 12


def brain_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    idx = np.nonzero(mask)
    return tuple(slice(max(0, int(i.min()) - margin), min(s, int(i.max()) + margin + 1)) for i, s in zip(idx, mask.shape))


def prepare_case(root: Path, case: tuple, out: Path, entry: str = "preprocess") -> dict:
    case_id, subject, folder, contrasts, raters = case
    t0 = time.perf_counter()
    vols = {c: load_volume(root / folder / f"{c}.nii.gz", role=c.upper()) for c in contrasts}
    pre = getattr(pre_pipeline, entry)(vols)
    brain = pre.brain_mask.data > 0
    box = brain_box(brain, MARGIN)
    image = np.zeros((len(ALL_CHANNELS), *brain[box].shape), np.float16)
    present = np.zeros(len(ALL_CHANNELS), np.uint8)
    for i, c in enumerate(ALL_CHANNELS):
        if c in pre.images:
            image[i] = pre.images[c].data[box].astype(np.float16)
            present[i] = 1
    labels = []
    for r in raters:
        ref = load_volume(root / folder / f"{r}.nii.gz", role="lesion mask")
        ref = ref.with_data((ref.data > 0).astype(np.float32))
        on_grid = resample_like(ref, pre.flair, order=1).data >= 0.5
        labels.append(on_grid[box].astype(np.uint8))
    offset = np.array([s.start for s in box])
    np.savez_compressed(
        out / f"{case_id}.npz", image=image, present=present, labels=np.stack(labels), brain=brain[box].astype(np.uint8),
        offset=offset, work_shape=np.array(pre.flair.shape), work_affine=pre.flair.affine,
        rim_trimmed_ml=np.float32(pre.brain_mask.meta.get("rim_trimmed_ml", 0.0)),
    )
    info = {"case": case_id, "subject": subject, "folder": folder, "contrasts": list(contrasts), "raters": list(raters),
            "work_shape": list(pre.flair.shape), "crop_shape": list(image.shape[1:]), "offset": offset.tolist(),
            "lesion_voxels": [int(l.sum()) for l in labels], "brain_voxels": int(brain.sum()),
            "seconds": round(time.perf_counter() - t0, 1), "preprocess_timings": pre.timings, "entry": entry,
            "brain_method": str(pre.brain_mask.meta.get("brain_method", "head-foreground")),
            "rim_trimmed_ml": pre.brain_mask.meta.get("rim_trimmed_ml")}
    log.info("%s", info)
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path(".devdata/train_v3"))
    ap.add_argument("--cases", nargs="*", help="subset of case ids")
    ap.add_argument("--entry", default="preprocess",
                    help="function of mslesion.preprocess.pipeline to use (default: preprocess, as at inference)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    infos = [prepare_case(args.data, c, args.out, args.entry) for c in CASES if not args.cases or c[0] in args.cases]
    (args.out / "cases.json").write_text(json.dumps({"channels": list(ALL_CHANNELS), "cases": infos}, indent=2))
    total = sum(p.stat().st_size for p in args.out.glob("*.npz"))
    print(f"wrote {len(infos)} cases to {args.out} ({total / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
