#!/usr/bin/env python
"""Cord Dice of every shared spine scan with --contrast, without it (contrast from the file name),
and with the name hidden (contrast from the image).  Figures quoted in notes/issue-16.md.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_spine_contrast.py [--data ../shared/data/spine]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mslesion.errors import InputError
from mslesion.io import _load_nifti
from mslesion.metrics import dice
from mslesion.spine import analyze_spine

ROOT = Path(__file__).resolve().parents[1]
SCANS = [  # image, manual cord mask (or None), right contrast
    ("sct_testing/t2/t2.nii.gz", "sct_testing/t2/t2_seg-manual.nii.gz", "t2"),
    ("sct_testing/t2/t2_fake_lesion.nii.gz", "sct_testing/t2/t2_fake_lesion_sc_seg.nii.gz", "t2"),
    ("sct_testing/t2s/t2s.nii.gz", "sct_testing/t2s/t2s_seg.nii.gz", "t2s"),
    ("sct_testing/t1/t1w.nii.gz", "sct_testing/t1/t1w_seg-manual.nii.gz", "t1"),
    ("ivadomed_testing/sub-unf01/sub-unf01_T2w.nii.gz", "ivadomed_testing/sub-unf01/sub-unf01_T2w_seg-manual.nii.gz", "t2"),
    ("ivadomed_testing/sub-unf01/sub-unf01_T1w.nii.gz", "ivadomed_testing/sub-unf01/sub-unf01_T1w_seg-manual.nii.gz", "t1"),
    ("ivadomed_testing/sub-unf01/sub-unf01_T2star.nii.gz",
     "ivadomed_testing/sub-unf01/sub-unf01_T2star_seg-manual.nii.gz", "t2s"),
    ("sct_tutorial/t2_ms/t2.nii.gz", None, "t2"),
    ("sct_tutorial/t2_lumbar/t2_lumbar.nii.gz", None, "t2"),
]


def run(path: Path, contrast: str | None, ref: Path | None) -> str:
    t0 = time.perf_counter()
    try:
        res = analyze_spine(path, contrast, None)
    except InputError as exc:
        return f"refused: {exc}"[:160]
    img = res.report["image"]
    d = f"{dice(res.cord_mask.data > 0, _load_nifti(ref, 'mask').data > 0.5):.3f}" if ref else "-"
    return f"{img['contrast']} ({img['contrast_source']}) dice {d} [{time.perf_counter() - t0:.0f}s]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data" / "spine")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for rel, ref, right in SCANS:
            path = args.data / rel
            refp = args.data / ref if ref else None
            neutral = Path(tmp) / f"image{path.suffix if path.suffix == '.nii' else '.nii.gz'}"
            neutral.unlink(missing_ok=True)
            neutral.symlink_to(path.resolve())
            print(f"{rel} | --contrast {right}: {run(path, right, refp)} | no --contrast: {run(path, None, refp)} | "
                  f"name hidden: {run(neutral, None, refp)}", flush=True)


if __name__ == "__main__":
    main()
