"""Benchmark sites placed independently of any template fit, on scans that are already in MNI space.

The sites of :data:`.synthetic.SHARED_DATA_SITES` were proposed through an affine template fit,
the same kind of fit the location step itself makes, so a bias of that fit can hide in both.
On scans distributed in MNI152 space (Ljubljana, MSLesSeg: 182 x 218 x 182 at 1 mm) a point's
world coordinate *is* its MNI coordinate, so sites can be placed with no registration at all:

* :func:`mni_anchor_sites`: the MNI anchors of :data:`.synthetic.MNI_SITES` used as they are;
* :func:`atlas_sites`: random sites drawn from the atlas labels in MNI space, well inside the
  structure that defines their region, and (for deep white matter) checked on the subject's own
  image to lie far from any CSF-dark voxel.

Ventricle and juxtacortical sites keep the walk of :func:`.synthetic.lesion_centre` on the
subject's own image, which finds the actual ventricle wall or sulcus from the anchor.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..volume import Volume
from . import atlas
from .synthetic import MNI_SITES, Site

#: the world-to-voxel convention of FSL's MNI152 1 mm grid (LAS), as the shared MNI-space scans store it
MNI152_1MM_AFFINE = np.array([[-1.0, 0, 0, 90.0], [0, 1.0, 0, -126.0], [0, 0, 1.0, -72.0], [0, 0, 0, 1.0]])
MNI152_1MM_SHAPE = (182, 218, 182)

#: sites per kind drawn by :func:`atlas_sites` (26 in all, like the hand-checked sets)
ATLAS_SITE_COUNTS = {"ventricle": 4, "juxtacortical": 10, "pons": 2, "cerebellum": 4, "cso": 6}


def require_mni_space(vol: Volume) -> None:
    """Refuse a scan whose world coordinates are not MNI152 coordinates (no site could be placed by MNI)."""
    if tuple(vol.shape) != MNI152_1MM_SHAPE or not np.allclose(vol.affine, MNI152_1MM_AFFINE, atol=1e-3):
        raise InputError(vol.path, f"not on the MNI152 1 mm grid (shape {tuple(vol.shape)}, affine "
                                   f"{np.round(vol.affine, 2).tolist()}): MNI sites cannot be placed on it")


def mni_anchor_sites() -> list[Site]:
    """The MNI anchors of :data:`MNI_SITES`, unchanged (valid as world points on MNI-space scans)."""
    return [Site(s.kind, s.anchor, s.direction) for s in MNI_SITES]


def _mni_points(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    ijk = np.argwhere(mask)
    return (np.c_[ijk, np.ones(len(ijk))] @ affine.T)[:, :3]


def _pick(points: np.ndarray, n: int, rng: np.random.Generator, min_apart_mm: float = 12.0) -> list[np.ndarray]:
    """Up to ``n`` random points at least ``min_apart_mm`` from each other."""
    chosen: list[np.ndarray] = []
    for i in rng.permutation(len(points)):
        p = points[i]
        if all(np.linalg.norm(p - q) >= min_apart_mm for q in chosen):
            chosen.append(p)
            if len(chosen) == n:
                break
    return chosen


def _far_from_dark(flair: Volume, points: list[np.ndarray], min_mm: float) -> list[np.ndarray]:
    """The points whose distance on the subject's FLAIR to any CSF-dark voxel is >= ``min_mm``."""
    # CSF on FLAIR is far below half the brain's median (Ljubljana: CSF 5-20, WM ~100, median 89); the
    # outside of a skull-stripped scan (0) counts as dark too: the brain surface is CSF
    dark = flair.data < 0.5 * float(np.median(flair.data[flair.data > 0]))
    dist = ndimage.distance_transform_edt(~dark, sampling=flair.zooms)
    inv = np.linalg.inv(flair.affine)
    keep = []
    for p in points:
        ijk = np.rint(inv @ np.append(p, 1.0))[:3].astype(int)
        if np.all(ijk >= 0) and np.all(ijk < flair.shape) and dist[tuple(ijk)] >= min_mm:
            keep.append(p)
    return keep


def atlas_sites(flair: Volume, seed: int = 0, counts: dict[str, int] | None = None) -> list[Site]:
    """Random sites from the atlas labels in MNI space, for a scan in MNI space (see module doc).

    * ``pons``: brainstem voxels 4 mm inside the brainstem, MNI z in [-38, -18];
    * ``cerebellum``: cerebellar voxels 5 mm inside the cerebellum, |x| >= 15 mm;
    * pons and cerebellum sites also lie >= 4 mm from any CSF-dark voxel of the subject's own FLAIR
      (inside the subject's brain, not in a cistern or the fourth ventricle);
    * ``cso``: cerebral white matter voxels 7 mm inside the atlas white matter, MNI z in [20, 45],
      and 9 mm from any CSF-dark voxel of the subject's own FLAIR (so a lesion of radius <= 3.5 mm
      stays > 5 mm from CSF: neither periventricular nor juxtacortical);
    * ``ventricle``: anchors 2 mm inside an atlas lateral ventricle, walking laterally and upwards
      to the subject's own ventricle wall;
    * ``juxtacortical``: anchors in white matter 4-8 mm below the atlas cortex, MNI z >= 10, walking
      towards the nearest cortex to the subject's own sulcus or brain surface; the anchor and the
      cortex it walks to lie >= 15 and >= 12 mm from the atlas ventricles (so the walk cannot end
      at a ventricle, and the callosal sulcus next to the ventricle roof is not used).
    """
    require_mni_space(flair)
    rng = np.random.default_rng(seed)
    counts = counts or ATLAS_SITE_COUNTS
    labels, aff, _, _ = atlas.load_atlas()
    if not np.allclose(aff[:3, :3], np.diag(np.diag(aff[:3, :3]))):
        raise ValueError("the atlas grid is expected to be axis-aligned")
    i, _, k = np.ogrid[tuple(slice(0, n) for n in labels.shape)]
    x, z = aff[0, 0] * i + aff[0, 3], aff[2, 2] * k + aff[2, 3]   # MNI x and z of each atlas voxel (broadcast)

    def inside(label: int, mm: float) -> np.ndarray:
        return ndimage.distance_transform_edt(labels == label) >= mm  # atlas voxels are 1 mm

    sites: list[Site] = []
    pons = inside(atlas.BRAINSTEM, 4.0) & (z >= -38) & (z <= -18)
    for kind, region, min_apart in (("pons", pons, 6.0),
                                    ("cerebellum", inside(atlas.CEREBELLUM, 5.0) & (np.abs(x) >= 15), 12.0)):
        candidates = _far_from_dark(flair, _pick(_mni_points(region, aff), 20 * counts[kind], rng, min_apart), 4.0)
        sites += [Site(kind, tuple(p)) for p in _pick(np.array(candidates).reshape(-1, 3), counts[kind], rng,
                                                       min_apart)]
    cso = inside(atlas.WM, 7.0) & (z >= 20) & (z <= 45)
    candidates = _far_from_dark(flair, _pick(_mni_points(cso, aff), 20 * counts["cso"], rng, 8.0), 9.0)
    sites += [Site("cso", tuple(p)) for p in _pick(np.array(candidates).reshape(-1, 3), counts["cso"], rng)]
    vent = inside(atlas.VENTRICLE, 2.0)
    for p in _pick(_mni_points(vent, aff), counts["ventricle"], rng, 10.0):
        d = np.array([np.sign(p[0]) * rng.uniform(0.6, 1.0), rng.uniform(-0.3, 0.3), rng.uniform(0.0, 0.8)])
        sites.append(Site("ventricle", tuple(p), tuple(d / np.linalg.norm(d))))
    dist_ctx = ndimage.distance_transform_edt(labels != atlas.CORTEX)
    dist_vent = ndimage.distance_transform_edt(labels != atlas.VENTRICLE)
    band = (labels == atlas.WM) & (dist_ctx >= 4.0) & (dist_ctx <= 8.0) & (z >= 10) & (dist_vent >= 15.0)
    n_jc = 0
    for ijk in _pick(np.argwhere(band).astype(float), 10 * counts["juxtacortical"], rng, 15.0):
        a, b, c = ijk.astype(int)
        local = dist_ctx[a - 1:a + 2, b - 1:b + 2, c - 1:c + 2]
        grad_vox = np.array([g[1, 1, 1] for g in np.gradient(local)])
        if np.linalg.norm(grad_vox) < 1e-6:
            continue
        step = -grad_vox / np.linalg.norm(grad_vox)   # down the distance to the cortex (voxels = mm)
        end = np.clip(np.rint(ijk + step * (dist_ctx[a, b, c] + 1.0)).astype(int), 0, np.array(labels.shape) - 1)
        if dist_vent[tuple(end)] < 12.0:
            continue
        d = aff[:3, :3] @ step
        p = (aff @ np.append(ijk, 1.0))[:3]
        sites.append(Site("juxtacortical", tuple(p), tuple(d / np.linalg.norm(d))))
        n_jc += 1
        if n_jc == counts["juxtacortical"]:
            break
    return sites
