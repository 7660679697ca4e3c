"""Benchmark of the preprocessing stage (issue 3) on the real scans in ../shared/data.

Prints:
  * brain-mask Dice against skull/robex/brainmask.nii.gz (T1 with skull);
  * rigid registration error: known random rigid transforms (<= 10 deg, <= 10 mm)
    applied to ljubljana/patient26 T1, recovered by registration to its FLAIR;
    mean distance at the brain surface;
  * whole preprocessing time (wall and CPU) and brain volume per raw subject, with
    a QC PNG of the brain mask on every raw FLAIR (written to --out);
  * the brain plausibility check: every brain passes, every spine image is refused;
  * (--sections agree) both brain-extraction methods on every raw FLAIR: volumes and Dice between them.

    .venv/bin/python scripts/bench_preprocess.py --out /tmp/bench_pre [--sections dice,reg,time,spine,agree]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from scipy import ndimage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mslesion.errors import InputError  # noqa: E402
from mslesion.io import load_volume  # noqa: E402
from mslesion.preprocess import PreprocessOptions, preprocess  # noqa: E402
from mslesion.preprocess.bias import n4_correct  # noqa: E402
from mslesion.preprocess.brain import BRAIN_METHODS, extract_brain, foreground_mask  # noqa: E402
from mslesion.preprocess.brain_net import load_extractor  # noqa: E402
from mslesion.preprocess.qc import qc_png  # noqa: E402
from mslesion.preprocess.registration import register_rigid, resample_moving, rigid_matrix, surface_error_mm  # noqa: E402
from mslesion.preprocess.resample import isotropic_grid, reorient_canonical, resample_like, resample_to_grid  # noqa: E402

DATA = (ROOT / ".." / "shared" / "data").resolve()
BRAIN = DATA / "brain_ms"
SUBJECTS = {
    "isbi2015/training01": {"flair": "isbi2015/training01/flair.nii.gz"},
    "isbi2015/training02": {"flair": "isbi2015/training02/flair.nii.gz"},
    "isbi2015/training03": {"flair": "isbi2015/training03/flair.nii.gz"},
    "longitudinal/patient12/study1": {f: f"longitudinal/patient12/study1_{f}.nii.gz" for f in ("flair", "t1", "t2")},
    "longitudinal/patient12/study2": {f: f"longitudinal/patient12/study2_{f}.nii.gz" for f in ("flair", "t1", "t2")},
    "ljubljana/patient07": {f: f"ljubljana/patient07/{f}.nii.gz" for f in ("flair", "t1", "t2")},
    "ljubljana/patient26": {f: f"ljubljana/patient26/{f}.nii.gz" for f in ("flair", "t1", "t2")},
}
SPINE = ["sct_testing/t2/t2.nii.gz", "sct_testing/t1/t1w.nii.gz", "sct_testing/t2s/t2s.nii.gz",
         "sct_tutorial/t2_ms/t2.nii.gz", "sct_tutorial/t2_lumbar/t2_lumbar.nii.gz",
         "ivadomed_testing/sub-unf01/sub-unf01_T2w.nii.gz"]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b)))


def bench_dice(out: Path) -> None:
    t1 = reorient_canonical(load_volume(DATA / "skull" / "robex" / "t1.nii.gz"))
    ref = load_volume(DATA / "skull" / "robex" / "brainmask.nii.gz")
    shape, aff = isotropic_grid(t1, 1.0)
    work = n4_correct(resample_to_grid(t1, shape, aff))
    load_extractor()  # loading the network once per process is not part of the timing
    for method in BRAIN_METHODS:
        t0, c0 = time.perf_counter(), cpu_s()
        mask = extract_brain(work, "t1", method=method)
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
        native = resample_like(mask.with_data(mask.data.astype(np.float32)), ref, order=1).data > 0.5
        d = dice(native, ref.data > 0.5)
        (out / f"robex_t1_brain_{method}.png").write_bytes(qc_png(work, mask.data, f"robex T1, {method}: Dice {d:.3f}"))
        print(f"[dice] robex T1 (with skull), {method} ({mask.meta['brain_method']}): Dice {d:.4f}  "
              f"mask {native.sum() * ref.voxel_volume_ml:.0f} ml ref {(ref.data > 0.5).sum() * ref.voxel_volume_ml:.0f} ml"
              f"  (brain extraction {wall:.1f} s wall, {cpu:.1f} s CPU)")


def bench_agreement(out: Path) -> None:
    """Both methods on every raw FLAIR (after resampling + N4): volumes, Dice between them, QC PNGs."""
    for name, files in SUBJECTS.items():
        flair = reorient_canonical(load_volume(BRAIN / files["flair"]))
        shape, aff = isotropic_grid(flair, 1.0)
        work = resample_to_grid(flair, shape, aff)
        work = n4_correct(work, foreground_mask(work.data))
        masks = {m: extract_brain(work, "flair", method=m) for m in BRAIN_METHODS}
        for m, vol in masks.items():
            (out / f"{name.replace('/', '_')}_{m}.png").write_bytes(qc_png(work, vol.data, f"{name}: {m}"))
        a, b = (masks[m].data.astype(bool) for m in BRAIN_METHODS)
        vols = ", ".join(f"{m} {masks[m].data.astype(bool).sum() * work.voxel_volume_ml:.0f} ml "
                         f"({masks[m].meta['brain_method']})" for m in BRAIN_METHODS)
        print(f"[agree] {name}: {vols}; Dice between them {dice(a, b):.3f}")


def bench_registration(n: int, seed: int) -> None:
    d = BRAIN / "ljubljana" / "patient26"
    flair = reorient_canonical(load_volume(d / "flair.nii.gz"))
    t1 = reorient_canonical(load_volume(d / "t1.nii.gz"))
    brain = flair.data > 0
    surface = brain & ~ndimage.binary_erosion(brain)
    pts = (np.c_[np.array(np.nonzero(surface)).T, np.ones(surface.sum())] @ flair.affine.T)[:, :3]
    centre = pts.mean(0)
    rng = np.random.default_rng(seed)
    errors, times = [], []
    fixed_mask = ndimage.binary_dilation(brain, iterations=3)
    for i in range(n):
        angles = rng.uniform(-10, 10, 3)
        shift = rng.uniform(-10, 10, 3)
        s = rigid_matrix(tuple(angles), tuple(shift), centre)
        moved = resample_moving(t1, t1, s)          # moved(q) = t1(S q)
        truth = np.linalg.inv(s)                     # FLAIR point -> moved-T1 point
        t0 = time.perf_counter()
        est = register_rigid(flair, moved, fixed_mask=fixed_mask)
        times.append(time.perf_counter() - t0)
        errors.append(surface_error_mm(est, truth, pts))
        print(f"[reg] #{i}: rot {np.round(angles, 1).tolist()} deg, shift {np.round(shift, 1).tolist()} mm: "
              f"start {surface_error_mm(np.eye(4), truth, pts):.1f} mm -> {errors[-1]:.3f} mm ({times[-1]:.1f} s)")
    print(f"[reg] patient26 T1->FLAIR, {n} random rigid transforms: surface error mean {np.mean(errors):.3f} mm, "
          f"max {np.max(errors):.3f} mm; {np.mean(times):.1f} s per registration")


def bench_time(out: Path, only: list[str] | None) -> None:
    rows = []
    for name, files in SUBJECTS.items():
        if only and not any(o in name for o in only):
            continue
        vols = {k: load_volume(BRAIN / v, role=k.upper()) for k, v in files.items()}
        t0, c0 = time.perf_counter(), cpu_s()
        pre = preprocess(vols, PreprocessOptions(check_brain=True))
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
        ml = pre.brain_mask.data.astype(bool).sum() * pre.brain_mask.voxel_volume_ml
        png = out / f"{name.replace('/', '_')}_flair_brain.png"
        png.write_bytes(qc_png(pre.flair, pre.brain_mask.data, f"{name}: brain {ml:.0f} ml"))
        steps = " ".join(f"{k}={v:.1f}" for k, v in pre.timings.items() if k != "total")
        print(f"[time] {name} ({'+'.join(files)}): {wall:.1f} s wall, {cpu:.1f} s CPU; brain {ml:.0f} ml; {steps}")
        rows.append(wall)
    if rows:
        print(f"[time] mean {np.mean(rows):.1f} s, max {np.max(rows):.1f} s per subject "
              f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


def bench_spine() -> None:
    for rel in SPINE:
        path = DATA / "spine" / rel
        try:
            preprocess({"flair": load_volume(path)}, PreprocessOptions(check_brain=True))
            print(f"[spine] {rel}: ACCEPTED (should have been refused)")
        except InputError as exc:
            print(f"[spine] {rel}: refused: {exc.problem}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_preprocess"))
    ap.add_argument("--sections", default="dice,reg,time,spine")
    ap.add_argument("--n-transforms", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--subjects", default="", help="comma-separated substrings to restrict [time]")
    args = ap.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    sections = args.sections.split(",")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; QC PNGs in {args.out}")
    if "dice" in sections:
        bench_dice(args.out)
    if "reg" in sections:
        bench_registration(args.n_transforms, args.seed)
    if "time" in sections:
        bench_time(args.out, [s for s in args.subjects.split(",") if s] or None)
    if "spine" in sections:
        bench_spine()
    if "agree" in sections:
        bench_agreement(args.out)


if __name__ == "__main__":
    main()
