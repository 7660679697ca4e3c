"""Classical spinal-cord segmentation: centreline tracking + polar dynamic programming.

1. Every axial slice of the working grid is filtered with an "ellipse inside a
   ring" template (cord inside its CSF sleeve; on T2* the bright canal inside
   darker bone); the sign follows the contrast (CSF brighter than cord on
   T2/T2*/STIR, darker on T1/PSIR).
2. A centreline is tracked through the slices by dynamic programming with a
   penalised in-plane shift per mm of cord, then robustly smoothed.
3. On each slice the cord border is found as the strongest cord->CSF edge of
   the right sign along rays from the centre, again by dynamic programming
   (smooth, closed, star-shaped contour inside an anatomical radius band);
   edge evidence is shared between neighbouring thin slices, the contour is
   re-centred, outlier slices are redone inside the running cord tube, and a
   lesion at the surface taken for CSF is put back by left-right symmetry and
   (T2-like) the convex hull.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..volume import Volume

log = logging.getLogger(__name__)

#: sign of the intensity step from cord to CSF, per contrast.
CSF_SIGN = {"t2": 1.0, "t2s": 1.0, "stir": 1.0, "t1": -1.0, "psir": -1.0}
CONTRASTS = tuple(CSF_SIGN)


def check_contrast(contrast: str | None, path: str | Path | None = None, allow_none: bool = True) -> None:
    """Refuse a spinal contrast name that is not one of :data:`CONTRASTS` (None, "infer it", unless not allowed)."""
    if (contrast is not None or not allow_none) and contrast not in CONTRASTS:
        raise InputError(path, f"unknown spinal contrast {contrast!r}; expected one of {list(CONTRASTS)}")


@dataclass
class CordOptions:
    n_angles: int = 72
    max_radius_mm: float = 10.0
    min_radius_mm: float = 1.5
    radial_step_mm: float = 0.25
    max_step_mm_per_ray: float = 0.5   # contour smoothness between neighbouring rays
    max_shift_mm_per_mm: float = 0.6   # centreline slope bound
    min_shift_mm: float = 1.0
    z_sigma_mm: float = 1.5            # edge evidence shared between slices this close
    max_recentre_mm: float = 2.0
    recentre_passes: int = 3
    mirror_ratio: float = 0.7          # left-right symmetry repair (0: off)
    convex: bool = True                # T2-like: cord section = convex hull of the found border
    band_min_mm: tuple[float, float] = (2.5, 1.5)   # smallest plausible cord semi-axes (LR, AP)
    band_max_mm: tuple[float, float] = (8.5, 5.5)   # largest plausible cord semi-axes (LR, AP)
    tube_mm: float = 6.0               # half-window of the running-median cord tube
    max_tube_dev_mm: float = 1.5
    tube_band_mm: float = 1.0
    shift_penalty: float = 0.3         # DP penalty (x response) of the largest allowed shift
    detect_mm: float = 1.0             # grid of the centreline detector
    border_offset_mm: float = -0.25     # shift of the border from the steepest edge (negative: inward)


@dataclass
class CordResult:
    soft: np.ndarray          # soft cord mask on the working grid (0..1)
    centres: np.ndarray       # (nz, 2) in-plane voxel centre per slice (working grid)
    radii: np.ndarray         # (nz, n_angles) border radius in mm per slice and ray
    found: np.ndarray         # (nz,) bool


def robust_normalise(data: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(data, [1.0, 99.5])
    return ((data - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def _ellipse(a_px: float, b_px: float, size: tuple[int, int]) -> np.ndarray:
    xx, yy = np.mgrid[-size[0]:size[0] + 1, -size[1]:size[1] + 1]
    return ((xx / a_px) ** 2 + (yy / b_px) ** 2 <= 1.0).astype(np.float32)


def body_midline(img: np.ndarray) -> float:
    """Left-right centre (voxel x) of the body in the image: the cord lies on the midline."""
    fg = img > 0.15
    prof = fg.sum(axis=(1, 2)).astype(float)
    if prof.sum() == 0:
        return (img.shape[0] - 1) / 2
    return float((prof * np.arange(len(prof))).sum() / prof.sum())


def _sector_contrast(small: np.ndarray, semi: tuple[float, float], inner_f: float, ring_f: tuple[float, float],
                     sign: float, rank: int) -> np.ndarray:
    """sign * (ring sector mean - inner mean), the ``rank``-th weakest of 8 ring sectors, per pixel."""
    a, b = semi
    size = (int(np.ceil(ring_f[1] * a)) + 1, int(np.ceil(ring_f[1] * b)) + 1)
    pad = ((size[0], size[0]), (size[1], size[1]), (0, 0))
    padded = np.pad(small, pad, mode="reflect")
    inner = _ellipse(inner_f * a, inner_f * b, size)
    ring = _ellipse(ring_f[1] * a, ring_f[1] * b, size) - _ellipse(ring_f[0] * a, ring_f[0] * b, size)
    xx, yy = np.mgrid[-size[0]:size[0] + 1, -size[1]:size[1] + 1]
    sector = (np.floor(np.mod(np.arctan2(yy / b, xx / a), 2 * np.pi) / (np.pi / 4)).astype(int)) % 8

    from scipy.signal import fftconvolve  # slow to import: only when a cord is searched

    def conv(k: np.ndarray) -> np.ndarray:
        out = fftconvolve(padded, (k / k.sum())[::-1, ::-1, None], mode="same", axes=(0, 1))
        return out[size[0]:-size[0], size[1]:-size[1]]

    m_in = conv(inner)
    diffs = np.stack([sign * (conv(ring * (sector == s)) - m_in) for s in range(8)])
    return np.sort(diffs, axis=0)[rank].astype(np.float32)


def cordness(img: np.ndarray, zooms: tuple[float, float, float], contrast: str,
             detect_mm: float) -> tuple[np.ndarray, float]:
    """Cord-likeness per axial slice on a ``detect_mm`` grid.

    T2/STIR/T1/PSIR: the cord inside its CSF ring (ring brighter, resp. darker,
    than the cord).  T2*: the CSF ring is too thin and uneven, so the detector
    looks for the bright spinal canal (cord + CSF) inside darker bone and ligaments.
    Each ring is cut into 8 sectors and the second-weakest sector counts, so only a
    structure enclosed (almost) all around scores high.
    """
    fx, fy = zooms[0] / detect_mm, zooms[1] / detect_mm
    small = ndimage.zoom(img, (fx, fy, 1.0), order=1)
    best = np.full(small.shape, -np.inf, np.float32)
    for scale in (0.75, 1.0, 1.3):
        if contrast == "t2s":
            semi = (8.0 * scale / detect_mm, 6.0 * scale / detect_mm)
            resp = _sector_contrast(small, semi, 0.7, (1.3, 1.8), -1.0, 1)
        else:
            semi = (5.5 * scale / detect_mm, 5.5 / 1.5 * scale / detect_mm)
            resp = _sector_contrast(small, semi, 0.6, (1.1, 1.6), CSF_SIGN[contrast], 1)
        best = np.maximum(best, resp)
    nx = small.shape[0]
    x = (np.arange(nx) - body_midline(small)) * detect_mm
    prior = np.exp(-0.5 * (x / 12.0) ** 2)
    return np.clip(best, 0, None) * prior[:, None, None], fx


def track_centreline(resp: np.ndarray, dz_mm: float, detect_mm: float, opts: CordOptions) -> np.ndarray:
    """Best path through the slices: max summed response minus a quadratic shift penalty; (nz, 2)."""
    nx, ny, nz = resp.shape
    shift = max(opts.min_shift_mm, opts.max_shift_mm_per_mm * dz_mm) / detect_mm
    w = int(np.ceil(shift))
    offs = np.array([(dx, dy) for dx in range(-w, w + 1) for dy in range(-w, w + 1)
                     if dx * dx + dy * dy <= shift**2 + 1e-6])
    pen = opts.shift_penalty * (offs**2).sum(1) / max(shift**2, 1e-6)
    r = resp / max(float(np.percentile(resp, 99.9)), 1e-6)
    score = r[:, :, 0].copy()
    scores = [score]
    for z in range(1, nz):
        padded = np.pad(score, w, mode="constant", constant_values=-np.inf)
        best = np.full((nx, ny), -np.inf)
        for (dx, dy), p in zip(offs, pen):
            best = np.maximum(best, padded[w + dx:w + dx + nx, w + dy:w + dy + ny] - p)
        score = r[:, :, z] + best
        scores.append(score)
    path = np.zeros((nz, 2), int)
    path[-1] = np.unravel_index(int(np.argmax(scores[-1])), (nx, ny))
    for z in range(nz - 2, -1, -1):
        cand = path[z + 1] + offs
        ok = (cand[:, 0] >= 0) & (cand[:, 0] < nx) & (cand[:, 1] >= 0) & (cand[:, 1] < ny)
        vals = scores[z][cand[ok, 0], cand[ok, 1]] - pen[ok]
        path[z] = cand[ok][int(np.argmax(vals))]
    # slices where the path response is weak (a lesion, an artefact) follow their reliable neighbours
    along = r[path[:, 0], path[:, 1], np.arange(nz)]
    good = along >= 0.5 * float(np.median(along))
    if good.sum() >= 2 and not good.all():
        zz = np.arange(nz)
        path = np.column_stack([np.interp(zz, zz[good], path[good, k]) for k in range(2)]).round().astype(int)
    return path


def robust_smooth_path(path: np.ndarray, dz_mm: float, px_mm: float, max_dev_mm: float = 1.5) -> np.ndarray:
    """Replace centreline points far from a robust low-order polynomial fit (lesions, artefacts) by the fit."""
    nz = len(path)
    if nz < 8:
        return path.astype(float)
    zz = np.arange(nz) * dz_mm
    deg = int(min(4, max(1, nz * dz_mm // 25)))
    out = path.astype(float).copy()
    for k in range(2):
        w = np.ones(nz, bool)
        for _ in range(4):
            coef = np.polyfit(zz[w], path[w, k], deg)
            fit = np.polyval(coef, zz)
            res = np.abs(path[:, k] - fit) * px_mm
            new_w = res <= max_dev_mm
            if new_w.sum() < deg + 2 or (new_w == w).all():
                break
            w = new_w
        out[~w, k] = fit[~w]
    return out


def polar_edges(sl: np.ndarray, centre: np.ndarray, px_mm: tuple[float, float], sign: float,
                opts: CordOptions) -> np.ndarray:
    """Signed radial derivative (cord -> CSF direction positive), rays x radii, scaled to ~[0, 1]."""
    angles = np.linspace(0, 2 * np.pi, opts.n_angles, endpoint=False)
    radii = np.arange(0.0, opts.max_radius_mm + 3 * opts.radial_step_mm, opts.radial_step_mm)
    xs = centre[0] + np.outer(np.cos(angles), radii) / px_mm[0]
    ys = centre[1] + np.outer(np.sin(angles), radii) / px_mm[1]
    prof = ndimage.map_coordinates(sl, [xs, ys], order=1, mode="nearest")
    grad = np.gradient(prof, opts.radial_step_mm, axis=1)
    edge = np.clip(sign * grad, 0, None)
    return edge / (float(np.percentile(edge, 99)) + 1e-6)


def border_dp(edge: np.ndarray, opts: CordOptions, band: tuple[np.ndarray, np.ndarray] | None = None
              ) -> tuple[np.ndarray, float]:
    """Closed smooth contour (radius per ray, mm) maximising edge strength; also its mean strength.

    ``band`` (low, high) optionally bounds the radius of each ray (mm).
    """
    n, nr = edge.shape
    radii = np.arange(nr) * opts.radial_step_mm
    cost = -edge.copy()
    cost[:, radii < opts.min_radius_mm] = 10.0
    cost[:, radii > opts.max_radius_mm] = 10.0
    if band is not None:
        outside = (radii[None, :] < band[0][:, None]) | (radii[None, :] > band[1][:, None])
        cost[outside] = 10.0
    step = max(1, int(round(opts.max_step_mm_per_ray / opts.radial_step_mm)))
    # closed contour: run DP over 1.5 turns and keep the middle turn
    order = np.arange(-n // 4, n + n // 4) % n
    acc = cost[order[0]].copy()
    back = np.zeros((len(order), nr), int)
    cols = np.arange(nr)
    for i in range(1, len(order)):
        prev = np.full((2 * step + 1, nr), np.inf)
        for d in range(-step, step + 1):
            prev[d + step] = np.roll(acc, d)
            if d > 0:
                prev[d + step, :d] = np.inf
            elif d < 0:
                prev[d + step, d:] = np.inf
        arg = np.argmin(prev, axis=0)
        back[i] = cols - (arg - step)
        acc = prev[arg, cols] + cost[order[i]]
    idx = np.zeros(len(order), int)
    idx[-1] = int(np.argmin(acc))
    for i in range(len(order) - 1, 0, -1):
        idx[i - 1] = back[i, idx[i]]
    keep = slice(n // 4, n // 4 + n)
    ridx = np.zeros(n, int)
    ridx[order[keep]] = idx[keep]
    border = radii[ridx] + opts.radial_step_mm / 2 + opts.border_offset_mm  # edge lies between samples
    strength = float(np.mean(edge[np.arange(n), ridx]))
    return border, strength


def mirror_fill(border_mm: np.ndarray, ratio: float) -> np.ndarray:
    """Left-right symmetry: a ray much shorter than its mirror ray takes the mirror's radius.

    The cord is left-right symmetric; a lesion at one side that was mistaken for CSF
    leaves that side short.  Rays are mirrored across the anterior-posterior axis.
    """
    n = len(border_mm)
    mirror = border_mm[(n // 2 - np.arange(n)) % n]
    return np.where(border_mm < ratio * mirror, mirror, border_mm)


def convex_radii(border_mm: np.ndarray) -> np.ndarray:
    """Radii of the convex hull of a star-shaped contour, along the same rays.

    The cord section is convex; a dent is where a bright (T2) or dark (T1) lesion
    at the cord surface was mistaken for CSF, so the hull puts it back in the cord.
    """
    from scipy.spatial import ConvexHull

    n = len(border_mm)
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = np.column_stack([border_mm * np.cos(ang), border_mm * np.sin(ang)])
    try:
        hull = pts[ConvexHull(pts).vertices]
    except Exception:  # degenerate contour
        return border_mm
    a, b = hull, np.roll(hull, -1, axis=0)
    d = np.column_stack([np.cos(ang), np.sin(ang)])
    out = border_mm.copy()
    for i in range(n):
        # ray t*d hits edge a + s*(b - a): solve [d, a - b] [t, s] = a
        e = b - a
        det = d[i, 0] * (-e[:, 1]) - d[i, 1] * (-e[:, 0])
        ok = np.abs(det) > 1e-9
        t = np.where(ok, (a[:, 0] * (-e[:, 1]) - a[:, 1] * (-e[:, 0])) / np.where(ok, det, 1), np.inf)
        sp = np.where(ok, (d[i, 0] * a[:, 1] - d[i, 1] * a[:, 0]) / np.where(ok, det, 1), -1)
        valid = ok & (t > 0) & (sp >= -1e-6) & (sp <= 1 + 1e-6)
        if valid.any():
            out[i] = max(border_mm[i], float(t[valid].min()))
    return out


def contour_to_soft(shape: tuple[int, int], centre: np.ndarray, border_mm: np.ndarray,
                    px_mm: tuple[float, float]) -> np.ndarray:
    """Soft in-plane mask of the star-shaped contour (linear ramp over one voxel)."""
    xx, yy = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    dx = (xx - centre[0]) * px_mm[0]
    dy = (yy - centre[1]) * px_mm[1]
    rad = np.hypot(dx, dy)
    ang = np.mod(np.arctan2(dy, dx), 2 * np.pi)
    n = len(border_mm)
    pos = ang / (2 * np.pi) * n
    i0 = np.floor(pos).astype(int) % n
    t = pos - np.floor(pos)
    rb = border_mm[i0] * (1 - t) + border_mm[(i0 + 1) % n] * t
    px = float(np.sqrt(px_mm[0] * px_mm[1]))
    return np.clip((rb - rad) / px + 0.5, 0.0, 1.0).astype(np.float32)


def _cos_tilt(centres: np.ndarray, px: tuple[float, float], dz: float) -> np.ndarray:
    """Cosine of the angle between the centreline and the slice normal, per slice."""
    if len(centres) < 2:
        return np.ones(len(centres))
    d = np.gradient(centres * np.asarray(px), axis=0) / dz
    return 1.0 / np.sqrt(1.0 + (d**2).sum(1))


def anatomical_band(opts: CordOptions, cos_tilt: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-ray radius bounds (mm) of a plausible cord section: left-right wider than anterior-posterior.

    A tilted cord is cut obliquely, which lengthens its anterior-posterior section by 1/cos(tilt).
    """
    ang = np.linspace(0, 2 * np.pi, opts.n_angles, endpoint=False)

    def ellipse_r(a: float, b: float) -> np.ndarray:
        return a * b / np.sqrt((b * np.cos(ang)) ** 2 + (a * np.sin(ang)) ** 2)

    stretch = 1.0 / max(cos_tilt, 0.5)
    return ellipse_r(*opts.band_min_mm), ellipse_r(opts.band_max_mm[0], opts.band_max_mm[1] * stretch)


def _repair_outliers(smooth: np.ndarray, centres: np.ndarray, radii: np.ndarray, strength: np.ndarray,
                     px: tuple[float, float], sign: float, dz: float, opts: CordOptions) -> None:
    """Slices whose contour departs from the cord tube of their neighbours are redone within a band.

    A lesion or artefact on a few slices can pull a contour off the cord; the
    running median of centres and radii over +-``tube_mm`` is the tube it must stay close to.
    """
    win = 2 * max(1, int(round(opts.tube_mm / dz))) + 1
    ref_c = ndimage.median_filter(centres, size=(win, 1), mode="nearest")
    ref_r = ndimage.median_filter(radii, size=(win, 1), mode="nearest")
    dev = np.percentile(np.abs(radii - ref_r), 90, axis=1) + np.linalg.norm((centres - ref_c) * np.asarray(px), axis=1)
    for z in np.flatnonzero(dev > opts.max_tube_dev_mm):
        edge = polar_edges(smooth[:, :, z], ref_c[z], px, sign, opts)
        band = (ref_r[z] - opts.tube_band_mm, ref_r[z] + opts.tube_band_mm)
        radii[z], strength[z] = border_dp(edge, opts, band)
        centres[z] = ref_c[z]


def segment_cord(work: Volume, contrast: str, opts: CordOptions | None = None) -> CordResult:
    """Segment the cord on a working-grid image (axial slices along the third axis)."""
    opts = opts or CordOptions()
    sign = CSF_SIGN[contrast]
    zooms = work.zooms
    img = robust_normalise(work.data)
    resp, _ = cordness(img, zooms, contrast, opts.detect_mm)
    path = robust_smooth_path(track_centreline(resp, zooms[2], opts.detect_mm, opts), zooms[2], opts.detect_mm)
    centres = (path + 0.5) * opts.detect_mm / np.array([zooms[0], zooms[1]]) - 0.5
    smooth = ndimage.gaussian_filter(img, (0.6 / zooms[0], 0.6 / zooms[1], 0))
    nz = img.shape[2]
    px = (zooms[0], zooms[1])
    # neighbouring thin slices share their edge evidence (a lesion or artefact on a few slices is outvoted)
    z_sigma = opts.z_sigma_mm / zooms[2] if nz >= 3 else 0.0
    radii = np.zeros((nz, opts.n_angles))
    strength = np.zeros(nz)
    cos_tilt = _cos_tilt(centres, px, zooms[2])
    for it in range(opts.recentre_passes + 1):
        if nz >= 3:
            centres = ndimage.gaussian_filter1d(centres, sigma=max(z_sigma, 0.5), axis=0, mode="nearest")
        edges = np.stack([polar_edges(smooth[:, :, z], centres[z], px, sign, opts) for z in range(nz)])
        if z_sigma > 0.3:
            edges = ndimage.gaussian_filter1d(edges, sigma=z_sigma, axis=0, mode="nearest")
        new_centres = centres.copy()
        for z in range(nz):
            radii[z], strength[z] = border_dp(edges[z], opts, anatomical_band(opts, float(cos_tilt[z])))
            if it < opts.recentre_passes:
                r_fill = mirror_fill(radii[z], opts.mirror_ratio) if opts.mirror_ratio > 0 else radii[z]
                m = contour_to_soft(img.shape[:2], centres[z], r_fill, px)
                if m.sum() > 0:
                    c_new = np.array(ndimage.center_of_mass(m))
                    move = (c_new - centres[z]) * np.asarray(px)
                    dist = float(np.linalg.norm(move))
                    if dist > opts.max_recentre_mm:
                        move *= opts.max_recentre_mm / dist
                    new_centres[z] = centres[z] + move / np.asarray(px)
        if it < opts.recentre_passes:
            centres = new_centres
    if nz >= 5 and zooms[2] <= 2.0:
        _repair_outliers(smooth, centres, radii, strength, px, sign, zooms[2], opts)
    if opts.mirror_ratio > 0:
        radii = np.stack([mirror_fill(r, opts.mirror_ratio) for r in radii])
    if opts.convex and sign > 0:  # T1/PSIR: a dent is CSF in a sulcus, as dark as a lesion
        radii = np.stack([convex_radii(r) for r in radii])
    found = strength > 0.25 * float(np.median(strength))
    soft = np.zeros(img.shape, np.float32)
    for z in range(nz):
        if found[z]:
            soft[:, :, z] = contour_to_soft(img.shape[:2], centres[z], radii[z], px)
    log.info("cord found on %d/%d slices", int(found.sum()), nz)
    return CordResult(soft, centres, radii, found)
