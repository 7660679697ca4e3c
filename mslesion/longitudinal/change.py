"""Joint two-time-point lesion change detection (pure array functions).

Both time points must already be on one grid (the baseline working grid).
The method combines the two scans voxel by voxel instead of comparing two
independent segmentations after the fact:

1. both FLAIRs are re-normalised inside the *same* brain mask, so a change in
   scanner scale is not mistaken for a change of tissue, and the follow-up's brain
   quantiles are matched to the baseline's (a grey/white contrast change is no lesion change);
2. the smoothed difference ``follow-up - baseline`` minus its slowly varying part
   (differential bias field) becomes a z-score against its own robust spread,
   estimated per bin of local edge strength (edges carry residual misregistration);
3. a voxel is an *increase* when the z-score passes a hysteresis threshold (seed
   ``z_seed`` - or a voxel the segmenter calls lesion only at follow-up - grown to
   ``z_grow``), inside the brain away from its rim and from CSF borders, **and** the
   follow-up voxel looks like lesion (brighter than its surroundings, or segmenter
   probability >= threshold); *decreases* are the mirror image using the baseline;
4. each increase component is *enlarging* when it touches a baseline lesion
   (segmenter mask) and the growth passes both the absolute and the relative limit,
   *new* when it touches none; decreases are *shrinking* or *disappearing* likewise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..lesions import label_components
from ..preprocess.normalize import robust_zscore
from .evidence import EvidenceContext, EvidenceOptions, box_around

NEW, ENLARGING, SHRINKING, DISAPPEARING = 1, 2, 3, 4
KINDS = {NEW: "new", ENLARGING: "enlarging", SHRINKING: "shrinking", DISAPPEARING: "disappearing"}


@dataclass
class ChangeOptions:
    """Thresholds of the change detector (z-scores are of the difference image).

    ``z_seed``/``z_grow``: hysteresis on the difference z; ``smooth_mm``: smoothing before
    subtracting; ``bias_mm``: scale of the differential bias removed; ``p_support``: segmenter
    probability below which a voxel counts as "not lesion" at the other time point;
    ``edge_mm``: rim of the brain left out of the statistics; ``search_edge_mm``,
    ``csf_percentile``, ``csf_margin_mm``: where changes are searched (away from the brain
    rim and from dark-FLAIR CSF); ``extent_fraction``: part of a change's peak that bounds it;
    ``shift_tolerance_mm``: a change must beat the other scan's brightest voxel this close;
    ``z_unconfirmed``: peak z a new/disappeared lesion needs unless the segmenter confirms it;
    ``min_new_mm3``: smallest new/disappeared lesion; ``abs_growth_mm3``/``rel_growth``:
    least growth (or shrinkage) in mm^3 and relative to the lesion it starts from;
    ``evidence``: what both scans must show for a call to be made (:mod:`.evidence`);
    ``match_quantiles``: number of brain quantiles used to match the follow-up's intensities to
    the baseline's before subtracting (0: robust z only).
    """

    z_seed: float = 4.0
    z_grow: float = 2.5
    smooth_mm: float = 1.2
    bias_mm: float = 10.0
    p_support: float = 0.2
    edge_mm: float = 2.0
    search_edge_mm: float = 4.0
    csf_percentile: float = 10.0
    csf_margin_mm: float = 1.0
    extent_fraction: float = 0.2
    shift_tolerance_mm: float = 1.5
    z_unconfirmed: float = 4.0
    min_new_mm3: float = 6.0
    abs_growth_mm3: float = 6.0
    rel_growth: float = 0.2
    connectivity: int = 26
    evidence: EvidenceOptions = field(default_factory=EvidenceOptions)
    match_quantiles: int = 20


@dataclass
class ChangeComponent:
    """One detected change: a connected component of the change map."""

    label: int
    kind: str
    voxels: int
    change_mm3: float
    baseline_mm3: float
    followup_mm3: float
    peak_z: float
    mean_z: float
    lesion_probability: float = 0.0
    #: what both scans show (:class:`~mslesion.longitudinal.evidence.Evidence` as a dict)
    evidence: dict = field(default_factory=dict)


@dataclass
class ChangeMaps:
    """Label map (0 none, 1 new, 2 enlarging, 3 shrinking, 4 disappearing) and its components."""

    kinds: np.ndarray
    components: np.ndarray
    table: list[ChangeComponent] = field(default_factory=list)
    noise_sigma: float = 0.0
    #: candidates the two scans did not support (not in the maps; label 0)
    rejected: list[ChangeComponent] = field(default_factory=list)
    #: normal-tissue FLAIR levels the evidence was measured against
    levels: dict[str, float] = field(default_factory=dict)

    @property
    def new_enlarging(self) -> np.ndarray:
        return np.isin(self.kinds, (NEW, ENLARGING))

    def count(self, kind: str) -> int:
        return sum(c.kind == kind for c in self.table)

    def volume_mm3(self, kind: str) -> float:
        return float(sum(c.change_mm3 for c in self.table if c.kind == kind))


def difference_z(f0: np.ndarray, f1: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float],
                 smooth_mm: float, bias_mm: float = 10.0, bins: int = 12) -> tuple[np.ndarray, float]:
    """Z-score of the difference f1 - f0 inside ``mask``, with an edge-aware noise model.

    * ``smooth_mm``: light Gaussian smoothing of both images before subtracting;
    * ``bias_mm``: the difference smoothed at this scale (inside the mask) is removed, so a
      slowly varying intensity change between sessions (differential bias field) is ignored;
    * the spread of the difference grows at tissue edges (residual misregistration, different
      slice positions), so the noise sigma is estimated per bin of local edge strength
      (robust MAD in each of ``bins`` quantile bins) and each voxel is scaled by its bin's sigma.

    Returns the z map (0 outside ``mask``) and the median sigma.
    """
    z, sigma_map, _, _ = _difference_parts(f0, f1, mask, spacing, smooth_mm, bias_mm, bins)
    return z, float(np.median(sigma_map[mask])) if mask.any() else 0.0


def shift_tolerant(z: np.ndarray, earlier: np.ndarray, later: np.ndarray, sigma_map: np.ndarray,
                   footprint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Increase and decrease z maps that a small shift of either image cannot explain.

    An increase at v must beat the *brightest* baseline voxel within ``footprint`` of v (and a
    decrease the brightest follow-up voxel), so an edge moved by residual misregistration or a
    different slice position no longer looks like a change; a new lesion away from bright
    tissue keeps its full z.
    """
    pen0 = (ndimage.grey_dilation(earlier, footprint=footprint) - earlier) / sigma_map
    pen1 = (ndimage.grey_dilation(later, footprint=footprint) - later) / sigma_map
    return (z - pen0).astype(np.float32), (-z - pen1).astype(np.float32)


def _difference_parts(f0: np.ndarray, f1: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float],
                      smooth_mm: float, bias_mm: float = 10.0, bins: int = 12
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(z map, per-voxel noise sigma, smoothed f0, smoothed f1) - see :func:`difference_z`."""
    f0 = np.asarray(f0, np.float32)
    f1 = np.asarray(f1, np.float32)
    if smooth_mm > 0:
        sig = [smooth_mm / s for s in spacing]
        f0 = ndimage.gaussian_filter(f0, sig)
        f1 = ndimage.gaussian_filter(f1, sig)
    diff = f1 - f0
    if mask.sum() < 10 * bins:
        return np.zeros_like(diff), np.ones_like(diff), f0, f1
    if bias_mm > 0:
        m = mask.astype(np.float32)
        sig = [bias_mm / s for s in spacing]
        low = ndimage.gaussian_filter(diff * m, sig) / np.maximum(ndimage.gaussian_filter(m, sig), 1e-3)
        diff = diff - low
    edge = np.maximum(_gradient(f0, spacing), _gradient(f1, spacing))
    vals, evals = diff[mask], edge[mask]
    diff = diff - float(np.median(vals))
    vals = vals - float(np.median(vals))
    edges = np.unique(np.quantile(evals, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, evals, side="right") - 1, 0, len(edges) - 2)
    sigmas = np.array([_mad(vals[which == b]) for b in range(len(edges) - 1)])
    sigmas = np.maximum.accumulate(np.where(sigmas > 0, sigmas, np.nan))  # non-decreasing with edge strength
    sigmas = np.nan_to_num(sigmas, nan=_mad(vals) or 1.0)
    centres = (edges[:-1] + edges[1:]) / 2
    sigma_map = np.interp(edge, centres, sigmas).astype(np.float32)
    z = diff / sigma_map
    z[~mask] = 0.0
    return z.astype(np.float32), sigma_map, f0, f1


def _gradient(f: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Gradient magnitude (per mm)."""
    return np.sqrt(sum((ndimage.sobel(f, axis=a) / (8.0 * spacing[a])) ** 2 for a in range(3))).astype(np.float32)


def _mad(vals: np.ndarray) -> float:
    if vals.size < 10:
        return 0.0
    return float(np.median(np.abs(vals - np.median(vals)))) * 1.4826


def detect_changes(f0: np.ndarray, f1: np.ndarray, p0: np.ndarray, p1: np.ndarray, brain: np.ndarray,
                   spacing: tuple[float, float, float], threshold: float = 0.5,
                   options: ChangeOptions | None = None) -> ChangeMaps:
    """Find new, enlarging, shrinking and disappearing lesions between two co-registered scans.

    ``f0``/``f1``: baseline/follow-up FLAIR, ``p0``/``p1``: lesion probabilities,
    ``brain``: brain mask, all on one grid with voxel size ``spacing`` (mm).
    ``threshold`` turns probabilities into the lesion masks used for enlargement.
    """
    o = options or ChangeOptions()
    shapes = {a.shape for a in (f0, f1, p0, p1, brain)}
    if len(shapes) != 1:
        raise ValueError(f"all inputs must share one grid, got shapes {sorted(shapes)}")
    brain = np.asarray(brain, bool)
    inner = _erode_mm(brain, o.edge_mm, spacing)
    g0 = robust_zscore(np.asarray(f0, np.float32), inner)
    g1 = robust_zscore(np.asarray(f1, np.float32), inner)
    if o.match_quantiles:
        g1 = match_quantiles(g1, g0, inner, o.match_quantiles)
    z, sigma_map, s0, s1 = _difference_parts(g0, g1, inner, spacing, o.smooth_mm, o.bias_mm)
    sigma = float(np.median(sigma_map[inner])) if inner.any() else 0.0
    if o.shift_tolerance_mm > 0:
        radius = np.asarray([o.shift_tolerance_mm / sp for sp in spacing])
        half = np.floor(radius).astype(int)
        grid = np.indices(tuple(2 * half + 1)) - half[:, None, None, None]
        footprint = sum((grid[a] / max(radius[a], 1e-6)) ** 2 for a in range(3)) <= 1.0 + 1e-6
        z_inc, z_dec = shift_tolerant(z, s0, s1, sigma_map, footprint)
    else:
        z_inc, z_dec = z, -z
    search = _search_region(g0, g1, brain, spacing, o)
    les0 = (p0 >= threshold) & brain
    les1 = (p1 >= threshold) & brain
    seeds_inc = (z_inc >= o.z_seed) | ((z_inc >= o.z_grow) & (p1 >= threshold) & (p0 < o.p_support))
    seeds_dec = (z_dec >= o.z_seed) | ((z_dec >= o.z_grow) & (p0 >= threshold) & (p1 < o.p_support))
    inc = _grow(z_inc, seeds_inc, search & _support(g1, p1, spacing, threshold), o)
    dec = _grow(z_dec, seeds_dec, search & _support(g0, p0, spacing, threshold), o)
    if o.extent_fraction > 0:
        fine = ndimage.gaussian_filter(g1 - g0, [0.5 / s for s in spacing])
        inc = _trim(inc, fine, o)
        dec = _trim(dec, -fine, o)
    ctx = EvidenceContext(g0, g1, np.asarray(p0, np.float32), np.asarray(p1, np.float32), inner, spacing,
                          threshold, o.p_support, o.evidence)
    out = ChangeMaps(np.zeros(brain.shape, np.uint8), np.zeros(brain.shape, np.int32), [], sigma, [], ctx.levels())
    sizes = _LesionSizes(les0, les1 | inc, o.connectivity)
    _classify(inc, les0, les1 | inc, z_inc, p1, ctx, o, ENLARGING, NEW, sizes, out)
    sizes = _LesionSizes(les0, les1, o.connectivity)
    _classify(dec, les1, les0 | dec, z_dec, p0, ctx, o, SHRINKING, DISAPPEARING, sizes, out)
    return out


def match_quantiles(moving: np.ndarray, target: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """Monotone intensity matching: ``moving``'s brain quantiles mapped onto ``target``'s.

    ``n`` quantiles between the 1st and 99th percentile inside ``mask``; linear beyond them with
    the robust-z slope 1, so the brightest lesions keep their contrast.  A contrast change between
    sessions (grey/white matter, CSF) then no longer shows as a difference; lesions cover too
    little of the brain to move the quantiles.
    """
    qs = np.linspace(1, 99, n)
    src = np.percentile(moving[mask], qs)
    dst = np.percentile(target[mask], qs)
    src = np.maximum.accumulate(src + np.arange(n) * 1e-6)
    out = np.interp(moving, src, dst)
    out = np.where(moving > src[-1], dst[-1] + (moving - src[-1]), out)
    out = np.where(moving < src[0], dst[0] + (moving - src[0]), out)
    return out.astype(np.float32)


def _erode_mm(mask: np.ndarray, mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    if mm <= 0:
        return mask
    eroded = ndimage.binary_erosion(mask, iterations=max(1, int(round(mm / min(spacing)))))
    return eroded if eroded.sum() > 100 else mask


def _search_region(g0: np.ndarray, g1: np.ndarray, brain: np.ndarray, spacing: tuple[float, float, float],
                   o: ChangeOptions) -> np.ndarray:
    """Where changes are looked for: the brain minus its outer rim and minus CSF (dark FLAIR) edges.

    Sulcal and ventricular CSF borders carry most residual misregistration and partial-volume
    differences between sessions; MS lesion change is a white-matter (and deep grey) event.
    """
    region = _erode_mm(brain, o.search_edge_mm, spacing)
    if o.csf_percentile <= 0 or region.sum() < 100:
        return region
    sig = [0.7 / s for s in spacing]
    s0, s1 = ndimage.gaussian_filter(g0, sig), ndimage.gaussian_filter(g1, sig)
    csf = (s0 < np.percentile(s0[region], o.csf_percentile)) | (s1 < np.percentile(s1[region], o.csf_percentile))
    if o.csf_margin_mm > 0:
        csf = ndimage.binary_dilation(csf, iterations=max(1, int(round(o.csf_margin_mm / min(spacing)))))
    return region & ~csf


def _support(g: np.ndarray, p: np.ndarray, spacing: tuple[float, float, float], threshold: float) -> np.ndarray:
    """Voxels that look like lesion at the brighter time point: brighter than their surroundings
    (fine minus coarse Gaussian of FLAIR) or called lesion by the segmenter."""
    fine = ndimage.gaussian_filter(g, [0.7 / s for s in spacing])
    coarse = ndimage.gaussian_filter(g, [4.0 / s for s in spacing])
    return (fine > coarse) | (p >= threshold)


def _trim(mask: np.ndarray, diff: np.ndarray, o: ChangeOptions) -> np.ndarray:
    """Keep the voxels of each component whose barely smoothed difference reaches
    ``extent_fraction`` of the component's peak (a half-maximum boundary by default):
    the z map is smoothed for detection, which would otherwise widen every change."""
    labels, n = label_components(mask, o.connectivity)
    if n == 0:
        return mask
    peaks = ndimage.maximum(diff, labels, np.arange(1, n + 1))
    limit = np.concatenate([[np.inf], o.extent_fraction * np.asarray(peaks, np.float32)])
    return mask & (diff >= limit[labels])


def _grow(z: np.ndarray, seeds: np.ndarray, allowed: np.ndarray, o: ChangeOptions) -> np.ndarray:
    """Hysteresis: connected regions of ``z >= z_grow`` inside ``allowed`` that contain a seed voxel."""
    region = (z >= min(o.z_grow, o.z_seed)) & allowed
    labels, n = label_components(region, o.connectivity)
    if n == 0:
        return region
    keep = np.zeros(n + 1, bool)
    keep[np.unique(labels[seeds & region])] = True
    keep[0] = False
    return keep[labels]


class _LesionSizes:
    """Connected lesions at both time points, to report the size of the lesion a change belongs to."""

    def __init__(self, les0: np.ndarray, les1: np.ndarray, connectivity: int) -> None:
        self.lab0, _ = label_components(les0, connectivity)
        self.lab1, _ = label_components(les1, connectivity)
        self.size0 = np.bincount(self.lab0.ravel())
        self.size1 = np.bincount(self.lab1.ravel())

    def around(self, sl: tuple[slice, ...], region: np.ndarray) -> tuple[int, int]:
        ids0 = np.setdiff1d(np.unique(self.lab0[sl][region]), [0])
        ids1 = np.setdiff1d(np.unique(self.lab1[sl][region]), [0])
        return int(self.size0[ids0].sum()), int(self.size1[ids1].sum())


def _padded(sl: tuple[slice, ...], shape: tuple[int, ...], pad: int = 2) -> tuple[slice, ...]:
    return tuple(slice(max(0, s.start - pad), min(n, s.stop + pad)) for s, n in zip(sl, shape))


def _classify(mask: np.ndarray, anchor: np.ndarray, bright_lesions: np.ndarray, z: np.ndarray,
              p_bright: np.ndarray, ctx: EvidenceContext, o: ChangeOptions, grow_kind: int, new_kind: int,
              sizes: _LesionSizes, out: ChangeMaps) -> None:
    """Label the components of ``mask`` (increases or decreases) into ``out``.

    ``anchor`` is the lesion mask that shows the lesion already existed (baseline lesions for
    increases) or still exists (follow-up lesions for decreases); only anchor lesions the FLAIR
    of their own scan shows as lesion-like count (a segmentation speck is no evidence).  A
    component is a growth/shrinkage when it touches an anchor lesion, directly or through the
    lesion it is part of at the bright time point (``bright_lesions``: a new focus confluent
    with an old lesion is an enlargement of it); for increases an anchor lesion must also be the
    same lesion at both time points (its bright part, 90th percentile, changes by less than the
    evidence's ``min_difference``); kept when the changed part outside the anchor
    passes ``abs_growth_mm3`` and ``rel_growth`` times the anchor lesion's size.  Otherwise it
    is a new/disappeared lesion, kept when at least ``min_new_mm3`` and either its peak z reaches
    ``z_unconfirmed`` or the segmenter calls it lesion (``p_bright >= threshold``).
    Every kept call then needs the evidence of both scans (:meth:`EvidenceContext.assess`);
    calls without it go to ``out.rejected`` when ``o.evidence.required``.
    """
    labels, n = label_components(mask, o.connectivity)
    if n == 0:
        return
    increase = grow_kind == ENLARGING
    vox_mm3 = ctx.vox_mm3
    anchor_lab, n_anchor = label_components(anchor, o.connectivity)
    anchor_sizes = np.bincount(anchor_lab.ravel(), minlength=n_anchor + 1)
    own = ctx.g0 if increase else ctx.g1  # anchors are baseline lesions for increases
    own_level = ctx.lesion0 if increase else ctx.lesion1
    bright_vox = np.bincount(anchor_lab.ravel(), weights=(own >= own_level).ravel(), minlength=n_anchor + 1)
    real = bright_vox * vox_mm3 >= o.evidence.min_support_mm3
    if increase and n_anchor:
        # the same lesion at both time points: a baseline lesion whose own FLAIR changes by a clear
        # difference is not the lesion the follow-up shows there - brightening: it was not there yet
        # (a faint focus the segmenter outlined); fading: it resolved - so an increase it touches is
        # a new lesion, not an enlargement of it
        # (compared on each lesion's bright part, its 90th percentile: most voxels of a small lesion
        # are edge voxels, which smoothing dims differently at the two time points)
        for i, sl in enumerate(ndimage.find_objects(anchor_lab), start=1):
            if sl is not None and real[i]:
                m = anchor_lab[sl] == i
                own_change = np.percentile(ctx.g1[sl][m], 90) - np.percentile(ctx.g0[sl][m], 90)
                real[i] = abs(own_change) < o.evidence.min_difference
    real[0] = False
    bright_lab, _ = label_components(bright_lesions, o.connectivity)
    both = (bright_lab > 0) & (anchor_lab > 0)
    links = np.unique(np.stack([bright_lab[both], anchor_lab[both]]), axis=1) if both.any() else np.zeros((2, 0), int)
    margin = max(o.evidence.shell_mm) + 1.0
    for idx, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        sl = _padded(sl, mask.shape)
        comp = labels[sl] == idx
        ring = ndimage.binary_dilation(comp, iterations=1)
        mine = np.setdiff1d(np.unique(bright_lab[sl][comp]), [0])
        touched = np.union1d(np.unique(anchor_lab[sl][ring]), links[1][np.isin(links[0], mine)])
        touched = touched[real[touched.astype(int)]].astype(int)
        if touched.size:
            kind = grow_kind
            sel = comp & ~anchor[sl]
            ref_vox = int(anchor_sizes[touched].sum())
            nsel = int(sel.sum())
            keep = nsel * vox_mm3 >= o.abs_growth_mm3 and nsel >= o.rel_growth * ref_vox
        else:
            kind = new_kind
            sel = comp
            nsel = int(sel.sum())
            confirmed = float(z[sl][comp].max()) >= o.z_unconfirmed or float(p_bright[sl][comp].max()) >= ctx.threshold
            keep = nsel * vox_mm3 >= o.min_new_mm3 and confirmed
        if not keep:
            continue
        box = box_around(sl, mask.shape, ctx.spacing, margin)
        changed = np.zeros(mask.shape, bool)[box]
        inner_sl = tuple(slice(a.start - b.start, a.stop - b.start) for a, b in zip(sl, box))
        changed[inner_sl] = sel
        extent = None
        if kind == DISAPPEARING:
            extent = changed | np.isin(bright_lab[box], mine)
        evidence = ctx.assess(box, changed, increase, extent)
        zc = z[sl][comp]
        v0, v1 = sizes.around(sl, ring)
        row = ChangeComponent(0, KINDS[kind], nsel, round(nsel * vox_mm3, 2), round(v0 * vox_mm3, 2),
                              round(v1 * vox_mm3, 2), round(float(zc.max()), 2), round(float(zc.mean()), 2),
                              round(float(p_bright[sl][comp].max()), 3), evidence.as_dict())
        if o.evidence.required and not evidence.supported:
            out.rejected.append(row)
            continue
        row.label = len(out.table) + 1
        out.components[sl][sel] = row.label
        out.kinds[sl][sel] = kind
        out.table.append(row)
