#!/usr/bin/env python
"""Enhancement and black-hole calls on the real post-contrast scans, and on synthetic enhancement.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_enhancement.py --placements 20 --cache /tmp/enh_cache

For ljubljana patient07 and patient26 (FLAIR, T1, T1 post-gadolinium, expert lesion mask):
1. preprocess as ``mslesion analyze`` does and report, on the unmodified scans, the enhancing lesions,
   T1-hypointense lesions and enhancing foci outside lesions that :mod:`mslesion.enhancement` calls;
2. insert synthetic enhancement (nodular and ring, 3-15 mm diameter, in three size classes) into the
   post-contrast image, ``--placements`` random sites per size class and place (inside a non-enhancing
   FLAIR lesion / in normal-appearing white matter), with an amplitude of ``--amplitude`` x the post-contrast
   NAWM-minus-CSF contrast, and count how often the call finds it;
   Enhancement placed outside lesions gets FLAIR signal too (``--focus-flair lesion``, the default): a ball of
   the enhancement's diameter whose FLAIR excess over the NAWM median is drawn from the patient's expert
   lesions' (their median FLAIR minus NAWM's), since an active MS lesion is FLAIR-hyperintense; ``none`` inserts
   enhancement alone (sessions 14-17), which the FLAIR rule of the focus call (``focus_min_flair_pct``) rejects;
3. insert synthetic enhancing vessels (straight tubes 1.5-3 mm thick, 10-30 mm long, ``--vessel-amplitude``)
   in NAWM and count how often one is called an enhancing focus (it should not be).

Enhancement inside a lesion (``--ring-mode``):
- ``edge`` (default): an enhancing lesion is a FLAIR lesion at least as large as its enhancement, and a ring is
  the lesion's edge, as in a real ring-enhancing lesion. The FLAIR lesion is the expert lesion joined with a
  ball of the enhancement's size whose edge lies 0 to ``--edge-offset-mm`` (uniform) inside the enhancement's
  outer edge (a segmentation that stops short of the enhancing rim);
- ``random`` (sessions 14-15): enhancement of independent diameter centred on a random lesion voxel; most of a
  6-15 mm ring (or ball) then lies outside a small lesion (most expert lesions here are under 60 mm^3),
  which no enhancing lesion does.
No expert enhancement masks exist here, so nothing is tuned on these scans: the rules are the defaults.
The intensity curve is fitted once per scan on the unmodified images and the z-score computed in a box around
each site (a blob changes none of the 40 bin medians measurably), which keeps 1,000 placements affordable.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mslesion import enhancement as enh  # noqa: E402

SIZES = {"3-6mm": (3.0, 6.0), "6-10mm": (6.0, 10.0), "10-15mm": (10.0, 15.0)}
PAD = 6  # voxels around a site's box, so that gradients and rims at its edge are as in the whole volume


def load_scan(folder: Path, cache: Path | None) -> dict:
    """The working-grid arrays of one patient (preprocessed as ``mslesion analyze`` does), cached as .npz."""
    if cache is not None and (cache / f"{folder.name}.npz").exists():
        with np.load(cache / f"{folder.name}.npz") as z:
            return {k: z[k] for k in z.files}
    from mslesion.io import load_volume
    from mslesion.preprocess import preprocess
    from mslesion.preprocess.resample import resample_like

    vols = {c: load_volume(folder / f"{c}.nii.gz", role=c.upper()) for c in ("flair", "t1", "t1post")}
    pre = preprocess(vols)
    ref = load_volume(folder / "lesions.nii.gz", role="lesion mask")
    lesions = resample_like(ref.with_data((ref.data > 0).astype(np.float32)), pre.flair, order=0).data > 0
    scan = {"flair": pre.images["flair"].data, "t1": pre.images["t1"].data, "post": pre.images["t1post"].data,
            "brain": pre.brain_mask.data > 0, "lesions": lesions, "zooms": np.asarray(pre.flair.zooms, float),
            "affine": pre.flair.affine}
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache / f"{folder.name}.npz", **scan)
    return scan


def ball_mask(shape, centre, radius: float) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32)
    return np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre))) <= radius


def blob(shape: tuple[int, ...], centre: np.ndarray, diameter: float, ring: bool) -> np.ndarray:
    """A soft ball (or a 1.5 mm thick shell, outer radius = diameter / 2) of ``diameter`` mm on a 1 mm grid."""
    r = diameter / 2
    dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(np.indices(shape, dtype=np.float32), centre)))
    shape_ = (np.abs(dist - (r - 0.75)) <= 0.75) if ring and r > 2 else (dist <= r)
    return ndimage.gaussian_filter(shape_.astype(np.float32), 0.5)


def tube(shape: tuple[int, ...], centre: np.ndarray, length: float, thickness: float,
         rng: np.random.Generator) -> np.ndarray:
    """A soft straight tube (a vessel) through ``centre`` in a random direction."""
    u = rng.normal(size=3)
    u /= np.linalg.norm(u)
    rel = np.indices(shape, dtype=np.float32) - np.asarray(centre, np.float32).reshape(3, 1, 1, 1)
    along = np.tensordot(u, rel, axes=1)
    radial = np.sqrt(np.maximum((rel ** 2).sum(0) - along ** 2, 0.0))
    inside = (np.abs(along) <= length / 2) & (radial <= thickness / 2)
    return ndimage.gaussian_filter(inside.astype(np.float32), 0.5)


class Scan:
    """One patient's arrays, the intensity match and the masks the calls need."""

    def __init__(self, arrays: dict, rules: enh.EnhancementRules):
        self.a = arrays
        self.rules = rules
        self.zooms = tuple(float(z) for z in arrays["zooms"])
        brain, lesions = arrays["brain"], arrays["lesions"]
        self.refs = enh.reference_masks(arrays["flair"], arrays["t1"], brain, lesions)
        self.match = enh.fit_intensity_match(arrays["t1"], arrays["post"], brain & ~lesions)
        self.sub = self.match.z(arrays["t1"], arrays["post"], zooms=self.zooms)
        self.normal = enh.normal_enhancement(brain, self.refs.csf, self.zooms, rules)
        self.labels, self.n = ndimage.label(lesions, structure=np.ones((3, 3, 3), bool))
        self.contrast = float(np.median(arrays["post"][self.refs.nawm]) - np.median(arrays["post"][self.refs.csf]))
        nawm_flair = float(np.median(arrays["flair"][self.refs.nawm]))
        #: each expert lesion's median FLAIR above NAWM's (robust z): the FLAIR signal of synthetic foci
        self.flair_excess = np.array([float(np.median(arrays["flair"][sl][self.labels[sl] == i])) - nawm_flair
                                      for i, sl in enumerate(ndimage.find_objects(self.labels), start=1)])

    def box(self, lo, hi) -> tuple[slice, ...]:
        return tuple(slice(max(0, int(a) - PAD), min(s, int(b) + PAD)) for a, b, s in zip(lo, hi, self.sub.shape))

    def local_z(self, box, added: np.ndarray) -> np.ndarray:
        return self.match.z(self.a["t1"][box], self.a["post"][box] + added, zooms=self.zooms)

    def lesion_enhancing(self, box, own: np.ndarray, z: np.ndarray) -> bool:
        ev = enh.assess_lesions(own.astype(np.int32), 1, z, self.normal[box], None, None,
                                float(np.prod(self.zooms)), self.rules, zooms=self.zooms)
        return bool(ev and ev[0].enhancing)

    def foci_near(self, box, z: np.ndarray, near, flair_added: np.ndarray | float = 0.0) -> bool:
        foci = enh.enhancing_foci(z, self.a["brain"][box], self.a["lesions"][box], self.normal[box], self.zooms,
                                  self.rules, self.a["t1"][box], self.refs, flair=self.a["flair"][box] + flair_added,
                                  csf=self.refs.csf[box])
        origin = np.array([s.start for s in box])
        return any(near(np.array(f.centroid_vox) + origin) for f in foci)


def run_patient(name: str, index: int, scan: Scan, args, hits: dict) -> None:
    a, rules = scan.a, scan.rules
    ev = enh.assess_lesions(scan.labels, scan.n, scan.sub, scan.normal, a["t1"], scan.refs,
                            float(np.prod(scan.zooms)), rules, zooms=scan.zooms)
    foci = enh.enhancing_foci(scan.sub, a["brain"], a["lesions"], scan.normal, scan.zooms, rules, a["t1"], scan.refs,
                              flair=a["flair"], csf=scan.refs.csf)
    print(f"\n{name}: {scan.n} FLAIR lesions (expert mask)")
    print(f"  enhancing lesions: {sum(e.enhancing for e in ev)}; T1-hypointense: {sum(bool(e.t1_hypointense) for e in ev)}"
          f"; enhancing foci outside lesions: {len(foci)}")
    hits.setdefault(("unmodified", "enhancing lesions"), []).append(sum(e.enhancing for e in ev))
    hits.setdefault(("unmodified", "foci"), []).append(len(foci))
    hits.setdefault(("unmodified", "T1-hypointense lesions"), []).append(sum(bool(e.t1_hypointense) for e in ev))
    for e in ev:
        if e.enhancing:
            print(f"    enhancing lesion {e.lesion_id}: {e.enhancing_mm3} mm^3, p95 z {e.enhancement_z_p95}")
    for f in foci:
        print(f"    focus at voxel {tuple(round(c) for c in f.centroid_vox)}: {f.volume_mm3} mm^3, z max {f.z_max}, "
              f"elongation {f.elongation}")
    for e in ev:
        if e.t1_hypointense:
            print(f"    T1-hypointense lesion {e.lesion_id}: ratio {e.t1_ratio}, hypointense {e.t1_hypointense_mm3} mm^3")
    # one random stream per part and patient: the placements of a part do not depend on which other parts run
    if "enhancement" in args.parts:
        insert_enhancement(scan, ev, args, np.random.default_rng([args.seed, index, 0]), hits)
    if "vessels" in args.parts:
        insert_vessels(scan, args, np.random.default_rng([args.seed, index, 1]), hits)
    if "black-holes" in args.parts:
        insert_black_holes(scan, ev, args, np.random.default_rng([args.seed, index, 2]), hits)


def insert_enhancement(scan: Scan, ev: list, args, rng: np.random.Generator, hits: dict) -> None:
    non_enh = [e.lesion_id for e in ev if not e.enhancing]
    nawm_idx = np.argwhere(ndimage.binary_erosion(scan.refs.nawm, iterations=4))
    dist_csf = ndimage.distance_transform_edt(~scan.refs.csf, sampling=scan.zooms)
    # NAWM next to CSF (centre 2-5 mm from it), where the eroded NAWM above never places a site
    pv_idx = np.argwhere(scan.refs.nawm & (dist_csf >= 2) & (dist_csf < 5))
    amp = args.amplitude * scan.contrast
    for size, (dmin, dmax) in SIZES.items():
        for shape_name in ("nodular", "ring"):
            for place in args.places:
                for _ in range(args.placements):
                    d = rng.uniform(dmin, dmax)
                    if place == "in-lesion":
                        lid = int(rng.choice(non_enh))
                        pts = np.argwhere(scan.labels == lid)
                        centre = pts[rng.integers(len(pts))].astype(float)
                        lo = np.minimum(pts.min(0), centre - d / 2 - 1)
                        hi = np.maximum(pts.max(0) + 1, centre + d / 2 + 2)
                    else:
                        idx = nawm_idx if place == "nawm" else pv_idx
                        centre = idx[rng.integers(len(idx))].astype(float)
                        lo, hi = centre - 24, centre + 25
                    box = scan.box(lo, hi)
                    shape = tuple(s.stop - s.start for s in box)
                    c_box = centre - np.array([s.start for s in box])
                    b = blob(shape, c_box, d, shape_name == "ring")
                    z = scan.local_z(box, amp * b)
                    if place == "in-lesion":
                        own = scan.labels[box] == lid
                        if args.ring_mode == "edge":
                            own |= ball_mask(shape, c_box, d / 2 - rng.uniform(0, args.edge_offset_mm))
                        found = scan.lesion_enhancing(box, own, z)
                    else:
                        flair_added = 0.0 if args.focus_flair == "none" else (
                            max(float(rng.choice(scan.flair_excess)), 0.0) * blob(shape, c_box, d, False))
                        found = scan.foci_near(box, z, lambda p: np.linalg.norm(p - centre) <= d / 2 + 3, flair_added)
                    hits.setdefault((size, shape_name, place), []).append(int(found))
                    if d >= 5:
                        hits.setdefault((">=5mm", shape_name, place), []).append(int(found))


def insert_vessels(scan: Scan, args, rng: np.random.Generator, hits: dict) -> None:
    nawm_idx = np.argwhere(ndimage.binary_erosion(scan.refs.nawm, iterations=4))
    for _ in range(args.placements * 3):
        centre = nawm_idx[rng.integers(len(nawm_idx))].astype(float)
        box = scan.box(centre - 24, centre + 25)
        shape = tuple(s.stop - s.start for s in box)
        c_box = centre - np.array([s.start for s in box])
        length, thick = rng.uniform(10, 30), rng.uniform(1.5, 3.0)
        z = scan.local_z(box, args.vessel_amplitude * scan.contrast * tube(shape, c_box, length, thick, rng))
        called = scan.foci_near(box, z, lambda p: np.linalg.norm(p - centre) <= length / 2 + 3)
        hits.setdefault(("vessel", "tube", "nawm (false)"), []).append(int(called))


def insert_black_holes(scan: Scan, ev: list, args, rng: np.random.Generator, hits: dict) -> None:
    """Synthetic T1 black holes, and lesions that are not black holes.

    - "black hole": a soft ball darker by ``--bh-amplitude`` x (NAWM - CSF) on the pre-contrast T1, centred on a voxel
      of a real FLAIR lesion that is not T1-hypointense on the unmodified scan. The FLAIR lesion is that expert lesion
      joined with a ball 0 to ``--edge-offset-mm`` larger than the hole (T1 hypointensity lies inside the FLAIR
      lesion), without CSF.
    - "same lesion, T1 unmodified (false)": that FLAIR lesion without the hole; a call is false.
    - "NAWM lesion, ratio 0.8 (false)": a FLAIR lesion of the same size in NAWM whose T1 is lowered by
      ``--lesion-t1-drop`` x (NAWM - CSF) (default 0.2: the median T1 ratio of the expert lesions here is 0.8), no hole;
      a call is false.
    """
    a, refs = scan.a, scan.refs
    contrast_t1 = refs.t1_nawm - refs.t1_csf
    voxel_mm3 = float(np.prod(scan.zooms))
    plain = [e.lesion_id for e in ev if not e.t1_hypointense]
    nawm_idx = np.argwhere(ndimage.binary_erosion(refs.nawm, iterations=4))

    def called(own: np.ndarray, t1: np.ndarray, box) -> int:
        out = enh.assess_lesions(own.astype(np.int32), 1, None, None, t1, refs, voxel_mm3, scan.rules,
                                 zooms=scan.zooms, csf=refs.csf[box])
        return int(bool(out and out[0].t1_hypointense))

    for size, (dmin, dmax) in SIZES.items():
        for _ in range(args.placements):
            d = rng.uniform(dmin, dmax)
            r_flair = d / 2 + rng.uniform(0, args.edge_offset_mm)
            lid = int(rng.choice(plain))
            pts = np.argwhere(scan.labels == lid)
            centre = pts[rng.integers(len(pts))].astype(float)
            box = scan.box(np.minimum(pts.min(0), centre - r_flair - 1), np.maximum(pts.max(0) + 1, centre + r_flair + 2))
            shape = tuple(s.stop - s.start for s in box)
            c_box = centre - np.array([s.start for s in box])
            own = ((scan.labels[box] == lid) | ball_mask(shape, c_box, r_flair)) & a["brain"][box] & ~refs.csf[box]
            hole = blob(shape, c_box, d, ring=False)
            results = [("black hole", called(own, a["t1"][box] - args.bh_amplitude * contrast_t1 * hole, box)),
                       ("same lesion, T1 unmodified (false)", called(own, a["t1"][box], box))]
            centre = nawm_idx[rng.integers(len(nawm_idx))].astype(float)
            box = scan.box(centre - r_flair - 1, centre + r_flair + 2)
            shape = tuple(s.stop - s.start for s in box)
            c_box = centre - np.array([s.start for s in box])
            own = ball_mask(shape, c_box, r_flair) & a["brain"][box] & ~refs.csf[box]
            soft = ndimage.gaussian_filter(own.astype(np.float32), 0.5)
            results.append(("NAWM lesion, ratio 0.8 (false)",
                            called(own, a["t1"][box] - args.lesion_t1_drop * contrast_t1 * soft, box)))
            for label, found in results:
                hits.setdefault((size, label, "T1"), []).append(found)
                if d >= 5:
                    hits.setdefault((">=5mm", label, "T1"), []).append(found)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--placements", type=int, default=40, help="per size class, shape and place")
    ap.add_argument("--amplitude", type=float, default=0.3)
    ap.add_argument("--focus-flair", choices=("lesion", "none"), default="lesion",
                    help="FLAIR signal of enhancement placed outside lesions: drawn from the expert lesions', or none")
    ap.add_argument("--vessel-amplitude", type=float, default=0.6)
    ap.add_argument("--ring-mode", choices=("edge", "random"), default="edge")
    ap.add_argument("--edge-offset-mm", type=float, default=2.0)
    ap.add_argument("--cache", type=Path, default=None, help="keep the preprocessed arrays here (.npz)")
    ap.add_argument("--patients", nargs="+", default=["patient07", "patient26"])
    ap.add_argument("--rule", action="append", default=[], metavar="NAME=VALUE",
                    help="override an EnhancementRules field, e.g. --rule lesion_rim_mm=1 (repeatable)")
    ap.add_argument("--places", nargs="+", choices=("in-lesion", "nawm", "nawm-periventricular"), default=["in-lesion", "nawm"],
                    help="where to insert synthetic enhancement (a sweep of the focus rules needs only nawm)")
    ap.add_argument("--bh-amplitude", type=float, default=0.7,
                    help="synthetic black hole: T1 darker by this x (NAWM - CSF); 0.7 takes NAWM to a ratio of 0.3")
    ap.add_argument("--lesion-t1-drop", type=float, default=0.2,
                    help="T1 of a synthetic non-black-hole lesion: lower by this x (NAWM - CSF)")
    ap.add_argument("--parts", nargs="+", choices=("enhancement", "vessels", "black-holes"),
                    default=["enhancement", "vessels", "black-holes"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rules = enh.EnhancementRules()
    for item in args.rule:
        name, _, value = item.partition("=")
        rules = dataclasses.replace(rules, **{name: float(value)})
    print(f"rules: {rules}")
    hits: dict[tuple[str, ...], list[int]] = {}
    for index, patient in enumerate(args.patients):
        t0 = time.perf_counter()
        scan = Scan(load_scan(args.data / "brain_ms/ljubljana" / patient, args.cache), rules)
        print(f"{patient}: prepared in {time.perf_counter() - t0:.1f} s")
        run_patient(patient, index, scan, args, hits)
    print(f"\nsynthetic enhancement, amplitude {args.amplitude} x (NAWM - CSF) on the post-contrast T1, "
          f"{args.placements} placements per cell and patient; ring mode {args.ring_mode}"
          + (f" (FLAIR edge 0-{args.edge_offset_mm} mm inside the ring)" if args.ring_mode == "edge" else ""))
    print(f"{'size':10s} {'shape':34s} {'place':12s} {'found':>6s}")
    for key, h in hits.items():
        if key[0] == "unmodified":
            print(f"unmodified scans: {key[1]} per scan {h}")
    for key3, h in sorted(hits.items()):
        if len(key3) == 3:
            size, shape_name, place = key3
            print(f"{size:10s} {shape_name:34s} {place:12s} {np.mean(h):6.2f}  ({sum(h)}/{len(h)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
