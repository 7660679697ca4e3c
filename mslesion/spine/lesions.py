"""Cord lesions: voxels much brighter (T2/T2*/STIR) or darker (T1/PSIR) than the normal cord.

Three kinds of seed evidence, all against each image's own normal cord:

1. *Voxel seeds* (the original detector): a strong robust z-score of the raw intensity against the
   median/MAD of the eroded cord, pooled over neighbouring slices.  Accepted as they are.
2. *Matched-filter seeds*: the cord is smoothed at lesion scale (Gaussian, normalised inside the cord
   so CSF does not bleed in; elongated along the cord like MS lesions).  Averaging over the lesion
   raises the SNR of small and faint lesions.  Their reference is the *shorth* (the shortest interval
   holding half of the cord's values): a lesion filling a large part of the cross-section, or tissue
   caught by the cord mask, shifts neither its location nor its spread while it is a minority.
3. *Mirror seeds*: the smoothed cord minus its left-right mirror image (mirrored inside the cord
   outline, row by row).  Normal anatomy (grey-matter butterfly, partial volume at the rim, coil
   shading across the cord) is nearly symmetric; MS lesions usually are not.

Seeds of kind 2 and 3 are weaker evidence, so their lesion candidate is kept only if, on average,
it is also brighter (darker) than its mirror image: this rejects the symmetric grey matter, the
symmetric posterior partial volume and bilateral lateral-column shading that a lower threshold
would otherwise catch.  Lesions grow from the seeds by hysteresis inside the cord mask only.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy import ndimage

from ..lesions import label_components

#: sign of a lesion's intensity change, per contrast.
LESION_SIGN = {"t2": 1.0, "t2s": 1.0, "stir": 1.0, "t1": -1.0, "psir": -1.0}


@dataclass
class LesionOptions:
    seed_z: float = 5.0          # robust z-score of a voxel seed
    grow_z: float = 3.0          # robust z-score of a grown voxel
    min_rel_contrast: float = 0.15  # and at least this relative change from the cord median
    erode_mm: float = 1.0        # seeds only this far inside the cord border
    rim_mm: float = 1.0          # lesions grow no closer to the cord surface (CSF partial volume)
    pool_mm: float = 12.0        # slices within this distance pool their statistics
    min_volume_mm3: float = 10.0    # ~3 mm diameter
    min_depth_mm: float = 2.0     # a lesion reaches at least this deep below the cord surface
    min_area_mm2: float = 1.5     # and its largest in-plane cross-section is >= this (~1.4 mm across)
    csf_margin: float = 0.1       # T1/PSIR: voxels within this fraction of the CSF-to-cord step from CSF are CSF
    # matched filters: in-plane Gaussian sigmas (mm); a lesion of radius r is matched by sigma ~ r / 2
    filter_sigmas_mm: tuple[float, ...] = (0.75, 1.5)
    filter_z_ratio: float = 2.0   # sigma along the cord / in-plane sigma (lesions are elongated along the cord)
    filter_mask_mm: float = 1.0   # the filters average over the cord this far inside its border only
    filter_seed_z: float = 4.5    # z-score of a matched-filter seed against the shorth of the smoothed cord
    filter_min_rel: float = 0.10  # and its relative change from the normal cord
    mirror_seed_z: float = 3.5    # robust z-score of the left-right difference of a mirror seed
    mirror_min_z: float = 1.0     # a mirror seed is also this much above the normal cord (filter z-score)
    mirror_min_rel: float = 0.05  # and this much in relative terms
    asym_z: float = 1.0           # filter/mirror candidates: mean left-right z-score over the candidate


def shorth_stats(vals: np.ndarray, cover: float = 0.5) -> tuple[float, float]:
    """Location and spread from the shortest interval holding ``cover`` of ``vals`` (the shorth).

    The densest part of the intensity histogram is the normal cord; lesions on one side and
    tissue caught by the cord mask on the other side shift neither estimate while they are a
    minority.  For a normal distribution this returns its mean and standard deviation.
    """
    v = np.sort(np.asarray(vals, dtype=np.float64).ravel())
    h = max(2, int(np.ceil(cover * len(v))))
    widths = v[h - 1:] - v[:len(v) - h + 1]
    i = int(np.argmin(widths))
    half_width = NormalDist().inv_cdf(0.5 + cover / 2)
    return float(np.median(v[i:i + h])), float(widths[i] / (2 * half_width))


def smooth_within(img: np.ndarray, mask: np.ndarray, sigma_vox: tuple[float, float, float]) -> np.ndarray:
    """Gaussian smoothing normalised inside ``mask`` (values outside the mask do not leak in)."""
    m = mask.astype(np.float32)
    num = ndimage.gaussian_filter(img.astype(np.float32) * m, sigma_vox, truncate=3.0)
    den = ndimage.gaussian_filter(m, sigma_vox, truncate=3.0)
    return np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0).astype(np.float32)


def mirror_rows(img: np.ndarray, cord: np.ndarray) -> np.ndarray:
    """``img`` mirrored left-right inside the cord outline: on each row (fixed y, z), x -> xl + xr - x.

    Mirroring about each row's own midpoint maps the cord rim onto the opposite rim even when the
    cord mask is skewed, so rim partial volume cancels in ``img - mirror_rows(img, cord)``.
    """
    out = img.astype(np.float32).copy()
    xs = np.arange(img.shape[0])
    for z in range(img.shape[2]):
        c = cord[:, :, z]
        rows = np.flatnonzero(c.any(axis=0))
        if len(rows) == 0:
            continue
        xl = np.argmax(c[:, rows], axis=0)
        xr = img.shape[0] - 1 - np.argmax(c[::-1, rows], axis=0)
        mid = 0.5 * (xl + xr)
        if len(mid) >= 3:
            mid = ndimage.median_filter(mid, size=3, mode="nearest")
        for y, m in zip(rows, mid):
            out[:, y, z] = np.interp(2 * m - xs, xs, img[:, y, z])
    return out


def _pooled(values: np.ndarray, mask: np.ndarray, half: int, stat) -> list[np.ndarray]:
    """Per slice, ``stat(values[mask])`` pooled over the slices within ``half``.

    ``stat`` returns a tuple; the result is one array per tuple entry.  Slices with fewer than 20
    values borrow the nearest slice that has them; ``[]`` when no slice has.
    """
    nz = values.shape[2]
    rows = []
    for z in range(nz):
        lo, hi = max(0, z - half), min(nz, z + half + 1)
        vals = values[:, :, lo:hi][mask[:, :, lo:hi]]
        rows.append(stat(vals) if vals.size >= 20 else None)
    valid = np.flatnonzero([r is not None for r in rows])
    if len(valid) == 0:
        return []
    idx = np.interp(np.arange(nz), valid, valid).round().astype(int)
    return [np.array([rows[i][j] for i in idx], dtype=np.float64) for j in range(len(rows[valid[0]]))]


def _median_mad(vals: np.ndarray) -> tuple[float, float]:
    med = float(np.median(vals))
    return med, 1.4826 * float(np.median(np.abs(vals - med)))


def segment_cord_lesions(img: np.ndarray, cord: np.ndarray, zooms: tuple[float, float, float], contrast: str,
                         opts: LesionOptions | None = None) -> np.ndarray:
    """Binary lesion mask (inside ``cord``) on the working grid."""
    opts = opts or LesionOptions()
    sign = LESION_SIGN[contrast]
    cord = cord.astype(bool)
    img = img.astype(np.float32)
    empty = np.zeros(img.shape, bool)
    # in-plane depth below the cord surface (mm): the rim is partial volume with CSF
    depth = np.zeros(img.shape, np.float32)
    outside = np.zeros(img.shape, bool)   # a CSF ring 0.5-2 mm outside the cord
    for z in range(img.shape[2]):
        if cord[:, :, z].any():
            depth[:, :, z] = ndimage.distance_transform_edt(cord[:, :, z], sampling=zooms[:2])
            d_out = ndimage.distance_transform_edt(~cord[:, :, z], sampling=zooms[:2])
            outside[:, :, z] = (d_out >= 0.5) & (d_out <= 2.0)
    core = depth >= opts.erode_mm
    half = max(1, int(round(opts.pool_mm / zooms[2])))
    stats = _pooled(img, core, half, _median_mad)
    if not stats:
        return empty
    med, mad = stats
    mad = np.maximum(mad, 0.03 * np.abs(med) + 1e-6)

    # 1. voxel seeds and the growth region
    diff = sign * (img - med[None, None, :])
    zscore = diff / mad[None, None, :]
    rel = diff / (np.abs(med[None, None, :]) + 1e-6)
    strong = (zscore >= opts.seed_z) & (rel >= opts.min_rel_contrast) & core
    weak = (zscore >= opts.grow_z) & (rel >= 0.5 * opts.min_rel_contrast) & (depth >= opts.rim_mm)

    # 2. matched-filter seeds against the densest half of the smoothed cord (the shorth)
    weak_seeds = np.zeros(img.shape, bool)
    fmask = depth >= opts.filter_mask_mm
    fine = None
    for s in opts.filter_sigmas_mm:
        sx, sy, sz = (v if v >= 0.3 else 0.0 for v in (s / zooms[0], s / zooms[1], opts.filter_z_ratio * s / zooms[2]))
        sig = (sx, sy, sz)
        smooth = smooth_within(img, fmask, sig)
        loc, scale = _pooled(smooth, core, half, shorth_stats)
        scale = np.maximum(scale, 0.03 * np.abs(loc) + 1e-6)
        fdiff = sign * (smooth - loc[None, None, :])
        fz = fdiff / scale[None, None, :]
        frel = fdiff / (np.abs(loc[None, None, :]) + 1e-6)
        weak_seeds |= (fz >= opts.filter_seed_z) & (frel >= opts.filter_min_rel) & core
        if fine is None:
            fine = (smooth, fz, frel)

    # 3. mirror seeds: brighter (darker) than the same place on the other side of the cord
    asym_z = np.zeros(img.shape, np.float32)
    if fine is not None:
        smooth, fz, frel = fine
        lr = sign * (smooth - mirror_rows(smooth, cord))
        _, lr_sd = _pooled(lr, core, half, _median_mad)
        asym_z = lr / np.maximum(lr_sd, 1e-6)[None, None, :]
        weak_seeds |= ((asym_z >= opts.mirror_seed_z) & (fz >= opts.mirror_min_z) & (frel >= opts.mirror_min_rel)
                       & core)

    if sign < 0:
        # T1/PSIR: CSF is darker than any cord lesion we look for; CSF caught in a sulcus or at the
        # border (as dark as the CSF ring around the cord) is not a lesion
        ring = _pooled(img, outside, half, lambda v: (float(np.median(v)),))
        if ring:
            csf = ring[0]
            csf_like = img <= (csf + opts.csf_margin * (med - csf))[None, None, :]
            strong &= ~csf_like
            weak &= ~csf_like
            weak_seeds &= ~csf_like
    # the smoothed maps blur a lesion's edge outwards: its extent comes from voxels that are themselves
    # abnormal (the matched-filter and mirror seeds only decide *whether* there is a lesion)
    weak |= strong | (weak_seeds & (zscore >= 0.5 * opts.grow_z) & (rel >= 0.5 * opts.min_rel_contrast))
    labels, n = label_components(weak, 26)
    if n == 0:
        return empty
    keep = np.zeros(n + 1, bool)
    keep[np.unique(labels[strong])] = True
    # candidates from the weaker seeds must be asymmetric on average
    cand = np.unique(labels[weak_seeds & ~keep[labels]])
    if len(cand):
        mean_asym = ndimage.mean(asym_z, labels, index=cand)
        keep[cand[np.asarray(mean_asym) >= opts.asym_z]] = True
    keep[0] = False
    mask = keep[labels]
    # fragments of one lesion separated by a voxel (noise, rim exclusion) are joined
    mask |= ndimage.binary_closing(mask, structure=np.ones((3, 3, 3), bool)) & cord
    return _size_filter(mask, depth, zooms, opts)


def _size_filter(mask: np.ndarray, depth: np.ndarray, zooms: tuple[float, float, float],
                 opts: LesionOptions) -> np.ndarray:
    """Keep lesions big enough, reaching deep enough, and wide enough in-plane on some slice."""
    labels, n = label_components(mask, 26)
    if n == 0:
        return mask
    min_vox = max(1, int(round(opts.min_volume_mm3 / float(np.prod(zooms)))))
    sizes = np.bincount(labels.ravel())
    # a thin band along the cord surface is CSF partial volume, not a lesion
    deepest = np.asarray(ndimage.maximum(depth, labels, index=np.arange(n + 1)))
    # largest in-plane cross-section: a chain of specks through thick slices is noise
    per_slice = np.zeros((n + 1, mask.shape[2]), np.int64)
    zi = np.nonzero(mask)[2]
    np.add.at(per_slice, (labels[mask], zi), 1)
    area = per_slice.max(axis=1) * zooms[0] * zooms[1]
    ok = (sizes >= min_vox) & (deepest >= opts.min_depth_mm) & (area >= opts.min_area_mm2)
    ok[0] = False
    return ok[labels]
