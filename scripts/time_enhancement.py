#!/usr/bin/env python
"""Wall time of the enhancement stage (``mslesion.enhancement_stage.assess_subject``) on real scans.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/time_enhancement.py --repeats 3

Preprocesses FLAIR, T1 and post-contrast T1 as ``mslesion analyze`` does (not timed), takes the expert lesion
mask as the segmentation (the stage's input), and times the stage ``--repeats`` times (it is what ``analyze``
logs as ``enhancement_s``). Prints the load average before and after, since the wall time depends on it, and the
process CPU time (all threads), which depends on it much less.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    from mslesion.enhancement_stage import assess_subject
    from mslesion.io import load_volume
    from mslesion.lesions import find_lesions
    from mslesion.preprocess import preprocess

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--patients", nargs="+", default=["patient07", "patient26"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    for patient in args.patients:
        folder = args.data / "brain_ms/ljubljana" / patient
        vols = {c: load_volume(folder / f"{c}.nii.gz", role=c.upper()) for c in ("flair", "t1", "t1post")}
        pre = preprocess(vols)
        ref = load_volume(folder / "lesions.nii.gz", role="lesion mask")
        mask = ref.with_data((ref.data > 0).astype(np.uint8))
        times = []
        for _ in range(args.repeats):
            labels, lesions = find_lesions(mask)
            load = os.getloadavg()[0]
            t0, c0 = time.perf_counter(), time.process_time()
            section, _ = assess_subject(pre, labels, lesions)
            times.append(time.perf_counter() - t0)
            cpu = time.process_time() - c0
            print(f"{patient}: enhancement stage {times[-1]:.2f} s wall, {cpu:.2f} s CPU "
                  f"(load average {load:.1f} -> {os.getloadavg()[0]:.1f}); "
                  f"{len(lesions)} lesions, {section.get('enhancing_lesions')} enhancing, "
                  f"{section.get('black_holes')} black holes, {len(section.get('enhancing_foci_outside_lesions', []))} foci")
        print(f"{patient}: median {float(np.median(times)):.2f} s over {len(times)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
