"""Build the QC pages for the shared cases and screenshot them in headless Chromium.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/qc_demo_pages.py --out /tmp/qc_demo [--model baseline]

* ISBI training01 and Ljubljana patient07: ``mslesion analyze`` (the CLI) -> report.html
* longitudinal patient12: both FLAIRs resampled into the distributor's common space with
  its ITK transforms (SimpleITK), then :func:`mslesion.qc.compare_figure` with the
  reference new-lesion mask, on a :func:`mslesion.qc.write_report_html` page
* spine: SCT t2_fake_lesion (cord + synthetic lesion masks) and the real MS T2
  (no mask) with :func:`mslesion.qc.sagittal_cord_figure`
* a batch index over the two brain cases plus one failure

Screenshots land in ``test-artifacts/demo_*.png``; the script prints what it made and timings.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars"]


def shot(page: Path, name: str, height: int = 3000) -> Path:
    target = ROOT / "test-artifacts" / name
    target.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as prof:
        subprocess.run(["chromium", *FLAGS, f"--user-data-dir={prof}", f"--screenshot={target}",
                        f"--window-size=1280,{height}", "--virtual-time-budget=15000", page.as_uri()],
                       capture_output=True, timeout=120)
    return target


def analyze_cli(flair: Path, out: Path, model: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([str(ROOT / ".venv/bin/mslesion"), "analyze", "--flair", str(flair), "--out", str(out),
                           "--model", model], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"mslesion analyze failed: {proc.stderr.strip()[-500:]}")
    rep = json.loads((out / "report.json").read_text())
    return {"seconds": round(time.perf_counter() - t0, 1), "lesions": rep["lesion_count"],
            "volume_ml": rep["total_volume_ml"], "model": rep["model"]["id"], "regions": rep["regions"]}


def to_common_space(moving: Path, reference: Path, transform: Path, out: Path) -> Path:
    import SimpleITK as sitk

    img = sitk.ReadImage(str(moving), sitk.sitkFloat32)
    ref = sitk.ReadImage(str(reference))
    tx = sitk.ReadTransform(str(transform))
    sitk.WriteImage(sitk.Resample(img, ref, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32), str(out))
    return out


def longitudinal(out: Path) -> Path:
    from mslesion.io import load_volume
    from mslesion.qc import compare_figure, write_report_html
    from mslesion.qc.figures import lesion_lut, mosaic, save_png

    d = DATA / "brain_ms/longitudinal/patient12"
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    ref = d / "new_lesions_common_space.nii.gz"
    b = load_volume(to_common_space(d / "study1_flair.nii.gz", ref, d / "study1_flair_to_common_space.txt",
                                    work / "study1_common.nii.gz"))
    f = load_volume(to_common_space(d / "study2_flair.nii.gz", ref, d / "study2_flair_to_common_space.txt",
                                    work / "study2_common.nii.gz"))
    new = load_volume(ref, role="mask") if np.any(np.asarray(__import__("nibabel").load(ref).dataobj)) else None
    brain = load_volume(d / "brainmask_common_space.nii.gz", role="mask")
    png = compare_figure(b, f, out / "qc" / "compare_axial.png", new_lesions=new, n_slices=6,
                         title="patient12: study1 | study2 in common space; reference new/enlarged lesions")
    img, _ = mosaic(f, brain.with_data((brain.data > 0).astype(np.int32)), lesion_lut(1, {1: "#00E5FF"}), "axial",
                    n=8, legend=[("brain mask (common space)", "#00E5FF")],
                    title="Registration check: study2 in common space, distributor's brain mask")
    check = save_png(img, out / "qc" / "registration_check.png")
    n_new = int(np.asarray(new.data > 0).sum()) if new is not None else 0
    summary = {"baseline": "study1_flair", "followup": "study2_flair", "new_lesion_voxels_reference": n_new,
               "new_lesion_volume_ml_reference": round(n_new * new.voxel_volume_ml, 3) if new else 0.0}
    return write_report_html(out, "Longitudinal QC: patient12", summary, [],
                             [("Baseline vs follow-up", png), ("Registration check", check)])


def spine(out: Path) -> Path:
    from mslesion.io import load_volume
    from mslesion.qc import sagittal_cord_figure, write_report_html

    t2 = DATA / "spine/sct_testing/t2"
    img = load_volume(t2 / "t2_fake_lesion.nii.gz")
    cord = load_volume(t2 / "t2_fake_lesion_sc_seg.nii.gz", role="mask")
    les = load_volume(t2 / "t2_fake_lesion_lesion_seg.nii.gz", role="mask")
    p1 = sagittal_cord_figure(img, out / "qc" / "cord_fake_lesion.png", cord_mask=cord, lesion_mask=les,
                              title="SCT t2_fake_lesion: cord (manual) and synthetic lesion")
    ms = load_volume(DATA / "spine/sct_tutorial/t2_ms/t2.nii.gz")
    p2 = sagittal_cord_figure(ms, out / "qc" / "cord_t2_ms.png", n_slices=3, step_mm=4.0,
                              title="SCT tutorial t2_ms (real MS, 0.69x0.69x7.5 mm), no masks")
    summary = {"image": "t2_fake_lesion", "voxel_size_mm": [round(z, 3) for z in img.zooms],
               "cord_voxels": int((cord.data > 0).sum()), "lesion_voxels": int((les.data > 0).sum())}
    return write_report_html(out, "Spinal cord QC", summary, [], [("fake lesion", p1), ("t2_ms", p2)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/qc_demo"))
    ap.add_argument("--model", default="baseline")
    args = ap.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    cases = {"isbi_training01": DATA / "brain_ms/isbi2015/training01/flair.nii.gz",
             "ljubljana_patient07": DATA / "brain_ms/ljubljana/patient07/flair.nii.gz"}
    rows = []
    for name, flair in cases.items():
        info = analyze_cli(flair, args.out / name, args.model)
        print(json.dumps({"case": name, **info}), flush=True)
        rows.append({"subject": name, "out_dir": args.out / name, "lesion_count": info["lesions"],
                     "total_volume_ml": info["volume_ml"], "model": info["model"]})
        print("screenshot", shot(args.out / name / "report.html", f"demo_{name}.png", 7000))
    t0 = time.perf_counter()
    page = longitudinal(args.out / "longitudinal_patient12")
    print(json.dumps({"case": "longitudinal_patient12", "seconds": round(time.perf_counter() - t0, 1)}))
    print("screenshot", shot(page, "demo_longitudinal_patient12.png", 4200))
    t0 = time.perf_counter()
    page = spine(args.out / "spine")
    print(json.dumps({"case": "spine", "seconds": round(time.perf_counter() - t0, 1)}))
    print("screenshot", shot(page, "demo_spine.png", 2200))
    from mslesion.qc import write_batch_index

    index = write_batch_index(args.out, rows, [{"subject": "sub-broken", "error": "InputError",
                                                "reason": "flair.nii.gz: FLAIR file is corrupt or truncated"}])
    print("screenshot", shot(index, "demo_batch_index.png", 900))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
