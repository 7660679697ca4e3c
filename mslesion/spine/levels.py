"""Vertebral levels along the cord from intervertebral-disc labels.

Disc labels follow the Spinal Cord Toolbox convention: a label of value ``n``
sits on the disc *above* vertebra ``n`` (3 = C2/C3 disc, 4 = C3/C4, ...), so
the cord between discs ``n`` and ``n + 1`` is at vertebral level ``n``.
Beyond the outermost labelled discs the levels are extrapolated with the
measured (or, with a single disc, the typical cervical) vertebral height.
"""
from __future__ import annotations

import numpy as np

from ..volume import Volume

#: typical cervical vertebral height (body + disc), mm, used with a single disc label.
TYPICAL_LEVEL_MM = 16.0


def level_name(n: int) -> str:
    """1-7 -> C1-C7, 8-19 -> T1-T12, 20-24 -> L1-L5, 25+ -> S."""
    if n <= 0:
        return "above C1"
    if n <= 7:
        return f"C{n}"
    if n <= 19:
        return f"T{n - 7}"
    if n <= 24:
        return f"L{n - 19}"
    return f"S{n - 24}"


def discs_on_grid(labels: Volume, work: Volume) -> list[tuple[float, int]]:
    """(working-grid slice position, disc number) of every labelled voxel, superior first."""
    pts = np.argwhere(labels.data > 0)
    out = []
    inv = np.linalg.inv(work.affine)
    for p in pts:
        val = int(round(float(labels.data[tuple(p)])))
        world = labels.affine @ np.append(p, 1.0)
        out.append((float((inv @ world)[2]), val))
    return sorted(out, key=lambda t: -t[0])


def levels_per_slice(discs: list[tuple[float, int]], nz: int, dz_mm: float) -> np.ndarray:
    """Vertebral level number for each working slice (0 where undetermined).

    Between two discs whose numbers are more than one apart (a disc not labelled or not detected),
    the levels in between are spread evenly over the gap.
    """
    levels = np.zeros(nz, int)
    if not discs:
        return levels
    zs = np.array([d[0] for d in discs])
    ns = np.array([d[1] for d in discs])
    if len(discs) >= 2 and np.ptp(ns) > 0:
        height = float(abs(np.polyfit(ns, zs, 1)[0])) * dz_mm
    else:
        height = TYPICAL_LEVEL_MM
    height = float(np.clip(height, 8.0, 40.0))
    for z in range(nz):
        above = zs >= z
        if above.any():
            i = int(np.argmin(np.where(above, zs, np.inf)))
            below = zs < z
            if below.any():
                j = int(np.argmax(np.where(below, zs, -np.inf)))  # nearest disc below
                missing = int(ns[j]) - int(ns[i])
                extra = int(np.floor((zs[i] - z) / (zs[i] - zs[j]) * missing)) if missing > 1 else 0
            else:
                extra = int(np.floor((zs[i] - z) * dz_mm / height))
            levels[z] = ns[i] + extra
        else:
            i = int(np.argmin(zs))
            levels[z] = ns[i] - 1 - int(np.floor((z - zs[i]) * dz_mm / height))
    return levels


def anterior_profile(img: np.ndarray, centres: np.ndarray, radii: np.ndarray, zooms: tuple[float, float, float],
                     band_mm: tuple[float, float] = (3.0, 18.0), half_width_mm: float = 3.0) -> np.ndarray:
    """Mean intensity per slice in a band anterior to the cord (through the vertebral bodies and discs)."""
    from scipy import ndimage

    nz = img.shape[2]
    n_ang = radii.shape[1]
    anterior = n_ang // 4  # ray at +90 degrees points to +y (anterior) on the RAS working grid
    prof = np.zeros(nz)
    dx = np.arange(-half_width_mm, half_width_mm + 1e-6, 1.0)
    for z in range(nz):
        r0 = float(radii[z, anterior])
        ds = np.arange(r0 + band_mm[0], r0 + band_mm[1], 1.0)
        xs = centres[z, 0] + dx[:, None] / zooms[0] + 0 * ds[None, :]
        ys = centres[z, 1] + ds[None, :] / zooms[1] + 0 * dx[:, None]
        prof[z] = float(ndimage.map_coordinates(img[:, :, z], [xs, ys], order=1, mode="nearest").mean())
    return prof


#: automatic disc detection needs slices at most this far apart along the cord (discs are 4-6 mm thick)
MAX_DISC_SLICE_MM = 3.0
#: ... and a field of view at least this long along the cord (about one vertebra)
MIN_DISC_FOV_MM = 12.0


def auto_levels_limit(nz: int, dz_mm: float) -> str | None:
    """Why automatic disc detection cannot work on this grid (None: it can be tried)."""
    if dz_mm > MAX_DISC_SLICE_MM:
        return (f"slices are {dz_mm:.3g} mm apart along the cord, so the intervertebral discs (4-6 mm thick) "
                f"are not resolved (automatic detection needs <= {MAX_DISC_SLICE_MM:g} mm); "
                f"give disc labels (--disc-labels) to get levels")
    if nz * dz_mm < MIN_DISC_FOV_MM:
        return (f"the image covers only {nz * dz_mm:.3g} mm along the cord, less than one vertebra "
                f"({MIN_DISC_FOV_MM:g} mm); give disc labels (--disc-labels) to get levels")
    return None


def detect_discs(profile: np.ndarray, dz_mm: float, top_disc: int = 3,
                 min_gap_mm: float = 11.0) -> list[tuple[float, int]]:
    """Intervertebral discs as narrow extrema of the anterior profile, numbered from the top.

    Discs are thin (4-6 mm) between tall vertebral bodies (12-20 mm), so they stand out from
    a running median over ~11 mm; their polarity (bright or dark) depends on the sequence, so
    both are tried and the more regular series wins.  The most superior disc gets ``top_disc``
    (3 = C2/C3: there is no disc between C1 and C2, so in a cervical field of view that
    reaches C2 the first disc from the top is C2/C3).  Returns (slice position, disc number).
    """
    from scipy import ndimage, signal

    nz = len(profile)
    if auto_levels_limit(nz, dz_mm) is not None:
        return []
    step = 1.0
    zz = np.arange(0, (nz - 1) * dz_mm + 1e-6, step)
    p = np.interp(zz, np.arange(nz) * dz_mm, profile)
    p = ndimage.gaussian_filter1d(p, 1.0)
    base = ndimage.median_filter(p, size=int(round(11.0 / step)) | 1, mode="nearest")
    q = p - base
    noise = 1.4826 * float(np.median(np.abs(q - np.median(q)))) + 1e-9
    best: tuple[float, np.ndarray] | None = None
    for sgn in (1.0, -1.0):
        peaks, props = signal.find_peaks(sgn * q, distance=int(min_gap_mm / step), prominence=2.5 * noise)
        if len(peaks):  # discs are of a kind: drop extrema far weaker than the strongest
            peaks = peaks[props["prominences"] >= 0.3 * float(props["prominences"].max())]
        # ignore extrema at the very edge of the field of view (partial bodies)
        peaks = peaks[(zz[peaks] > 3.0) & (zz[peaks] < zz[-1] - 3.0)]
        if len(peaks) == 0:
            continue
        strength = float(np.sum(sgn * q[peaks])) / noise
        if len(peaks) >= 3:
            gaps = np.diff(zz[peaks])
            strength /= 1.0 + float(np.std(gaps) / np.mean(gaps)) * 3
        if best is None or strength > best[0]:
            best = (strength, peaks)
    if best is None:
        return []
    pos = zz[best[1]] / dz_mm  # slice positions
    pos = pos[::-1]            # superior first
    discs = []
    gaps = -np.diff(pos) * dz_mm
    typical = float(np.clip(np.median(gaps), 12.0, 22.0)) if len(gaps) >= 2 else TYPICAL_LEVEL_MM
    n = top_disc
    for i, zpos in enumerate(pos):
        if i > 0:
            n += max(1, int(round(gaps[i - 1] / max(typical, 8.0))))
        discs.append((float(zpos), n))
    return discs
