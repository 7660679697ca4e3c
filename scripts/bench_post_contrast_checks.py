#!/usr/bin/env python
"""Bad post-contrast input (issue 17): does the enhancement stage refuse it, and accept the right scans?

    nice .venv/bin/python scripts/bench_post_contrast_checks.py [--data ../shared/data]

For the two Ljubljana patients with a post-contrast T1 it runs preprocessing (FLAIR + T1 + "post")
and the enhancement stage (:func:`mslesion.enhancement_stage.assess_subject`, expert lesion masks as
the FLAIR lesions) on:

- ``own``: the patient's own post-contrast T1 (must be usable);
- ``other``: the other patient's post-contrast T1 (another subject: must be refused);
- ``pre``: the patient's pre-contrast T1 given as post, re-sampled 0.4 mm off and with noise like a repeat
  scan (no vessel or plexus enhancement: must be refused);
- ``pre-same-file``: the pre-contrast T1 file itself given as post (must be refused);
- ``shifted``: the own post-contrast T1 with its affine moved 90 mm in world space (registration must
  start from the head centres; then usable, with a note).

Prints, per run: the rank correlation, the fraction of the normal-enhancement zone at z >= 3, whether the
scan was used, the enhancing-lesion count and the single-visit DIT statement.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mslesion.enhancement_stage import assess_subject  # noqa: E402
from mslesion.io import load_volume  # noqa: E402
from mslesion.lesions import find_lesions  # noqa: E402
from mslesion.preprocess import preprocess  # noqa: E402
from mslesion.volume import Volume  # noqa: E402

PATIENTS = ("patient07", "patient26")


def _variant(kind: str, patient: str, folder: Path) -> tuple[Path, Volume]:
    own = folder / patient / "t1post.nii.gz"
    if kind in ("own", "shifted"):
        post = load_volume(own, role="T1post")
        if kind == "shifted":
            aff = post.affine.copy()
            aff[:3, 3] += (0.0, 80.0, -40.0)
            post = Volume(post.data, aff, post.path, post.meta)
        return own, post
    if kind == "other":
        other = folder / next(p for p in PATIENTS if p != patient) / "t1post.nii.gz"
        return other, load_volume(other, role="T1post")
    pre = folder / patient / "t1.nii.gz"
    vol = load_volume(pre, role="T1post")
    if kind == "pre":
        rng = np.random.default_rng(0)
        data = np.asarray(vol.data, np.float32)
        noisy = ndimage.shift(data, (0.4, 0.3, 0.0), order=1)
        noisy = noisy + rng.normal(0.0, 0.03 * float(np.percentile(data[data > 0], 90)), data.shape).astype(np.float32)
        vol = Volume(np.clip(noisy, 0, None), vol.affine, vol.path, vol.meta)
    return pre, vol


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--kinds", nargs="+", default=["own", "other", "pre", "pre-same-file", "shifted"])
    args = ap.parse_args()
    folder = args.data / "brain_ms" / "ljubljana"
    print(f"{'patient':10s} {'post given':14s} {'rank corr':>9s} {'normal z>=3':>11s} {'used':>5s} "
          f"{'enh. lesions':>12s}  DIT / problems and notes")
    for patient in PATIENTS:
        flair = load_volume(folder / patient / "flair.nii.gz", role="FLAIR")
        t1 = load_volume(folder / patient / "t1.nii.gz", role="T1")
        mask = load_volume(folder / patient / "lesions.nii.gz", role="lesions")
        labels, lesions = find_lesions(mask)
        for kind in args.kinds:
            t0 = time.perf_counter()
            _, post = _variant(kind, patient, folder)
            pre = preprocess({"flair": flair, "t1": t1, "t1post": post})
            section, _ = assess_subject(pre, labels, lesions)
            chk = section.post_contrast_check
            dit = section.dissemination_in_time
            said = dit.statement if chk is None or chk.usable else "; ".join(chk.problems)
            if chk is not None and chk.notes:
                said += " [" + "; ".join(chk.notes) + "]"
            count = "-" if section.enhancing_lesions is None else str(section.enhancing_lesions)
            print(f"{patient:10s} {kind:14s} {chk.rank_correlation:9.3f} {chk.normal_enhancement_fraction:11.4f} "
                  f"{'yes' if chk.usable else 'no':>5s} {count:>12s}  {said} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
