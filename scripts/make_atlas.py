"""Build mslesion's MNI-space region atlas from the ICBM 2009a template that nilearn ships.

    .venv/bin/python scripts/make_atlas.py [--png notes/atlas.png]

Writes ``mslesion/data/mni_regions_1mm.nii.gz`` (uint8 labels, see LABELS) and
``mslesion/data/mni_t1_2mm.nii.gz`` (template T1 for registration).  Nothing is
downloaded: the inputs are files inside the installed nilearn package.

Method (all in MNI space, 1 mm): brain = T1 > 20% of max; tissue = argmax of
(GM, WM, CSF = 1 - GM - WM) probabilities; lateral ventricles = CSF connected
to seeds in the ventricle bodies (inside the eroded brain); deep grey matter =
GM inside ellipsoids around thalamus, caudate and lentiform nuclei, and GM within
5 mm of the lateral ventricles above z = 0 (caudate body and tail); the
infratentorial compartment = the connected part of the tissue mask, below a
cut through the midbrain-diencephalon junction, that holds the pons and the
cerebellar hemispheres; the rest of GM is cerebral cortex.

Licence of the derived files: they are derived from the MNI ICBM 2009a
nonlinear symmetric template, Copyright (C) 1993-2009 Louis Collins,
McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill
University.  Permission to use, copy, modify, and distribute this software
and its documentation for any purpose and without fee is hereby granted,
provided that the above copyright notice appear in all copies.  The
copyright notice is kept in mslesion/data/ATLAS_LICENSE.txt.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

LABELS = {0: "outside", 1: "csf", 2: "lateral_ventricle", 3: "cortex", 4: "cerebral_white_matter",
          5: "deep_grey_matter", 6: "brainstem", 7: "cerebellum"}
#: grey matter this close (mm) to a lateral ventricle, above z = 0, is deep grey matter (not cortex)
PERIVENTRICULAR_GM_MM = 5.0
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "mslesion" / "data"


def nilearn_file(name: str) -> Path:
    import nilearn.datasets

    return Path(nilearn.datasets.__file__).parent / "data" / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz"


def mm_to_vox(affine: np.ndarray, xyz: tuple[float, float, float]) -> tuple[int, int, int]:
    v = np.linalg.inv(affine) @ np.array([*xyz, 1.0])
    return tuple(int(round(c)) for c in v[:3])  # type: ignore[return-value]


def world_grid(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    ijk = np.indices(shape, dtype=np.float32)
    return np.stack([affine[a, 0] * ijk[0] + affine[a, 1] * ijk[1] + affine[a, 2] * ijk[2] + affine[a, 3]
                     for a in range(3)])


def ellipsoid(xyz: np.ndarray, centre: tuple[float, float, float], radii: tuple[float, float, float]) -> np.ndarray:
    return sum(((xyz[a] - centre[a]) / radii[a]) ** 2 for a in range(3)) <= 1.0


def split_infratentorial(t1: np.ndarray, brain: np.ndarray, xyz: np.ndarray, aff: np.ndarray) -> np.ndarray:
    """Random-walker split of the posterior fossa (brainstem + cerebellum) from the cerebrum."""
    from skimage.segmentation import random_walker

    box = (xyz[1] < 10) & (xyz[2] < 25)
    ii = [np.where(box.any(axis=tuple(b for b in range(3) if b != a)))[0] for a in range(3)]
    sl = tuple(slice(int(i.min()), int(i.max()) + 1) for i in ii)
    seeds = np.where(brain[sl], 0, -1).astype(np.int32)
    sub = xyz[(slice(None),) + sl]

    def ball(c: tuple[float, float, float], r: float, value: int) -> None:
        m = (sum((sub[a] - c[a]) ** 2 for a in range(3)) <= r * r) & brain[sl]
        seeds[m] = value

    for c in [(0, -25, -30), (0, -38, -50), (0, -20, -15), (0, -60, -25)]:
        ball(c, 4, 1)
    for s in (-1, 1):
        ball((s * 25, -65, -35), 8, 1)
        ball((s * 20, -80, -30), 5, 1)
        ball((s * 40, -60, -35), 5, 1)
        for c in [(20, -88, 5), (15, -75, 12), (45, -30, -15), (38, -10, -30), (30, -60, 0), (10, -18, 8),
                  (25, -90, -10), (48, -55, -12), (30, -75, -5)]:
            ball((s * c[0], c[1], c[2]), 4, 2)
    seeds[(sub[2] > 18) & brain[sl]] = 2
    data = t1[sl].astype(np.float64)
    res = random_walker(data, seeds, beta=2000, mode="cg_j", tol=1e-3)
    out = np.zeros(t1.shape, bool)
    out[sl] = res == 1
    return out


def build() -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    t1_img = nib.load(str(nilearn_file("t1")))
    aff = t1_img.affine
    t1 = t1_img.get_fdata(dtype=np.float32) / 255.0
    gm = nib.load(str(nilearn_file("gm"))).get_fdata(dtype=np.float32) / 255.0
    wm = nib.load(str(nilearn_file("wm"))).get_fdata(dtype=np.float32) / 255.0
    brain = ndimage.binary_fill_holes(t1 > 0.2)
    csf = np.clip(1.0 - gm - wm, 0, 1)
    tissue = np.argmax(np.stack([csf, gm, wm]), axis=0)  # 0 csf, 1 gm, 2 wm
    xyz = world_grid(t1.shape, aff)
    lab = np.zeros(t1.shape, np.uint8)
    lab[brain] = 1
    # lateral ventricles: CSF connected to seeds in both ventricle bodies, away from the brain surface
    inner = ndimage.binary_erosion(brain, iterations=6)
    vent_csf = (tissue == 0) & inner & (np.abs(xyz[0]) < 35) & (xyz[2] > -25) & (xyz[2] < 40)
    comps, _ = ndimage.label(vent_csf)
    seeds = [mm_to_vox(aff, (s * 6.0, 0.0, 18.0)) for s in (-1, 1)]
    ids = {int(comps[s]) for s in seeds} - {0}
    if len(ids) == 0:
        raise RuntimeError("ventricle seeds fell outside CSF")
    vent = np.isin(comps, list(ids))
    # keep only the lateral ventricles: drop the third ventricle (midline slab below the bodies)
    third = (np.abs(xyz[0]) < 5) & (xyz[2] < 8)
    vent &= ~third
    # infratentorial compartment: tissue below a cut through the midbrain-diencephalon junction
    pc, mb = np.array([0.0, -26.0, -2.0]), np.array([0.0, -10.0, -13.0])
    d = mb - pc
    normal = np.array([0.0, -d[2], d[1]])
    normal /= np.linalg.norm(normal)
    above = sum(normal[a] * (xyz[a] - pc[a]) for a in range(3)) > 0
    cut = above & (np.abs(xyz[0]) < 30) & (xyz[1] > -45) & (xyz[1] < 5)
    infra = split_infratentorial(t1, brain & ~cut & ~vent, xyz, aff) & ~cut & ~vent
    stem = infra & (np.abs(xyz[0]) < 14) & (xyz[1] > -45)
    cerebellum = infra & ~stem
    deep = np.zeros_like(brain)
    for s in (-1, 1):
        deep |= ellipsoid(xyz, (s * 11.0, -18.0, 7.0), (9.0, 13.0, 9.0))    # thalamus
        deep |= ellipsoid(xyz, (s * 13.0, 12.0, 10.0), (7.0, 12.0, 10.0))   # caudate head/body
        deep |= ellipsoid(xyz, (s * 22.0, 2.0, 1.0), (8.0, 14.0, 9.0))      # putamen + pallidum
    # grey matter lining the lateral ventricles above the temporal horns (caudate body and tail, septal
    # nuclei, the thalamus' upper surface) is deep grey matter: the ellipsoids miss the caudate body, and
    # a lesion on the ventricle wall was named "cerebral cortex" (issue 16)
    deep |= (ndimage.distance_transform_edt(~vent) <= PERIVENTRICULAR_GM_MM) & (xyz[2] > 0)
    lab[brain & (tissue == 2)] = 4
    lab[brain & (tissue == 1)] = 3
    lab[brain & (tissue == 1) & deep] = 5
    lab[vent] = 2
    lab[stem & brain] = 6
    lab[cerebellum & brain] = 7
    lab_img = nib.Nifti1Image(lab, aff)
    lab_img.header.set_data_dtype(np.uint8)
    # 2 mm template for registration
    from nibabel.processing import resample_to_output

    t1_2 = resample_to_output(nib.Nifti1Image((t1 * 255).astype(np.float32), aff), voxel_sizes=(2, 2, 2), order=1)
    t1_2 = nib.Nifti1Image(np.clip(np.round(t1_2.get_fdata()), 0, 255).astype(np.uint8), t1_2.affine)
    return lab_img, t1_2


def save_png(lab_img: nib.Nifti1Image, t1_img: nib.Nifti1Image, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lab = np.asarray(lab_img.dataobj)
    aff = lab_img.affine
    cx, cy, cz = mm_to_vox(aff, (0, 0, 0))
    views = [("sag x=0", lab[cx]), ("sag x=-25", lab[cx - 25]), ("cor y=-20", lab[:, cy - 20]),
             ("cor y=-60", lab[:, cy - 60]), ("ax z=20", lab[:, :, cz + 20]), ("ax z=-30", lab[:, :, cz - 30])]
    fig, axes = plt.subplots(2, 3, figsize=(12, 8))
    for ax, (title, sl) in zip(axes.ravel(), views):
        ax.imshow(sl.T, origin="lower", cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(", ".join(f"{k}={v}" for k, v in LABELS.items()))
    fig.savefig(png, dpi=70)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--png", type=Path, default=None)
    args = ap.parse_args()
    lab, t1 = build()
    OUT.mkdir(parents=True, exist_ok=True)
    nib.save(lab, str(OUT / "mni_regions_1mm.nii.gz"))
    nib.save(t1, str(OUT / "mni_t1_2mm.nii.gz"))
    data = np.asarray(lab.dataobj)
    for k, v in LABELS.items():
        print(f"{v:24s} {int((data == k).sum()) / 1000:8.1f} mL")
    for f in ("mni_regions_1mm.nii.gz", "mni_t1_2mm.nii.gz"):
        print(f, (OUT / f).stat().st_size // 1024, "KiB")
    if args.png:
        save_png(lab, t1, args.png)


if __name__ == "__main__":
    main()
