"""Is a post-contrast T1 usable? Checks run before any enhancement is called.

A post-contrast T1 from another subject, one that the registration could not align, or a pre-contrast
T1 given as post-contrast by mistake would otherwise yield a confident but meaningless "no enhancing
lesions" (or false ones). Two measures, on the working grid, against a-priori levels in
:class:`~mslesion.enhancement.EnhancementRules`:

- **anatomy**: the rank correlation of the pre- and post-contrast T1 over the brain without lesions.
  The same head gives a high value even across sequences (Ljubljana, another post sequence: 0.81 / 0.84);
  another subject's scan rigidly registered gives 0.43 / 0.48 (``scripts/bench_post_contrast_checks.py``).
- **normal enhancement**: gadolinium always brightens the dural sinuses, cortical veins and choroid
  plexus. The fraction of the normal-enhancement zone (brain surface, next to CSF) at ``z_voxel`` is
  0.023 on both real post-contrast scans and 0.0000-0.0001 with the pre-contrast T1 given as post.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .enhancement import EnhancementRules

log = logging.getLogger(__name__)

#: voxels sampled for the rank correlation (a regular subsample of the reference voxels)
_SAMPLE = 200_000


@dataclass
class PostContrastCheck:
    """The measures and, where a level is missed, what is wrong (``problems``; empty: usable)."""

    rank_correlation: float
    normal_enhancement_fraction: float
    problems: list[str] = field(default_factory=list)
    #: facts worth stating that do not stop the assessment (e.g. a large world-space offset registered away)
    notes: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"usable": self.usable, "rank_correlation": round(self.rank_correlation, 3),
                "normal_enhancement_fraction": round(self.normal_enhancement_fraction, 5),
                "problems": list(self.problems), "notes": list(self.notes)}


def rank_correlation(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """Spearman's rank correlation of ``a`` and ``b`` over the voxels of ``where`` (subsampled)."""
    idx = np.flatnonzero(where)
    if idx.size < 100:
        return float("nan")
    idx = idx[:: max(1, idx.size // _SAMPLE)]
    ra = np.argsort(np.argsort(a.ravel()[idx], kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b.ravel()[idx], kind="stable"), kind="stable").astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def check_post_contrast(pre: np.ndarray, post: np.ndarray, sub_z: np.ndarray, reference: np.ndarray,
                        normal: np.ndarray, brain: np.ndarray, rules: EnhancementRules) -> PostContrastCheck:
    """Measure and judge a post-contrast T1 (``post``) against the pre-contrast one (``pre``).

    ``sub_z``: :func:`~mslesion.enhancement.subtraction_z`; ``reference``: the brain without lesions;
    ``normal``: :func:`~mslesion.enhancement.normal_enhancement`.
    """
    rho = rank_correlation(pre, post, reference)
    zone = normal & brain
    frac = float(np.count_nonzero(sub_z[zone] >= rules.z_voxel)) / max(1, int(np.count_nonzero(zone)))
    problems = []
    if not rho >= rules.post_min_rank_correlation:  # also NaN
        problems.append(
            f"the post-contrast T1 does not match the pre-contrast T1's anatomy (rank correlation {rho:.2f} < "
            f"{rules.post_min_rank_correlation}): another subject's scan, or a registration that failed")
    if frac < rules.post_min_normal_enhancement:
        problems.append(
            f"no normal enhancement (vessels, sinuses, choroid plexus) on the post-contrast T1: {100 * frac:.2f} % of "
            f"the brain surface and CSF border at z >= {rules.z_voxel} (< {100 * rules.post_min_normal_enhancement:g} "
            "%): is it a pre-contrast scan?")
    check = PostContrastCheck(rho, frac, problems)
    for p in problems:
        log.warning("post-contrast T1 not used: %s", p)
    return check
