"""Evidence in *both* scans for each lesion-change call (issue 21).

A change call is only made when the two FLAIRs, brought into one space and one intensity
scale, agree on it; two segmentations that disagree are not enough.  All levels are in the
robust-z units of :func:`mslesion.preprocess.normalize.robust_zscore` (brain median 0, brain
p1-p99 span 4), measured on lightly smoothed images, so the rule does not depend on a
particular segmentation model:

* **lesion-like** at the bright time point: FLAIR at or above the ``lesion_percentile`` of
  that scan's normal-appearing tissue (NAWM: brain interior where neither segmentation sees
  lesion), or the segmenter calls it lesion;
* **normal-appearing** at the other time point: FLAIR at or below that scan's
  ``normal_percentile`` of NAWM, and not called lesion by the segmenter;
* a **clear difference**: the subtraction (bright minus other) is at least ``min_difference``;
* **support**: the voxels meeting all three amount to at least ``min_support_mm3``;
* **significance**: the median difference on those voxels stands out from the difference in a
  shell around the change by ``min_significance`` times the shell's robust spread (local noise:
  residual misregistration and contrast drift differ between regions);
* a **disappearing** lesion must also have returned to normal on at least
  ``min_resolved_fraction`` of its baseline extent (not only be missed by the follow-up
  segmentation).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage


@dataclass
class EvidenceOptions:
    """Thresholds of the two-scan evidence each change call needs (see the module docstring)."""

    required: bool = True
    min_difference: float = 0.6
    min_significance: float = 4.0
    lesion_percentile: float = 98.0
    normal_percentile: float = 95.0
    min_support_mm3: float = 10.0
    min_resolved_fraction: float = 0.5
    smooth_mm: float = 0.7
    shell_mm: tuple[float, float] = (2.0, 6.0)


@dataclass
class Evidence:
    """What both scans show for one change call (robust-z FLAIR units unless stated)."""

    supported: bool
    failed: list[str]
    difference: float
    significance: float
    bright_flair: float
    other_flair: float
    lesion_level: float
    normal_level: float
    support_mm3: float
    resolved_fraction: float | None
    segmenter_bright: float
    segmenter_other: float

    def as_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class EvidenceContext:
    """Both scans on one grid, smoothed once, with each scan's normal-tissue levels."""

    def __init__(self, g0: np.ndarray, g1: np.ndarray, p0: np.ndarray, p1: np.ndarray, inner: np.ndarray,
                 spacing: tuple[float, float, float], threshold: float, p_support: float,
                 options: EvidenceOptions) -> None:
        o = self.options = options
        sig = [o.smooth_mm / s for s in spacing] if o.smooth_mm > 0 else None
        self.g0 = ndimage.gaussian_filter(g0, sig) if sig else g0
        self.g1 = ndimage.gaussian_filter(g1, sig) if sig else g1
        self.diff = self.g1 - self.g0
        self.p0, self.p1 = p0, p1
        self.threshold = threshold
        self.spacing = spacing
        self.vox_mm3 = float(np.prod(spacing))
        nawm = inner & (p0 < p_support) & (p1 < p_support)
        if nawm.sum() < 100:
            nawm = inner
        self.lesion0, self.normal0 = (float(v) for v in np.percentile(self.g0[nawm], [o.lesion_percentile,
                                                                                      o.normal_percentile]))
        self.lesion1, self.normal1 = (float(v) for v in np.percentile(self.g1[nawm], [o.lesion_percentile,
                                                                                      o.normal_percentile]))
        self.brain = inner

    def levels(self) -> dict[str, float]:
        """The NAWM levels used (reported with the settings)."""
        return {"lesion_level_baseline": round(self.lesion0, 3), "normal_level_baseline": round(self.normal0, 3),
                "lesion_level_followup": round(self.lesion1, 3), "normal_level_followup": round(self.normal1, 3)}

    def assess(self, sl: tuple[slice, ...], changed: np.ndarray, increase: bool,
               extent: np.ndarray | None = None) -> Evidence:
        """Evidence for the change ``changed`` (a mask on the box ``sl``).

        ``increase``: follow-up brighter (new/enlarging) or baseline brighter (shrinking/
        disappearing).  ``extent``: for a disappearing lesion, the baseline lesion's whole
        extent on ``sl``, of which ``min_resolved_fraction`` must be normal at follow-up.
        """
        o = self.options
        if increase:
            bright, other, pb, po = self.g1[sl], self.g0[sl], self.p1[sl], self.p0[sl]
            d = self.diff[sl]
            lesion_level, normal_level = self.lesion1, self.normal0
        else:
            bright, other, pb, po = self.g0[sl], self.g1[sl], self.p0[sl], self.p1[sl]
            d = -self.diff[sl]
            lesion_level, normal_level = self.lesion0, self.normal1
        lesion_like = (bright >= lesion_level) | (pb >= self.threshold)
        normal = (other <= normal_level) & (po < self.threshold)
        support = changed & lesion_like & normal & (d >= o.min_difference)
        n_support = int(support.sum())
        core = support if n_support else changed
        difference = float(np.median(d[core])) if core.any() else 0.0
        significance = self._significance(sl, changed, d, difference)
        resolved = None
        failed = []
        if extent is not None:
            base = extent & lesion_like
            resolved = float((base & normal).sum() / base.sum()) if base.any() else 0.0
            if resolved < o.min_resolved_fraction:
                failed.append("not returned to normal-appearing tissue")
        if n_support * self.vox_mm3 < o.min_support_mm3:
            failed.append("too few voxels lesion-like at one scan and normal at the other")
        if difference < o.min_difference:
            failed.append("faint FLAIR difference")
        if significance < o.min_significance:
            failed.append("difference within the local noise")
        return Evidence(not failed, failed, difference, significance, float(bright[core].mean()) if core.any() else 0.0,
                        float(other[core].mean()) if core.any() else 0.0, lesion_level, normal_level,
                        round(n_support * self.vox_mm3, 2), resolved,
                        float(pb[changed].max()) if changed.any() else 0.0,
                        float(po[changed].max()) if changed.any() else 0.0)

    def _significance(self, sl: tuple[slice, ...], changed: np.ndarray, d: np.ndarray, difference: float) -> float:
        """(difference - median of the difference in a shell around the change) / the shell's robust spread."""
        inner_mm, outer_mm = self.options.shell_mm
        step = min(self.spacing)
        near = ndimage.binary_dilation(changed, iterations=max(1, int(round(inner_mm / step))))
        far = ndimage.binary_dilation(changed, iterations=max(1, int(round(outer_mm / step))))
        lesion = (self.p0[sl] >= self.threshold) | (self.p1[sl] >= self.threshold)
        shell = far & ~near & self.brain[sl] & ~lesion
        if shell.sum() < 20:
            shell = far & ~near & self.brain[sl]
        if shell.sum() < 20:
            return 0.0
        vals = d[shell]
        med = float(np.median(vals))
        mad = float(np.median(np.abs(vals - med))) * 1.4826
        return (difference - med) / max(mad, 1e-3)


def box_around(mask_slice: tuple[slice, ...], shape: tuple[int, ...], spacing: tuple[float, float, float],
               margin_mm: float) -> tuple[slice, ...]:
    """``mask_slice`` widened by ``margin_mm`` (for the shell) and clipped to ``shape``."""
    pads = [int(np.ceil(margin_mm / s)) + 1 for s in spacing]
    return tuple(slice(max(0, s.start - p), min(n, s.stop + p)) for s, n, p in zip(mask_slice, shape, pads))
