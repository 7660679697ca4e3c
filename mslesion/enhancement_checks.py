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

import numpy as np

from .enhancement import EnhancementRules
from .report import PostContrastCheckInfo

log = logging.getLogger(__name__)

#: voxels sampled for the rank correlation (a regular subsample of the reference voxels)
_SAMPLE = 200_000


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
                        normal: np.ndarray, brain: np.ndarray, rules: EnhancementRules) -> PostContrastCheckInfo:
    """Measure and judge a post-contrast T1 (``post``) against the pre-contrast one (``pre``): the report's
    ``enhancement.post_contrast_check`` (``usable`` false where a level is missed, ``problems`` saying which).

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
    for p in problems:
        log.warning("post-contrast T1 not used: %s", p)
    return PostContrastCheckInfo(usable=not problems, rank_correlation=round(rho, 3),
                                 normal_enhancement_fraction=round(frac, 5), problems=problems)
