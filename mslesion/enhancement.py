"""Gadolinium enhancement and T1 black holes, from pre- and post-contrast T1 on the working grid.

Pure array functions. The inputs are the working-grid arrays of :func:`mslesion.preprocess.preprocess`
(every contrast co-registered to the FLAIR and normalised with ``robust_zscore``):

- :func:`reference_masks` finds normal-appearing white matter (NAWM) and CSF from FLAIR and T1;
- :func:`subtraction_z` predicts the post-contrast T1 from the pre-contrast one (a monotone intensity
  curve fitted on the non-lesion brain) and expresses the difference as a robust z-score (0 = as expected,
  3 = three robust SDs brighter than tissue of the same pre-contrast intensity);
- :func:`normal_enhancement` marks where enhancement is normal: the brain surface (dura, venous sinuses,
  cortical veins), CSF spaces (choroid plexus) and thin tubular structures (vessels);
- :func:`assess_lesions` decides, per FLAIR lesion, whether it enhances and whether it is T1-hypointense;
- :func:`enhancing_foci` finds enhancement where FLAIR shows no lesion.

The thresholds are fixed a priori (:class:`EnhancementRules`): no expert enhancement masks exist in this
project's data, so none was tuned on a scan.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from .report import SingleVisitDit

#: median absolute deviation -> standard deviation for a normal distribution
_MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class EnhancementRules:
    """A-priori thresholds of the enhancement and black-hole calls (recorded in the report)."""

    #: a voxel enhances when post-minus-pre is this many robust SDs above NAWM's
    z_voxel: float = 3.0
    #: a FLAIR lesion enhances when at least this volume (mm^3) of it, or of its rim, enhances
    lesion_min_mm3: float = 8.0
    #: ... in one connected cluster (True) rather than in all of the lesion and its rim together: scattered voxels
    #: at ``z_voxel`` in a large lesion add up to ``lesion_min_mm3`` by noise alone. On the benchmark (same
    #: placements) >= 5 mm in-lesion enhancement 189 -> 188 of 194 nodular, 171 -> 168 of 181 ring; with the model's
    #: lesions it drops patient07's 211 mm^3 lesion with 15 mm^3 of scattered z >= 3 voxels (notes/issue-17.md)
    lesion_connected: bool = True
    #: the rim (mm beyond the FLAIR lesion's edge) where a lesion's enhancement is looked for too: a ring-enhancing
    #: lesion's rim is its edge, which a FLAIR segmentation may place up to a few mm inside the enhancing rim
    #: (scripts/bench_enhancement.py: rings with the FLAIR edge 0-3 mm inside found 0.91 with 2 mm, 0.73 with 1 mm;
    #: 3 mm called a second expert lesion enhancing on an unmodified scan)
    lesion_rim_mm: float = 2.0
    #: an enhancing focus outside FLAIR lesions needs at least this volume (mm^3)
    focus_min_mm3: float = 14.0
    #: enhancement this close to the brain surface (mm) is taken as dura, sinuses or cortical veins
    surface_margin_mm: float = 4.0
    #: foci longer than this many times their thickness are taken as vessels. An enhancing lesion outside FLAIR
    #: lesions is a compact nodule or ring; 2 keeps synthetic >= 5 mm foci found >= 0.9 (scripts/bench_enhancement.py;
    #: 3 let through 2x more synthetic vessel segments and most vessel-like foci on real scans)
    vessel_elongation: float = 2.0
    #: foci whose longest axis is more than this many times their second-longest are taken as vessels (lines);
    #: 0 = not used
    vessel_tubularity: float = 0.0
    #: the shape (elongation, tubularity) of a focus is judged on its voxels at z >= this within 2 mm of it, so that a
    #: ring thresholded into an arc is judged as the ring; 0 = on the voxels at ``z_voxel`` only
    focus_shape_z: float = 0.0
    #: foci centred this close (mm) to CSF are taken as subependymal veins or choroid plexus; 0 = not used
    focus_csf_margin_mm: float = 0.0
    #: foci larger than this (mm^3; a 15 mm ball is 1,767) are vascular trees or sinuses, not lesions
    focus_max_mm3: float = 2000.0
    #: foci must lie in white matter: median pre-contrast T1 at least this fraction of the way from CSF to NAWM
    focus_min_t1_ratio: float = 0.8
    #: foci must be FLAIR-hyperintense: median FLAIR at least this percentile of NAWM's FLAIR. An active MS lesion
    #: is T2/FLAIR-hyperintense; enhancing veins and the choroid plexus are not. Chosen on the synthetic benchmark
    #: (scripts/bench_enhancement.py, foci given FLAIR signal drawn from the expert lesions'): >= 5 mm NAWM foci
    #: found 0.94 / 0.91 (nodular / ring) at 75, 0.92 / 0.88 at 90, 0.97 / 0.94 without the rule; synthetic vessels
    #: called 0 / 240 (6 / 240 without). 0 = not used (the FLAIR is then evidence only)
    focus_min_flair_pct: float = 75.0
    #: a lesion is T1-hypointense when its T1 lies below this fraction of the way from CSF to NAWM (grey matter lies
    #: near 0.55 here): 0.4 halved the synthetic false black holes of 0.5 at the same sensitivity
    #: (scripts/bench_enhancement.py, session 17)
    black_hole_ratio: float = 0.4
    #: ... in at least this volume (mm^3) of it (T1 median-filtered over 3x3x3 voxels, away from CSF): a black hole
    #: may be the core of a larger FLAIR lesion, whose median T1 it does not move (the median rule found 0.57 of
    #: synthetic >= 5 mm black holes); 0 = the lesion's median T1 decides instead
    black_hole_min_mm3: float = 10.0
    #: lesion voxels this close (mm) to CSF are left out of the black-hole volume (partial volume with CSF;
    #: without it, 3x more synthetic false black holes)
    black_hole_csf_margin_mm: float = 2.0
    #: the post-contrast T1 must match the pre-contrast T1's anatomy: rank correlation over the brain without
    #: lesions at least this (same head, another sequence: 0.81 / 0.84; another subject: 0.43 / 0.48;
    #: :mod:`mslesion.enhancement_checks`)
    post_min_rank_correlation: float = 0.6
    #: ... and show normal enhancement: at least this fraction of the brain surface and CSF border at ``z_voxel``
    #: (real post-contrast scans 0.023; a pre-contrast T1 given as post 0.0001 at most)
    post_min_normal_enhancement: float = 0.005

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class References:
    """Reference tissue on the working grid (boolean masks) and their T1 levels."""

    nawm: np.ndarray
    csf: np.ndarray
    t1_nawm: float
    t1_csf: float
    #: FLAIR (robust z) of the NAWM voxels, for FLAIR levels relative to normal tissue
    flair_nawm: np.ndarray | None = None

    def flair_level(self, percentile: float) -> float | None:
        """The given percentile of NAWM's FLAIR (None without NAWM)."""
        if self.flair_nawm is None or self.flair_nawm.size == 0:
            return None
        return float(np.percentile(self.flair_nawm, percentile))


def _robust_low(values: np.ndarray, k: float = 3.0) -> float:
    """Median minus ``k`` robust SDs: below it a value is clearly darker than the bulk of the brain."""
    med = float(np.median(values))
    return med - k * _MAD_TO_SD * float(np.median(np.abs(values - med)))


def reference_masks(flair: np.ndarray, t1: np.ndarray, brain: np.ndarray, lesions: np.ndarray) -> References:
    """NAWM (bright on T1, not bright on FLAIR, away from lesions and the surface) and CSF (dark on both).

    ``flair`` and ``t1`` are robust-z arrays (brain median 0), ``brain`` and ``lesions`` boolean. CSF is
    what lies more than 3 robust SDs below the brain median on both T1 and FLAIR.
    """
    inner = ndimage.binary_erosion(brain, iterations=3)
    near_lesion = ndimage.binary_dilation(lesions, iterations=2)
    t1_in = t1[inner]
    fl_in = flair[inner]
    if t1_in.size < 100:
        raise ValueError("brain mask too small to find reference tissue")
    t1_hi = np.percentile(t1_in, 60)
    fl_hi = np.percentile(fl_in, 90)
    nawm = inner & ~near_lesion & (t1 >= t1_hi) & (flair <= fl_hi)
    csf = brain & (t1 < _robust_low(t1_in)) & (flair < _robust_low(fl_in))
    t1_nawm = float(np.median(t1[nawm])) if nawm.any() else float(np.median(t1_in))
    t1_csf = float(np.median(t1[csf])) if csf.any() else float(np.percentile(t1_in, 1))
    return References(nawm, csf, t1_nawm, t1_csf, flair[nawm].astype(np.float32))


@dataclass
class IntensityMatch:
    """The pre -> post intensity curve fitted on reference tissue: median and robust SD per pre-intensity bin."""

    centres: np.ndarray
    medians: np.ndarray
    spreads: np.ndarray

    def z(self, pre: np.ndarray, post: np.ndarray, misregistration_mm: float = 0.5,
          zooms: tuple[float, ...] = (1.0, 1.0, 1.0)) -> np.ndarray:
        """Post minus predicted post, in units of the expected error (see :func:`subtraction_z`).

        Works on any crop of the two images (the curve is global, the gradient local).
        """
        predicted = np.interp(pre, self.centres, self.medians)
        spread = np.interp(pre, self.centres, self.spreads)
        grad = np.sqrt(sum(g ** 2 for g in np.gradient(post.astype(np.float32), *zooms)))
        spread = np.sqrt(spread ** 2 + (misregistration_mm * grad) ** 2)
        return ((post - predicted) / spread).astype(np.float32)


def fit_intensity_match(pre: np.ndarray, post: np.ndarray, reference: np.ndarray, bins: int = 40) -> IntensityMatch:
    """The monotone curve of :func:`subtraction_z`, fitted on the ``reference`` voxels."""
    x, y = pre[reference].astype(np.float64), post[reference].astype(np.float64)
    if x.size < 50 * bins:
        raise ValueError("too few reference voxels to match the two T1 scans")
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)))
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    centres, medians, spreads = [], [], []
    for b in range(len(edges) - 1):
        sel = which == b
        if np.count_nonzero(sel) < 20:
            continue
        med = float(np.median(y[sel]))
        centres.append(float(np.median(x[sel])))
        medians.append(med)
        spreads.append(_MAD_TO_SD * float(np.median(np.abs(y[sel] - med))))
    # monotone: brighter before, brighter after
    return IntensityMatch(np.asarray(centres), np.maximum.accumulate(np.asarray(medians)),
                          np.maximum(np.asarray(spreads), 1e-6))


def subtraction_z(pre: np.ndarray, post: np.ndarray, reference: np.ndarray, bins: int = 40,
                  misregistration_mm: float = 0.5, zooms: tuple[float, ...] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Post minus intensity-matched pre, in robust z of the reference voxels at the same pre intensity.

    The two scans may differ in gain, offset and contrast (another sequence), so post is predicted from
    pre by a monotone curve: the median post-contrast value in each of ``bins`` quantile bins of the
    pre-contrast value over ``reference`` (the brain without lesions), interpolated. Enhancement touches
    few voxels, so the medians ignore it. The residual is divided by the expected error: 1.4826 x its MAD
    in the same bins, combined with what a ``misregistration_mm`` shift of the post-contrast image makes
    at its intensity edges (gradient x shift), so that tissue borders and vessel walls are not called
    enhancing because the two scans are not perfectly aligned.
    """
    return fit_intensity_match(pre, post, reference, bins).z(pre, post, misregistration_mm, zooms)


def normal_enhancement(brain: np.ndarray, csf: np.ndarray, zooms: tuple[float, ...],
                       rules: EnhancementRules) -> np.ndarray:
    """Where enhancement is normal: within ``surface_margin_mm`` of the brain surface, and in/next to CSF."""
    depth = ndimage.distance_transform_edt(brain, sampling=zooms)
    surface = brain & (depth <= rules.surface_margin_mm)
    return surface | ndimage.binary_dilation(csf, iterations=1)


def _axes(coords: np.ndarray, zooms: tuple[float, ...]) -> np.ndarray:
    """Principal-axis variances (mm^2, ascending) of a voxel cloud; a voxel's own extent (1/12) at least."""
    if len(coords) < 4:
        return np.ones(3)
    pts = coords * np.asarray(zooms, float)
    return np.maximum(np.sort(np.linalg.eigvalsh(np.cov(pts.T))), 1.0 / 12.0)


def _elongation(coords: np.ndarray, zooms: tuple[float, ...]) -> float:
    """Ratio of the longest to the shortest principal axis of a voxel cloud (mm)."""
    ev = _axes(coords, zooms)
    return float(np.sqrt(ev[-1] / ev[0]))


def _tubularity(coords: np.ndarray, zooms: tuple[float, ...]) -> float:
    """Ratio of the longest to the second-longest principal axis: large for a line (a vessel), near 1 for a ball,
    a shell or a part of a shell (a cap), which are two-dimensional or more."""
    ev = _axes(coords, zooms)
    return float(np.sqrt(ev[-1] / ev[1]))


@dataclass
class LesionEvidence:
    """Per FLAIR lesion: the enhancement and black-hole calls and the numbers behind them."""

    lesion_id: int
    enhancing: bool
    enhancing_mm3: float
    enhancement_z_p95: float
    t1_hypointense: bool | None
    t1_ratio: float | None
    #: volume (mm^3) of the lesion below ``black_hole_ratio`` (median-filtered T1, away from CSF)
    t1_hypointense_mm3: float | None = None


def assess_lesions(labels: np.ndarray, n: int, sub_z: np.ndarray | None, normal: np.ndarray | None,
                   t1: np.ndarray | None, refs: References | None, voxel_mm3: float,
                   rules: EnhancementRules, zooms: tuple[float, ...] = (1.0, 1.0, 1.0),
                   csf: np.ndarray | None = None) -> list[LesionEvidence]:
    """Enhancement (needs ``sub_z``) and T1 hypointensity (needs ``t1``) of lesions 1..n of ``labels``.

    A lesion's enhancing volume counts voxels of the lesion and of its rim (within ``rules.lesion_rim_mm``
    of it: ring enhancement lies at the lesion's edge, which a FLAIR segmentation may place a little inside
    the enhancing rim) with ``sub_z >= rules.z_voxel``, outside ``normal``.
    T1 ratio = (lesion median T1 - CSF) / (NAWM - CSF): 1 is as bright as NAWM, 0 as dark as CSF.
    With ``rules.black_hole_min_mm3`` > 0, a lesion is T1-hypointense when that volume of it has a T1 ratio below
    ``black_hole_ratio`` (T1 median-filtered over 3x3x3 voxels against noise; voxels within
    ``black_hole_csf_margin_mm`` of ``csf``, default ``refs.csf``, left out against partial volume with CSF):
    a black hole may be the core of a larger FLAIR lesion, whose median T1 it does not move.
    """
    out = []
    slices = ndimage.find_objects(labels, max_label=n)
    if csf is None and refs is not None and refs.csf.shape == labels.shape:
        csf = refs.csf
    margin = rules.lesion_rim_mm
    if rules.black_hole_min_mm3 > 0:
        margin = max(margin, rules.black_hole_csf_margin_mm)
    pad = [int(np.ceil(margin / z)) + 1 for z in zooms]
    for lid in range(1, n + 1):
        sl = slices[lid - 1]
        if sl is None:
            continue
        box = tuple(slice(max(0, s.start - p), s.stop + p) for s, p in zip(sl, pad))
        own = labels[box] == lid
        enhancing, mm3, p95 = False, 0.0, float("nan")
        if sub_z is not None:
            zone = ndimage.distance_transform_edt(~own, sampling=zooms) <= rules.lesion_rim_mm + 1e-6
            if normal is not None:
                zone &= ~normal[box]
            z = sub_z[box][zone]
            if z.size:
                mm3 = float(np.count_nonzero(z >= rules.z_voxel)) * voxel_mm3
                p95 = float(np.percentile(z, 95))
                if rules.lesion_connected and mm3:
                    hot, _ = ndimage.label(zone & (sub_z[box] >= rules.z_voxel), structure=np.ones((3, 3, 3), bool))
                    mm3 = float(np.bincount(hot.ravel())[1:].max()) * voxel_mm3
            enhancing = mm3 >= rules.lesion_min_mm3
        hypo, ratio, hypo_mm3 = None, None, None
        if t1 is not None and refs is not None and refs.t1_nawm > refs.t1_csf:
            ratio = (float(np.median(t1[box][own])) - refs.t1_csf) / (refs.t1_nawm - refs.t1_csf)
            hypo = ratio < rules.black_hole_ratio
            if rules.black_hole_min_mm3 > 0:
                hypo_mm3 = _hypointense_mm3(t1[box], own, None if csf is None else csf[box], refs, rules, zooms)
                hypo = hypo_mm3 >= rules.black_hole_min_mm3
        out.append(LesionEvidence(lid, enhancing, round(mm3, 1), round(p95, 2),
                                  hypo, None if ratio is None else round(ratio, 3),
                                  None if hypo_mm3 is None else round(hypo_mm3, 1)))
    return out


def _hypointense_mm3(t1: np.ndarray, own: np.ndarray, csf: np.ndarray | None, refs: References,
                     rules: EnhancementRules, zooms: tuple[float, ...]) -> float:
    """Volume (mm^3) of ``own`` whose median-filtered T1 ratio is below ``black_hole_ratio``, away from CSF."""
    smooth = ndimage.median_filter(t1, size=3, mode="nearest")
    zone = own & ((smooth - refs.t1_csf) < rules.black_hole_ratio * (refs.t1_nawm - refs.t1_csf))
    if csf is not None and csf.any() and rules.black_hole_csf_margin_mm > 0:
        zone &= ndimage.distance_transform_edt(~csf, sampling=zooms) > rules.black_hole_csf_margin_mm + 1e-6
    return float(np.count_nonzero(zone)) * float(np.prod(zooms))


@dataclass
class EnhancingFocus:
    """Enhancement outside the FLAIR lesions (voxel centroid on the working grid)."""

    centroid_vox: tuple[float, float, float]
    volume_mm3: float
    z_max: float
    elongation: float
    flair_z: float | None = None
    #: the focus's voxels (N, 3) on the working grid, for the enhancement map (not reported)
    voxels: np.ndarray | None = field(default=None, repr=False, compare=False)


def enhancing_foci(sub_z: np.ndarray, brain: np.ndarray, lesions: np.ndarray, normal: np.ndarray,
                   zooms: tuple[float, ...], rules: EnhancementRules, t1: np.ndarray | None = None,
                   refs: References | None = None, flair: np.ndarray | None = None,
                   csf: np.ndarray | None = None) -> list[EnhancingFocus]:
    """Compact enhancing components in white matter, away from FLAIR lesions and normal enhancement.

    Rejected: components under ``focus_min_mm3`` or over ``focus_max_mm3`` (vascular trees, sinuses),
    elongated ones (vessels), and, where ``t1``/``refs`` are given, those whose pre-contrast T1 is not
    white-matter-like (cortex, sulcal veins, CSF spaces), and, where ``flair`` and ``refs`` are given,
    those not FLAIR-hyperintense (``focus_min_flair_pct``). Each focus carries its median FLAIR (robust z).
    """
    flair_level = (refs.flair_level(rules.focus_min_flair_pct)
                   if flair is not None and refs is not None and rules.focus_min_flair_pct > 0 else None)
    voxel_mm3 = float(np.prod(zooms))
    cand_wide = brain & ~ndimage.binary_dilation(lesions, iterations=2) & ~normal
    cand = (sub_z >= rules.z_voxel) & cand_wide
    labels, _ = ndimage.label(cand, structure=np.ones((3, 3, 3), bool))
    foci = []
    for lid, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        own = labels[sl] == lid
        vol = float(own.sum()) * voxel_mm3
        if not rules.focus_min_mm3 <= vol <= rules.focus_max_mm3:
            continue
        if t1 is not None and refs is not None and refs.t1_nawm > refs.t1_csf:
            ratio = (float(np.median(t1[sl][own])) - refs.t1_csf) / (refs.t1_nawm - refs.t1_csf)
            if ratio < rules.focus_min_t1_ratio:
                continue
        if flair_level is not None and flair is not None and float(np.median(flair[sl][own])) < flair_level:
            continue
        coords = np.argwhere(own) + np.array([s.start for s in sl])
        shape_coords = coords
        if rules.focus_shape_z and rules.focus_shape_z < rules.z_voxel:
            shape_coords = _grown(sub_z, cand_wide, sl, own, rules.focus_shape_z, 2.0, zooms)
        elong = _elongation(shape_coords, zooms)
        if elong > rules.vessel_elongation:
            continue
        if rules.vessel_tubularity and _tubularity(shape_coords, zooms) > rules.vessel_tubularity:
            continue
        if csf is not None and rules.focus_csf_margin_mm > 0 and _near(
                csf, sl, _centre_voxel(coords, sl, own.shape), rules.focus_csf_margin_mm, zooms):
            continue
        centre = tuple(float(c) for c in coords.mean(axis=0))
        fl = None if flair is None else round(float(np.median(flair[sl][own])), 2)
        foci.append(EnhancingFocus(centre, round(vol, 1), round(float(sub_z[sl][own].max()), 2),  # type: ignore[arg-type]
                                   round(elong, 2), fl, coords))
    return foci


def _grown(sub_z: np.ndarray, allowed: np.ndarray, sl: tuple[slice, ...], own: np.ndarray, z_low: float,
           reach_mm: float, zooms: tuple[float, ...]) -> np.ndarray:
    """Voxel coordinates of ``own`` (a component in the box ``sl``) and of the ``allowed`` voxels at ``z >= z_low``
    within ``reach_mm`` of it."""
    pad = [int(np.ceil(reach_mm / z)) + 1 for z in zooms]
    box = tuple(slice(max(0, s.start - p), min(n, s.stop + p)) for s, p, n in zip(sl, pad, sub_z.shape))
    inner = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(sl, box))
    seed = np.zeros(tuple(b.stop - b.start for b in box), bool)
    seed[inner] = own
    reach = ndimage.distance_transform_edt(~seed, sampling=zooms) <= reach_mm + 1e-6
    region = seed | (reach & allowed[box] & (sub_z[box] >= z_low))
    return np.argwhere(region) + np.array([b.start for b in box])


def _centre_voxel(coords: np.ndarray, sl: tuple[slice, ...], shape: tuple[int, ...]) -> np.ndarray:
    """A mask of the box ``sl`` with only the voxel nearest to the centroid of ``coords`` set."""
    out = np.zeros(shape, bool)
    idx = np.rint(coords.mean(axis=0)).astype(int) - np.array([s.start for s in sl])
    out[tuple(np.clip(idx, 0, np.array(shape) - 1))] = True
    return out


def _near(mask: np.ndarray, sl: tuple[slice, ...], own: np.ndarray, margin_mm: float,
          zooms: tuple[float, ...]) -> bool:
    """Whether any voxel of ``own`` (a component in the box ``sl``) lies within ``margin_mm`` of ``mask``."""
    pad = [int(np.ceil(margin_mm / z)) + 1 for z in zooms]
    box = tuple(slice(max(0, s.start - p), min(n, s.stop + p)) for s, p, n in zip(sl, pad, mask.shape))
    local = mask[box]
    if not local.any():
        return False
    inner = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(sl, box))
    dist = ndimage.distance_transform_edt(~local, sampling=zooms)[inner]
    return bool((dist[own] <= margin_mm + 1e-6).any())


def enhancement_map(labels: np.ndarray, evidence: list[LesionEvidence], sub_z: np.ndarray, normal: np.ndarray,
                    foci: list[EnhancingFocus], rules: EnhancementRules,
                    zooms: tuple[float, ...] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Label image of the enhancement calls: 1 = enhancing voxels of an enhancing lesion (the lesion and its rim,
    ``sub_z >= z_voxel``, outside normal enhancement), 2 = the voxels of each enhancing focus outside lesions."""
    out = np.zeros(labels.shape, np.uint8)
    ids = [e.lesion_id for e in evidence if e.enhancing]
    if ids:
        pts = np.argwhere(np.isin(labels, ids))
        pad = np.ceil(rules.lesion_rim_mm / np.asarray(zooms, float)).astype(int) + 1
        box = tuple(slice(max(0, int(a)), int(b)) for a, b in zip(pts.min(0) - pad, pts.max(0) + 1 + pad))
        called = np.isin(labels[box], ids)
        zone = ndimage.distance_transform_edt(~called, sampling=zooms) <= rules.lesion_rim_mm + 1e-6
        out[box][zone & (sub_z[box] >= rules.z_voxel) & ~normal[box]] = 1
    for f in foci:
        if f.voxels is not None:
            out[tuple(f.voxels.T)] = 2
    return out


def dissemination_in_time(evidence: list[LesionEvidence], assessed: bool,
                          reason: str | None = None) -> SingleVisitDit:
    """McDonald 2017 single-visit DIT: enhancing and non-enhancing lesions at the same time.

    ``reason``: why it was not assessed (only where ``assessed`` is False).
    """
    if not assessed:
        reason = reason or "no post-contrast T1 given"
        return SingleVisitDit(assessed=False, met=None, reason=reason,
                              statement=f"single-visit dissemination in time not assessed: {reason}")
    n_enh = sum(e.enhancing for e in evidence)
    n_non = sum(not e.enhancing for e in evidence)
    met = n_enh > 0 and n_non > 0
    return SingleVisitDit(
        assessed=True, met=met, enhancing_lesions=n_enh, non_enhancing_lesions=n_non,
        statement=("simultaneous enhancing and non-enhancing lesions: dissemination in time shown on this scan"
                   if met else "no simultaneous enhancing and non-enhancing lesions on this scan"))
