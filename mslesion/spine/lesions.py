"""Cord lesions: voxels much brighter (T2/T2*/STIR) or darker (T1/PSIR) than the cord around them.

Normal-appearing cord intensity is estimated per slice from the eroded cord
(median and MAD pooled over neighbouring slices, so a lesion filling a slice
does not hide itself).  Seeds are strong outliers in the eroded cord; lesions
grow from them, by hysteresis, within the full cord mask only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..lesions import label_components

#: sign of a lesion's intensity change, per contrast.
LESION_SIGN = {"t2": 1.0, "t2s": 1.0, "stir": 1.0, "t1": -1.0, "psir": -1.0}


@dataclass
class LesionOptions:
    seed_z: float = 5.0          # robust z-score of a seed voxel
    grow_z: float = 3.0          # robust z-score of a grown voxel
    min_rel_contrast: float = 0.15  # and at least this relative change from the cord median
    erode_mm: float = 1.0        # seeds only this far inside the cord border
    rim_mm: float = 1.0          # lesions grow no closer to the cord surface (CSF partial volume)
    pool_mm: float = 12.0        # slices within this distance pool their statistics
    min_volume_mm3: float = 10.0    # ~3 mm diameter
    min_depth_mm: float = 2.0     # a lesion reaches at least this deep below the cord surface
    csf_margin: float = 0.1       # T1/PSIR: voxels within this fraction of the CSF-to-cord step from CSF are CSF


def segment_cord_lesions(img: np.ndarray, cord: np.ndarray, zooms: tuple[float, float, float], contrast: str,
                         opts: LesionOptions | None = None) -> np.ndarray:
    """Binary lesion mask (inside ``cord``) on the working grid."""
    opts = opts or LesionOptions()
    sign = LESION_SIGN[contrast]
    cord = cord.astype(bool)
    # in-plane depth below the cord surface (mm): the rim is partial volume with CSF
    depth = np.zeros(img.shape, np.float32)
    outside = np.zeros(img.shape, bool)   # a CSF ring 0.5-2 mm outside the cord
    for z in range(img.shape[2]):
        if cord[:, :, z].any():
            depth[:, :, z] = ndimage.distance_transform_edt(cord[:, :, z], sampling=zooms[:2])
            d_out = ndimage.distance_transform_edt(~cord[:, :, z], sampling=zooms[:2])
            outside[:, :, z] = (d_out >= 0.5) & (d_out <= 2.0)
    core = depth >= opts.erode_mm
    nz = img.shape[2]
    med = np.full(nz, np.nan)
    mad = np.full(nz, np.nan)
    csf = np.full(nz, np.nan)
    half = max(1, int(round(opts.pool_mm / zooms[2])))
    for z in range(nz):
        lo, hi = max(0, z - half), min(nz, z + half + 1)
        vals = img[:, :, lo:hi][core[:, :, lo:hi]]
        if vals.size < 20:
            continue
        med[z] = np.median(vals)
        mad[z] = 1.4826 * np.median(np.abs(vals - med[z]))
        ring = img[:, :, lo:hi][outside[:, :, lo:hi]]
        csf[z] = np.median(ring) if ring.size else np.nan
    if np.all(np.isnan(med)):
        return np.zeros(img.shape, bool)
    # slices without statistics borrow the nearest valid ones
    valid = ~np.isnan(med)
    idx = np.interp(np.arange(nz), np.flatnonzero(valid), np.flatnonzero(valid)).round().astype(int)
    med, mad, csf = med[idx], mad[idx], csf[idx]
    mad = np.maximum(mad, 0.03 * np.abs(med) + 1e-6)
    diff = sign * (img - med[None, None, :])
    zscore = diff / mad[None, None, :]
    rel = diff / (np.abs(med[None, None, :]) + 1e-6)
    strong = (zscore >= opts.seed_z) & (rel >= opts.min_rel_contrast) & core
    weak = (zscore >= opts.grow_z) & (rel >= 0.5 * opts.min_rel_contrast) & (depth >= opts.rim_mm)
    if sign < 0:
        # T1/PSIR: CSF is darker than any cord lesion we look for; CSF caught in a sulcus or at the
        # border (as dark as the CSF ring around the cord) is not a lesion
        csf_like = img <= (csf + opts.csf_margin * (med - csf))[None, None, :]
        strong &= ~csf_like
        weak &= ~csf_like
    labels, n = label_components(weak, 26)
    if n == 0:
        return np.zeros(img.shape, bool)
    keep = np.zeros(n + 1, bool)
    keep[np.unique(labels[strong])] = True
    keep[0] = False
    mask = keep[labels]
    # fragments of one lesion separated by a voxel (noise, rim exclusion) are joined
    mask |= ndimage.binary_closing(mask, structure=np.ones((3, 3, 3), bool)) & cord
    min_vox = max(1, int(round(opts.min_volume_mm3 / float(np.prod(zooms)))))
    labels, n = label_components(mask, 26)
    if n:
        sizes = np.bincount(labels.ravel())
        # a thin band along the cord surface is CSF partial volume, not a lesion
        deepest = ndimage.maximum(depth, labels, index=np.arange(n + 1))
        ok = (sizes >= min_vox) & (np.asarray(deepest) >= opts.min_depth_mm)
        ok[0] = False
        mask = ok[labels]
    return mask
