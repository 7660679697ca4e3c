#!/usr/bin/env python
"""Cord plausibility features (mslesion.spine.plausibility) on real spine and brain scans.

For every image and contrast: the features of the traced "cord", the verdict, and (spine scans
with a manual cord mask) the cord Dice.  Figures are quoted in notes/issue-16.md.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/spine_cord_check.py [--contrasts t2 t1] [--only brain|spine]
        [--save DIR] [FILES...]
    .venv/bin/python scripts/spine_cord_check.py --npz DIR   # table again from saved per-slice measures
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mslesion.io import _load_nifti, load_volume
from mslesion.metrics import dice
from mslesion.spine.contrast import cord_score
from mslesion.spine.cord import segment_cord
from mslesion.spine.grid import to_native, to_working
from mslesion.spine.plausibility import cord_problems, slice_measures, summarise

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
SPINE = {  # image -> manual cord mask (or None)
    "spine/sct_testing/t2/t2.nii.gz": "spine/sct_testing/t2/t2_seg-manual.nii.gz",
    "spine/sct_testing/t2/t2_fake_lesion.nii.gz": "spine/sct_testing/t2/t2_fake_lesion_sc_seg.nii.gz",
    "spine/sct_testing/t2s/t2s.nii.gz": "spine/sct_testing/t2s/t2s_seg.nii.gz",
    "spine/sct_testing/t1/t1w.nii.gz": "spine/sct_testing/t1/t1w_seg-manual.nii.gz",
    "spine/ivadomed_testing/sub-unf01/sub-unf01_T1w.nii.gz": "spine/ivadomed_testing/sub-unf01/sub-unf01_T1w_seg-manual.nii.gz",
    "spine/ivadomed_testing/sub-unf01/sub-unf01_T2w.nii.gz": "spine/ivadomed_testing/sub-unf01/sub-unf01_T2w_seg-manual.nii.gz",
    "spine/ivadomed_testing/sub-unf01/sub-unf01_T2star.nii.gz":
        "spine/ivadomed_testing/sub-unf01/sub-unf01_T2star_seg-manual.nii.gz",
    "spine/sct_tutorial/t2_ms/t2.nii.gz": None,
    "spine/sct_tutorial/t2_lumbar/t2_lumbar.nii.gz": None,
}


def brain_images() -> list[str]:
    keep = ("flair", "t1", "t2", "t1post")
    return sorted(str(p.relative_to(DATA)) for p in (DATA / "brain_ms").glob("*/*/*.nii.gz")
                  if p.name.split(".")[0].split("_")[-1] in keep)


def from_npz(folder: Path) -> None:
    """The features and verdicts of saved per-slice measures, with the current criteria."""
    print("image | contrast | length_mm | tube_fraction | csa_mm2 | score | verdict")
    for f in sorted(folder.glob("*.npz")):
        m = dict(np.load(f))
        dz = float(m.pop("dz"))
        *parts, contrast = f.stem.split("__")
        feats = summarise(m, dz)
        problems = cord_problems(feats)
        print(f"{'/'.join(parts)} | {contrast} | {feats['length_mm']} | {feats['tube_fraction']} | "
              f"{feats['csa_median_mm2']} | {cord_score(feats):.2f} | {'cord' if not problems else 'no cord'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--contrasts", nargs="+", default=["t2", "t2s", "t1"])
    ap.add_argument("--save", type=Path, default=None, help="folder for the per-slice measures (.npz)")
    ap.add_argument("--only", choices=["brain", "spine"], default=None)
    ap.add_argument("--npz", type=Path, default=None, help="re-summarise the measures saved with --save (no segmentation)")
    args = ap.parse_args()
    if args.npz:
        return from_npz(args.npz)
    files = args.files or ([] if args.only == "brain" else list(SPINE)) + ([] if args.only == "spine" else brain_images())
    print("image | contrast | found | length_mm | tube | tube_mm | csa_mm2 | csa_cv | csf_encl | sleeve | inner_cv | csf_contrast | score | dice | verdict | s")
    for rel in files:
        vol = load_volume(DATA / rel)
        work = to_working(vol)
        for contrast in args.contrasts:
            t0 = time.perf_counter()
            cord = segment_cord(work, contrast)
            m = slice_measures(work, cord, contrast)
            f = summarise(m, float(work.zooms[2]))
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                np.savez(args.save / f"{rel.replace('/', '__')}__{contrast}.npz", dz=work.zooms[2], **m)
            ref = SPINE.get(rel)
            d = "-"
            if ref:
                native = to_native(work.with_data(cord.soft), vol)
                d = f"{dice(native.data > 0, _load_nifti(DATA / ref, 'mask').data > 0.5):.3f}"
            problems = cord_problems(f)
            print(f"{rel} | {contrast} | {f['found_fraction']} | {f['length_mm']} | {f['tube_fraction']} | "
                  f"{f['tube_length_mm']} | {f['csa_median_mm2']} | {f['csa_cv']} | {f['csf_enclosure']} | {f['sleeve']} | "
                  f"{f['inner_cv']} | {f['csf_contrast']} | {cord_score(f):.2f} | {d} | "
                  f"{'cord' if not problems else 'NO: ' + '; '.join(problems)} | {time.perf_counter() - t0:.0f}",
                  flush=True)


if __name__ == "__main__":
    main()
