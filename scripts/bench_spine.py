#!/usr/bin/env python
"""Benchmark of mslesion.spine on the real spinal data in ../shared/data/spine.

Prints every figure quoted in notes/issue-6.md:
  1. cord Dice vs each manual cord mask (sagittal and axial, 0.5-1 mm and 7.5 mm slices, T2/T2*/T1);
  2. vertebral levels: mean absolute level error per cord slice vs the reference labels;
  3. cord lesions: t2_fake_lesion (Dice, lesion F1) and >= 30 synthetic lesions of varied size and
     contrast inserted into the real healthy cords (lesion-wise sensitivity, precision, F1).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_spine.py [--data ../shared/data/spine]
        [--seed S | --seeds S1 S2 ...] [--skip cords levels fake healthy synthetic]
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from mslesion.io import _load_nifti, load_volume
from mslesion.metrics import dice, score_arrays
from mslesion.spine import analyze_volume
from mslesion.spine.levels import discs_on_grid, levels_per_slice
from mslesion.volume import Volume

ROOT = Path(__file__).resolve().parents[1]
CORDS = [  # image, manual cord mask, contrast
    ("sct_testing/t2/t2.nii.gz", "sct_testing/t2/t2_seg-manual.nii.gz", "t2"),
    ("sct_testing/t2s/t2s.nii.gz", "sct_testing/t2s/t2s_seg.nii.gz", "t2s"),
    ("sct_testing/t1/t1w.nii.gz", "sct_testing/t1/t1w_seg-manual.nii.gz", "t1"),
    ("ivadomed_testing/sub-unf01/sub-unf01_T2w.nii.gz", "ivadomed_testing/sub-unf01/sub-unf01_T2w_seg-manual.nii.gz", "t2"),
    ("ivadomed_testing/sub-unf01/sub-unf01_T1w.nii.gz", "ivadomed_testing/sub-unf01/sub-unf01_T1w_seg-manual.nii.gz", "t1"),
    ("ivadomed_testing/sub-unf01/sub-unf01_T2star.nii.gz", "ivadomed_testing/sub-unf01/sub-unf01_T2star_seg-manual.nii.gz", "t2s"),
    ("sct_testing/t2/t2_fake_lesion.nii.gz", "sct_testing/t2/t2_fake_lesion_sc_seg.nii.gz", "t2"),
]
#: relative lesion contrast (fraction of the local cord intensity), sign from the contrast
CONTRASTS = (0.3, 0.45, 0.6, 0.9)
#: (in-plane radius, half-length along the cord) in mm
SIZES = ((1.5, 2.5), (2.0, 4.0), (2.5, 6.0), (3.0, 10.0))


def mask(path: Path) -> Volume:
    return _load_nifti(path, "mask")


def bench_cords(data: Path) -> list[float]:
    print("== cord segmentation: Dice vs manual cord mask (native grid) ==")
    out = []
    for img, ref, contrast in CORDS:
        vol = load_volume(data / img)
        t0 = time.perf_counter()
        res = analyze_volume(vol, contrast, None)
        d = dice(res.cord_mask.data > 0, mask(data / ref).data > 0.5)
        out.append(d)
        print(f"{img:58s} {contrast:4s} voxels={'x'.join(f'{z:.2g}' for z in vol.zooms):12s} dice={d:.3f} "
              f"({time.perf_counter() - t0:.1f}s)")
    print(f"cord Dice: mean {np.mean(out):.3f}, min {np.min(out):.3f}, >=0.85 on {sum(d >= 0.85 for d in out)}/{len(out)}")
    return out


def _levels_auto(vol: Volume, contrast: str) -> tuple[np.ndarray, Volume, list]:
    """Automatic levels (disc detection) per working slice, the working grid and the discs."""
    from mslesion.spine.cord import segment_cord
    from mslesion.spine.grid import to_working
    from mslesion.spine.levels import anterior_profile, detect_discs

    work = to_working(vol)
    cord = segment_cord(work, contrast)
    discs = detect_discs(anterior_profile(work.data, cord.centres, cord.radii, work.zooms), work.zooms[2])
    return levels_per_slice(discs, work.shape[2], work.zooms[2]), work, discs


def _slice_of(points_vox: np.ndarray, src: Volume, work: Volume) -> np.ndarray:
    world = np.c_[points_vox, np.ones(len(points_vox))] @ src.affine.T
    return (world @ np.linalg.inv(work.affine).T)[:, 2].round().astype(int).clip(0, work.shape[2] - 1)


def bench_levels(data: Path) -> None:
    """Automatic vertebral levels (disc detection; most superior disc = C2/C3) vs the reference labels."""
    print("== vertebral levels: automatic disc detection, most superior disc taken as C2/C3 ==")
    vol = load_volume(data / "sct_testing/t2/t2.nii.gz")
    lev, work, discs = _levels_auto(vol, "t2")
    print(f"sct_testing/t2: discs detected at slice (mm from bottom) / number: "
          f"{[(round(z * work.zooms[2], 1), n) for z, n in discs]}")
    mid = mask(data / "sct_testing/t2/labels.nii.gz")
    pts = np.argwhere(mid.data > 0)
    vals = mid.data[tuple(pts.T)].round().astype(int)
    pred = lev[_slice_of(pts, mid, work)]
    err_mid = np.abs(pred - vals)
    print(f"  vs labels.nii.gz (mid-vertebral-body labels {vals.tolist()}): predicted {pred.tolist()}, "
          f"mean |level error| = {err_mid.mean():.2f}")
    ref = mask(data / "sct_testing/t2/t2_seg-manual_labeled.nii.gz")
    vox = np.argwhere(ref.data > 0)
    err = np.abs(lev[_slice_of(vox, ref, work)] - ref.data[tuple(vox.T)].round().astype(int))
    print(f"  vs t2_seg-manual_labeled (per cord voxel): mean |level error| = {err.mean():.2f}, exact {np.mean(err == 0):.0%}"
          f"  (this file is one level below labels.nii.gz throughout: mid-C3 label 3 sits in its level-2 zone)")
    vol = load_volume(data / "ivadomed_testing/sub-unf01/sub-unf01_T2w.nii.gz")
    lev, work, discs = _levels_auto(vol, "t2")
    gt_discs = discs_on_grid(mask(data / "ivadomed_testing/sub-unf01/sub-unf01_T2w_labels-disc-manual.nii.gz"), work)
    gt = levels_per_slice(gt_discs, work.shape[2], work.zooms[2])
    cord = mask(data / "ivadomed_testing/sub-unf01/sub-unf01_T2w_seg-manual.nii.gz")
    zs = np.unique(_slice_of(np.argwhere(cord.data > 0), cord, work))
    err = np.abs(lev[zs] - gt[zs])
    pos_err = [abs(d[0] - g[0]) * work.zooms[2] for d, g in zip(discs, gt_discs)]
    print(f"sub-unf01 T2w: discs detected {[(round(z, 1), n) for z, n in discs]}, reference {[(round(z, 1), n) for z, n in gt_discs]}; "
          f"disc position error {[round(e, 1) for e in pos_err]} mm; mean |level error| per cord slice = {err.mean():.2f}")


def insert_lesion(img: np.ndarray, cord: np.ndarray, vol: Volume, centre_vox: np.ndarray, radius_mm: float,
                  half_len_mm: float, rel: float) -> tuple[np.ndarray, np.ndarray]:
    """Ellipsoid (partial-volume fraction by 4^3 supersampling) scaled into the cord; returns (image, truth)."""
    zooms = np.asarray(vol.zooms)
    axis_world = np.array([0.0, 0.0, 1.0])
    half = np.ceil(np.array([radius_mm, radius_mm, half_len_mm]).max() / zooms).astype(int) + 2
    lo = np.maximum(centre_vox - half, 0)
    hi = np.minimum(centre_vox + half + 1, img.shape)
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    frac = np.zeros(tuple(hi - lo), np.float32)
    grid = np.stack(np.meshgrid(*[np.arange(l, h) for l, h in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
    c_world = vol.affine[:3, :3] @ centre_vox + vol.affine[:3, 3]
    for dx in sub:
        for dy in sub:
            for dz in sub:
                w = (grid + np.array([dx, dy, dz])) @ vol.affine[:3, :3].T + vol.affine[:3, 3] - c_world
                along = w @ axis_world
                across = np.linalg.norm(w - np.outer(along, axis_world), axis=1)
                frac += ((across / radius_mm) ** 2 + (along / half_len_mm) ** 2 <= 1.0).reshape(frac.shape)
    frac /= 64.0
    full = np.zeros(img.shape, np.float32)
    full[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = frac
    full *= cord
    new = img * (1.0 + rel * full)
    return new.astype(np.float32), full >= 0.5


def bench_synthetic(data: Path, per_image: int, rng: np.random.Generator) -> dict:
    print("== cord lesions: synthetic insertions into the real healthy cords ==")
    tot = dict(n_ref=0, det=0, n_pred=0, tp=0)
    by_size: dict[str, list[int]] = {}
    by_contrast: dict[str, list[int]] = {}
    n_ins = counter = 0
    for img_rel, ref_rel, contrast in CORDS[:6]:
        vol = load_volume(data / img_rel)
        cord = (mask(data / ref_rel).data > 0.5)
        sign = -1.0 if contrast in ("t1", "psir") else 1.0
        zax = int(np.argmax(np.abs(vol.affine[2, :3])))  # voxel axis closest to superior
        zs = np.unique(np.argwhere(cord)[:, zax])
        for _ in range(per_image):
            radius, half_len = SIZES[counter % len(SIZES)]
            rel = CONTRASTS[(counter // len(SIZES) + counter) % len(CONTRASTS)] * (0.6 if sign < 0 else 1.0)
            counter += 1
            cvox = np.argwhere(cord & np.isin(np.indices(cord.shape)[zax], zs[len(zs) // 4: 3 * len(zs) // 4 + 1]))
            centre = cvox[rng.integers(len(cvox))]
            new, truth = insert_lesion(vol.data, cord, vol, centre, radius, half_len, sign * rel)
            if not truth.any():
                continue
            n_ins += 1
            res = analyze_volume(vol.with_data(new), contrast, None)
            pred = res.lesion_mask.data > 0
            s = score_arrays(pred, truth, vol.voxel_volume_ml)
            tot["n_ref"] += s.ref_lesions
            tot["det"] += s.detected_ref_lesions
            tot["n_pred"] += s.pred_lesions
            tot["tp"] += s.true_pred_lesions
            for key, book in ((f"r={radius}mm,len={2 * half_len:.0f}mm", by_size), (contrast, by_contrast)):
                det_n = book.setdefault(key, [0, 0])
                det_n[0] += s.detected_ref_lesions
                det_n[1] += s.ref_lesions
            print(f"  {img_rel.split('/')[-1]:28s} r={radius:.1f}mm len={2 * half_len:.0f}mm contrast={sign * rel:+.2f} "
                  f"truth={int(truth.sum())}vox detected={s.detected_ref_lesions}/{s.ref_lesions} "
                  f"pred_lesions={s.pred_lesions} dice={s.dice:.2f}")
    sens = tot["det"] / max(tot["n_ref"], 1)
    prec = tot["tp"] / max(tot["n_pred"], 1)
    f1 = 2 * sens * prec / max(sens + prec, 1e-9)
    print("  sensitivity by size:", {k: f"{d}/{n}" for k, (d, n) in by_size.items()})
    print("  sensitivity by image contrast:", {k: f"{d}/{n}" for k, (d, n) in by_contrast.items()})
    print(f"synthetic: {n_ins} insertions, sensitivity {sens:.3f} ({tot['det']}/{tot['n_ref']}), "
          f"precision {prec:.3f} ({tot['tp']}/{tot['n_pred']}), lesion F1 {f1:.3f}")
    return {"insertions": n_ins, "f1": f1, "sensitivity": sens, "precision": prec, **tot}


def _f1(det: int, n_ref: int, tp: int, n_pred: int) -> tuple[float, float, float]:
    sens = det / max(n_ref, 1)
    prec = tp / max(n_pred, 1)
    return sens, prec, 2 * sens * prec / max(sens + prec, 1e-9)


def bench_synthetic_seeds(data: Path, per_image: int, seeds: list[int]) -> dict:
    """One synthetic set per seed (each exactly what ``--seed S`` inserts); per-seed and pooled figures."""
    rows = {}
    for seed in seeds:
        print(f"-- seed {seed} --")
        rows[seed] = bench_synthetic(data, per_image, np.random.default_rng(seed))
    print("== synthetic lesions, per seed and pooled ==")
    print(f"  {'seed':>6s} {'ins':>4s} {'sens':>13s} {'prec':>13s} {'F1':>6s}")
    for seed, r in rows.items():
        print(f"  {seed:>6d} {r['insertions']:>4d} {r['sensitivity']:.3f} ({r['det']:>2d}/{r['n_ref']:>2d}) "
              f"{r['precision']:.3f} ({r['tp']:>2d}/{r['n_pred']:>2d}) {r['f1']:.3f}")
    pooled = {k: sum(r[k] for r in rows.values()) for k in ("insertions", "det", "n_ref", "tp", "n_pred")}
    sens, prec, f1 = _f1(pooled["det"], pooled["n_ref"], pooled["tp"], pooled["n_pred"])
    f1s = [r["f1"] for r in rows.values()]
    print(f"  pooled seeds {' '.join(map(str, seeds))}: {pooled['insertions']} insertions, sensitivity {sens:.3f} "
          f"({pooled['det']}/{pooled['n_ref']}), precision {prec:.3f} ({pooled['tp']}/{pooled['n_pred']}), "
          f"lesion F1 {f1:.3f}; per-seed F1 min {min(f1s):.3f}, mean {np.mean(f1s):.3f}")
    return {"per_seed": rows, "pooled": {**pooled, "sensitivity": sens, "precision": prec, "f1": f1}}


def bench_fake(data: Path) -> None:
    print("== cord lesions: sct_testing t2_fake_lesion ==")
    vol = load_volume(data / "sct_testing/t2/t2_fake_lesion.nii.gz")
    res = analyze_volume(vol, "t2", None)
    ref = mask(data / "sct_testing/t2/t2_fake_lesion_lesion_seg.nii.gz")
    s = score_arrays(res.lesion_mask.data > 0, ref.data > 0.5, vol.voxel_volume_ml)
    print(f"t2_fake_lesion: lesion F1 {s.lesion_f1:.3f} (ref {s.ref_lesions}, pred {s.pred_lesions}), Dice {s.dice:.3f}, "
          f"volume {s.pred_volume_ml * 1000:.1f} vs {s.ref_volume_ml * 1000:.1f} mm3")
    for row in res.lesions:
        print("  lesion", row)


def bench_healthy_fp(data: Path) -> None:
    print("== false positives on the healthy cords (no lesion inserted) ==")
    for img_rel, _, contrast in CORDS[:6]:
        res = analyze_volume(load_volume(data / img_rel), contrast, None)
        print(f"  {img_rel.split('/')[-1]:28s} lesions found: {len(res.lesions)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data" / "spine")
    ap.add_argument("--per-image", type=int, default=6, help="synthetic lesions per healthy image (6 images)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="several synthetic sets in one call (each as with --seed S), per-seed and pooled figures")
    ap.add_argument("--skip", nargs="*", default=[], choices=["cords", "levels", "fake", "healthy", "synthetic"])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    if "cords" not in args.skip:
        bench_cords(args.data)
    if "levels" not in args.skip:
        bench_levels(args.data)
    if "fake" not in args.skip:
        bench_fake(args.data)
    if "healthy" not in args.skip:
        bench_healthy_fp(args.data)
    if "synthetic" not in args.skip:
        if args.seeds:
            bench_synthetic_seeds(args.data, args.per_image, args.seeds)
        else:
            bench_synthetic(args.data, args.per_image, np.random.default_rng(args.seed))
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
