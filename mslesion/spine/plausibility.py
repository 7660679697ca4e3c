"""Is the traced structure a spinal cord?  Measured features of the cord the tracker found.

A real cord is a long, thin tube along the slices: its cross-section stays within a
physiological range and changes little from slice to slice, and on (almost) every
slice it is enclosed by CSF of the expected brightness (brighter than the cord on
T2/T2*/STIR, darker on T1/PSIR).  A brain traced as a "cord" fails at least one of these.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..volume import Volume
from .cord import CSF_SIGN, CordResult, robust_normalise


class NoCordError(InputError):
    """The image holds no plausible spinal cord: "no spinal cord found in FILE: reasons"."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(None, f"no spinal cord found in {path or 'the image'}: {problem}")
        self.path = None if path is None else Path(str(path))


@dataclass(frozen=True)
class CordCriteria:
    """Bounds a real cord meets.

    Measured with scripts/spine_cord_check.py on every shared spine scan (with its contrast) and every
    shared brain scan (each as t2, t2s and t1); the margins are in notes/issue-16.md.  Spine scans:
    tube fraction >= 0.848, area variation <= 0.42, inner variation <= 0.78.  Brain scans (87 runs):
    tube fraction <= 0.795, and every run with a tube fraction above 0.67 also fails a second bound.
    """
    min_length_mm: float = 12.0            # continuous run of cord slices along S-I
    min_tube_fraction: float = 0.8         # slices where the cord is a tube in its CSF sleeve (see summarise)
    max_csa_cv: float = 0.5                # variation of the cross-section along the cord (std / mean)
    max_inner_cv: float = 0.9              # intensity variation inside the cord (std / mean, median of slices)
    csa_range_mm2: tuple[float, float] = (20.0, 130.0)   # median cross-sectional area


def slice_measures(work: Volume, cord: CordResult, contrast: str, csf_mm: tuple[float, float] = (0.5, 3.5)
                   ) -> dict[str, np.ndarray]:
    """Per working slice: found, area (mm2), CSF enclosure, CSF sleeve, CSF contrast and inner variation.

    * enclosure: fraction of border rays with CSF (a step of the contrast's sign > 10% of the slice's
      intensity range) within ``csf_mm`` outside the border;
    * sleeve: fraction of rays where that CSF is followed, 1-5 mm further out, by tissue of the cord's
      side again (a thin CSF sleeve, not the edge of a large space);
    * contrast: median CSF step / intensity range; inner_cv: intensity std / mean inside the cord.
    """
    img = robust_normalise(work.data)
    img = ndimage.gaussian_filter(img, (0.5 / work.zooms[0], 0.5 / work.zooms[1], 0))
    sign = CSF_SIGN[contrast]
    px = (work.zooms[0], work.zooms[1])
    nz = img.shape[2]
    ang = np.linspace(0, 2 * np.pi, cord.radii.shape[1], endpoint=False)
    cos, sin = np.cos(ang)[:, None], np.sin(ang)[:, None]
    outside = np.arange(csf_mm[0], csf_mm[1] + 1e-6, 0.25)
    beyond = np.arange(csf_mm[1] + 1.0, csf_mm[1] + 5.0, 0.5)
    m = {k: np.zeros(nz) for k in ("enclosure", "sleeve", "contrast", "inner_cv")}
    m["found"] = cord.found.astype(bool)
    m["area"] = cord.soft.sum(axis=(0, 1)) * px[0] * px[1]
    for z in np.flatnonzero(cord.found):
        sl = img[:, :, z]
        inside = sl[cord.soft[:, :, z] >= 0.5]
        if inside.size == 0:
            continue
        level = float(np.median(inside))
        spread = float(np.percentile(sl, 99) - np.percentile(sl, 1)) + 1e-6

        def rays(dist: np.ndarray) -> np.ndarray:
            r = cord.radii[z][:, None] + dist[None, :]
            return ndimage.map_coordinates(sl, [cord.centres[z, 0] + cos * r / px[0],
                                                cord.centres[z, 1] + sin * r / px[1]],
                                           order=1, mode="nearest")

        ring = rays(outside)
        peak = ring.max(axis=1) if sign > 0 else ring.min(axis=1)
        step = sign * (peak - level)
        m["enclosure"][z] = float(np.mean(step > 0.1 * spread))
        m["sleeve"][z] = float(np.mean(sign * (peak - rays(beyond).mean(axis=1)) > 0.1 * spread))
        m["contrast"][z] = float(np.median(step)) / spread
        m["inner_cv"][z] = float(np.std(inside) / max(abs(level), 1e-3))
    return m


def summarise(m: dict[str, np.ndarray], dz_mm: float, tube_mm: float = 15.0) -> dict:
    """Features of the whole traced cord from :func:`slice_measures`.

    A "tube" slice has a border, CSF around most of it (enclosure >= 0.5) and an area within
    x0.67-1.5 of the running median area over +-``tube_mm``: a cord stays such a tube over its length.
    """
    found = m["found"].astype(bool)
    nz = len(found)
    areas = m["area"]
    sel = areas[found]
    if not found.any():
        return {"slices": nz, "found_fraction": 0.0, "length_mm": 0.0, "tube_fraction": 0.0, "tube_length_mm": 0.0,
                "csa_median_mm2": 0.0, "csa_cv": 0.0, "csf_enclosure": 0.0, "sleeve": 0.0, "inner_cv": 0.0,
                "csf_contrast": 0.0}
    win = 2 * max(1, int(round(tube_mm / dz_mm))) + 1
    filled = np.where(found, areas, np.median(sel))
    ref = ndimage.median_filter(filled, size=win, mode="nearest")
    tube = found & (m["enclosure"] >= 0.5) & (areas >= ref / 1.5) & (areas <= ref * 1.5)
    med = lambda k: round(float(np.median(m[k][found])), 3)  # noqa: E731
    return {
        "slices": int(nz),
        "found_fraction": round(float(found.mean()), 3),
        "length_mm": round(_longest_run(found) * dz_mm, 1),
        "tube_fraction": round(float(tube.mean()), 3),
        "tube_length_mm": round(_longest_run(tube) * dz_mm, 1),
        "csa_median_mm2": round(float(np.median(sel)), 1),
        "csa_cv": round(float(np.std(sel) / max(np.mean(sel), 1e-6)), 3),
        "csf_enclosure": med("enclosure"),
        "sleeve": med("sleeve"),
        "inner_cv": med("inner_cv"),
        "csf_contrast": med("contrast"),
    }


def cord_features(work: Volume, cord: CordResult, contrast: str) -> dict:
    """Measured features of the traced cord on the working grid (see module docstring)."""
    return summarise(slice_measures(work, cord, contrast), float(work.zooms[2]))


def cord_problems(features: dict, criteria: CordCriteria | None = None) -> list[str]:
    """Reasons why ``features`` do not describe a spinal cord (empty: plausible cord)."""
    c = criteria or CordCriteria()
    out = []
    if features["length_mm"] < c.min_length_mm:
        out.append(f"a cord traced over only {features['length_mm']:g} mm (< {c.min_length_mm:g} mm)")
    if features["tube_fraction"] < c.min_tube_fraction:
        out.append(f"a tube of steady cross-section with CSF around it on only {features['tube_fraction']:.0%} of the "
                   f"slices (a spinal cord: >= {c.min_tube_fraction:.0%})")
    if features["csa_cv"] > c.max_csa_cv:
        out.append(f"a cross-section that varies by {features['csa_cv']:.0%} along the cord (a spinal cord: "
                   f"<= {c.max_csa_cv:.0%})")
    if features["inner_cv"] > c.max_inner_cv:
        out.append(f"an intensity that varies by {features['inner_cv']:.0%} inside the traced cord (a spinal cord: "
                   f"<= {c.max_inner_cv:.0%})")
    lo, hi = c.csa_range_mm2
    if not lo <= features["csa_median_mm2"] <= hi:
        out.append(f"a cross-sectional area of {features['csa_median_mm2']:g} mm2 (a spinal cord: {lo:g}-{hi:g} mm2)")
    return out


def _longest_run(mask: np.ndarray) -> int:
    best = cur = 0
    for v in mask:
        cur = cur + 1 if v else 0
        best = max(best, cur)
    return best
