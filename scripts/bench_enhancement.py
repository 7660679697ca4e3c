#!/usr/bin/env python
"""Enhancement and black-hole calls on the real post-contrast scans, and on synthetic enhancement.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/bench_enhancement.py --placements 40

For ljubljana patient07 and patient26 (FLAIR, T1, T1 post-gadolinium, expert lesion mask):
1. preprocess as ``mslesion analyze`` does and report, on the unmodified scans, the enhancing lesions,
   T1-hypointense lesions and enhancing foci outside lesions that :mod:`mslesion.enhancement` calls;
2. insert synthetic enhancement (nodular and ring, 3-15 mm diameter, in three size classes) into the
   post-contrast image, ``--placements`` random sites per size class and place (inside a non-enhancing
   FLAIR lesion / in normal-appearing white matter), with an amplitude of ``--amplitude`` x the post-contrast
   NAWM-minus-CSF contrast, and count how often the call finds it.
No expert enhancement masks exist here, so nothing is tuned on these scans: the rules are the defaults.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mslesion import enhancement as enh  # noqa: E402
from mslesion.io import load_volume  # noqa: E402
from mslesion.preprocess import preprocess  # noqa: E402
from mslesion.preprocess.resample import resample_like  # noqa: E402

SIZES = {"3-6mm": (3.0, 6.0), "6-10mm": (6.0, 10.0), "10-15mm": (10.0, 15.0)}


def blob(shape: tuple[int, ...], centre: np.ndarray, diameter: float, ring: bool) -> np.ndarray:
    """A soft ball (or a 1.5 mm thick shell) of ``diameter`` mm on a 1 mm grid."""
    r = diameter / 2
    lo = np.maximum(np.floor(centre - r - 3).astype(int), 0)
    hi = np.minimum(np.ceil(centre + r + 3).astype(int), shape)
    out = np.zeros(shape, np.float32)
    grid = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij")
    dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
    shape_ = (np.abs(dist - (r - 0.75)) <= 0.75) if ring and r > 2 else (dist <= r)
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = ndimage.gaussian_filter(shape_.astype(np.float32), 0.5)
    return out


def analyse(pre, lesions: np.ndarray, post: np.ndarray, rules: enh.EnhancementRules):
    flair, t1 = pre.images["flair"].data, pre.images["t1"].data
    brain = pre.brain_mask.data > 0
    refs = enh.reference_masks(flair, t1, brain, lesions)
    sub = enh.subtraction_z(t1, post, brain & ~lesions)
    normal = enh.normal_enhancement(brain, refs.csf, pre.flair.zooms, rules)
    labels, n = ndimage.label(lesions, structure=np.ones((3, 3, 3), bool))
    ev = enh.assess_lesions(labels, n, sub, normal, t1, refs, float(np.prod(pre.flair.zooms)), rules)
    foci = enh.enhancing_foci(sub, brain, lesions, normal, pre.flair.zooms, rules, t1, refs)
    return refs, labels, n, ev, foci


def detected(sub, pre, lesions, labels, lid: int, normal, centre, diameter: float,
             rules: enh.EnhancementRules, refs: enh.References) -> bool:
    """Whether the call finds the inserted enhancement: lesion ``lid`` enhancing, or (lid 0) a focus near ``centre``.

    Only a box around the site is analysed (the calls are local), which gives the same answer as the
    whole volume for the component at the site and keeps 1,000 placements affordable.
    """
    c = np.round(centre).astype(int)
    if lid:
        pts = np.argwhere(labels == lid)
        lo, hi = pts.min(0) - 4, pts.max(0) + 5
    else:
        lo, hi = c - 24, c + 25
    box = tuple(slice(max(0, a), min(s, b)) for a, b, s in zip(lo, hi, sub.shape))
    if lid:
        own = (labels[box] == lid).astype(np.int32)
        ev = enh.assess_lesions(own, 1, sub[box], normal[box], None, None, float(np.prod(pre.flair.zooms)), rules)
        return bool(ev and ev[0].enhancing)
    brain = pre.brain_mask.data[box] > 0
    foci = enh.enhancing_foci(sub[box], brain, lesions[box], normal[box], pre.flair.zooms, rules,
                              pre.images["t1"].data[box], refs)
    origin = np.array([s.start for s in box])
    return any(np.linalg.norm(np.array(f.centroid_vox) + origin - centre) <= diameter / 2 + 3 for f in foci)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--placements", type=int, default=40, help="per size class, shape and place")
    ap.add_argument("--amplitude", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rules = enh.EnhancementRules()
    rng = np.random.default_rng(args.seed)
    hits: dict[tuple[str, str, str], list[int]] = {}
    for patient in ("patient07", "patient26"):
        folder = args.data / "brain_ms/ljubljana" / patient
        t0 = time.perf_counter()
        vols = {c: load_volume(folder / f"{c}.nii.gz", role=c.upper()) for c in ("flair", "t1", "t1post")}
        pre = preprocess(vols)
        ref = load_volume(folder / "lesions.nii.gz", role="lesion mask")
        lesions = resample_like(ref.with_data((ref.data > 0).astype(np.float32)), pre.flair, order=0).data > 0
        post = pre.images["t1post"].data
        refs, labels, n, ev, foci = analyse(pre, lesions, post, rules)
        print(f"\n{patient}: {n} FLAIR lesions (expert mask), prepared in {time.perf_counter() - t0:.1f} s")
        print(f"  enhancing lesions: {sum(e.enhancing for e in ev)}; T1-hypointense: {sum(bool(e.t1_hypointense) for e in ev)}"
              f"; enhancing foci outside lesions: {len(foci)}")
        for e in ev:
            if e.enhancing:
                print(f"    enhancing lesion {e.lesion_id}: {e.enhancing_mm3} mm^3, p95 z {e.enhancement_z_p95}")
        for f in foci:
            print(f"    focus at voxel {tuple(round(c) for c in f.centroid_vox)}: {f.volume_mm3} mm^3, z max {f.z_max}, "
                  f"elongation {f.elongation}")
        contrast = float(np.median(post[refs.nawm]) - np.median(post[refs.csf]))
        normal = enh.normal_enhancement(pre.brain_mask.data > 0, refs.csf, pre.flair.zooms, rules)
        lid = 0
        non_enh = [e.lesion_id for e in ev if not e.enhancing]
        nawm_idx = np.argwhere(ndimage.binary_erosion(refs.nawm, iterations=4))
        for size, (dmin, dmax) in SIZES.items():
            for ring in (False, True):
                shape_name = "ring" if ring else "nodular"
                for place in ("in-lesion", "nawm"):
                    for _ in range(args.placements):
                        d = rng.uniform(dmin, dmax)
                        if place == "in-lesion":
                            lid = int(rng.choice(non_enh))
                            pts = np.argwhere(labels == lid)
                            centre = pts[rng.integers(len(pts))].astype(float)
                        else:
                            centre = nawm_idx[rng.integers(len(nawm_idx))].astype(float)
                        b = blob(post.shape, centre, d, ring)
                        sub = enh.subtraction_z(pre.images["t1"].data, post + args.amplitude * contrast * b,
                                                (pre.brain_mask.data > 0) & ~lesions)
                        found = detected(sub, pre, lesions, labels, lid if place == "in-lesion" else 0, normal,
                                         centre, d, rules, refs)
                        hits.setdefault((size, shape_name, place), []).append(int(found))
    print(f"\nsynthetic enhancement, amplitude {args.amplitude} x (NAWM - CSF) on the post-contrast T1, "
          f"{args.placements} placements per cell and patient")
    print(f"{'size':8s} {'shape':8s} {'place':10s} {'found':>6s}")
    for (size, shape_name, place), h in sorted(hits.items()):
        print(f"{size:8s} {shape_name:8s} {place:10s} {np.mean(h):6.2f}  ({sum(h)}/{len(h)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
