#!/usr/bin/env python
"""Build the demo subject in data_samples/demo from nilearn's MNI152 (ICBM 2009a) maps.

The FLAIR and T1 are synthesised from the template's grey/white-matter maps
(CSF dark on FLAIR), six spherical lesions are painted at known MNI sites, and
the volumes are resampled to a clinical-like 1 x 1 x 3 mm axial grid.  Fully
reproducible (fixed seed); nothing is downloaded.

    python scripts/make_demo_subject.py [--out data_samples/demo]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from nilearn import datasets
from scipy import ndimage

#: (name, expected McDonald region, MNI x, y, z, radius mm)
LESIONS = [
    ("periventricular_left", "periventricular", -17, -8, 24, 4.0),
    ("periventricular_right", "periventricular", 18, -30, 22, 3.5),
    ("deep_wm_centrum_semiovale", "deep_white_matter", 26, -12, 42, 3.5),
    ("juxtacortical_frontal", "juxtacortical", -28, 38, 28, 3.0),
    ("pons", "infratentorial", 0, -26, -32, 3.0),
    ("cerebellar_hemisphere", "infratentorial", 24, -62, -36, 3.5),
]


def build(out: Path, seed: int = 20261126) -> None:
    rng = np.random.default_rng(seed)
    t1img = datasets.load_mni152_template(resolution=1)
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata()
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata()
    brain = datasets.load_mni152_brain_mask(resolution=1).get_fdata() > 0
    affine = t1img.affine
    gm, wm = gm / max(gm.max(), 1e-6), wm / max(wm.max(), 1e-6)
    csf = np.clip(brain - gm - wm, 0, 1) * brain
    flair = 0.78 * gm + 0.55 * wm + 0.12 * csf
    t1 = 0.55 * gm + 0.85 * wm + 0.12 * csf
    truth = np.zeros(gm.shape, bool)
    inv = np.linalg.inv(affine)
    grid = np.indices(gm.shape)
    sites = []
    for name, region, x, y, z, r in LESIONS:
        c = (inv @ np.array([x, y, z, 1.0]))[:3]
        ball = sum((grid[i] - c[i]) ** 2 for i in range(3)) <= r**2
        ball &= brain
        truth |= ball
        sites.append({"name": name, "expected_region": region, "mni_xyz": [x, y, z], "radius_mm": r,
                      "voxels_1mm": int(ball.sum())})
    soft = ndimage.gaussian_filter(truth.astype(float), 0.7)
    flair = flair * (1 - soft) + 1.25 * soft
    t1 = t1 * (1 - soft) + 0.45 * soft
    flair = ndimage.gaussian_filter(flair, 0.5) * brain
    t1 = ndimage.gaussian_filter(t1, 0.5) * brain
    # clinical-like acquisition: 1 x 1 x 3 mm axial slices, with noise
    thick = np.diag([1.0, 1.0, 3.0, 1.0])
    thick_aff = affine @ thick
    shape = (gm.shape[0], gm.shape[1], int(np.ceil(gm.shape[2] / 3)))
    def acquire(img: np.ndarray, order: int = 1) -> np.ndarray:
        src = ndimage.uniform_filter1d(img, 3, axis=2) if order else img
        return ndimage.affine_transform(src, thick, output_shape=shape, order=order)
    out.mkdir(parents=True, exist_ok=True)
    for name, img in (("flair", flair), ("t1", t1)):
        data = acquire(img)
        data = data + rng.normal(0, 0.015, data.shape) * (data > 0.02)
        data = np.clip(data, 0, None) * 1000
        nii = nib.Nifti1Image(np.round(data).astype(np.int16), thick_aff)
        nii.set_qform(thick_aff, 1)
        nii.set_sform(thick_aff, 1)
        nib.save(nii, str(out / f"{name}.nii.gz"))
    mask = acquire(truth.astype(np.float32)) > 0.4
    nii = nib.Nifti1Image(mask.astype(np.uint8), thick_aff)
    nib.save(nii, str(out / "lesions_truth.nii.gz"))
    (out / "lesion_sites.json").write_text(json.dumps(sites, indent=2) + "\n")
    print(f"wrote demo subject to {out} ({len(sites)} lesions, {int(mask.sum())} truth voxels on the 1x1x3 mm grid)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data_samples" / "demo")
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
