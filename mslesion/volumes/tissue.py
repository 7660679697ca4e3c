"""Tissue classes (CSF, grey matter, white matter) by an EM-fitted Gaussian mixture.

Pure array functions, no I/O. The mixture runs on the bias-corrected, brain-normalised
intensities of every given contrast (FLAIR, plus T1/T2 where present) inside the
intracranial mask, with the lesions taken out beforehand (they are their own class and
never enter the mixture, so they are never counted as grey matter). Spatial priors
(MNI152 tissue maps warped to the image, :mod:`.priors`) weight each class per voxel,
as in the unified-segmentation family of methods (SPM, FAST with priors, SAMSEG's far
richer atlas); without priors the classes are started from intensity quantiles.
The posteriors are soft: their sums are partial-volume-aware volumes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: class order of every posterior array and of the label map (labels are index + 1; lesions are 4)
CLASSES = ("csf", "gm", "wm")
LESION_LABEL = 4
#: expected intensity order of (csf, gm, wm) per contrast: rank 0 darkest
CONTRAST_ORDER = {"flair": (0, 2, 1), "t1": (0, 1, 2), "t2": (2, 1, 0), "t1post": (0, 1, 2)}


#: partial-volume classes: pairs of pure classes (indices into CLASSES) whose boundary voxels hold both
PV_PAIRS: tuple[tuple[int, int], ...] = ((0, 1),)


@dataclass(frozen=True)
class Mixture:
    """Fitted class means (K x d), covariances (K x d x d) and, without spatial priors, weights (K + P).

    ``pairs`` (P of them): partial-volume classes, each a voxel mixing two pure classes in an unknown
    proportion (uniform over 0..1, as in FAST's partial-volume model); their Gaussians are derived from the
    pure ones (:func:`pv_components`), not fitted freely.
    """

    means: np.ndarray
    covs: np.ndarray
    weights: np.ndarray
    pairs: tuple[tuple[int, int], ...] = ()


def pv_components(mix: Mixture) -> tuple[np.ndarray, np.ndarray]:
    """Means and covariances of all K + P components: the pure classes, then one Gaussian per pair.

    A voxel with fraction a of class j and 1 - a of class i, a uniform on 0..1, has mean
    (m_i + m_j) / 2 and covariance (S_i + S_j) / 2 + (m_j - m_i)(m_j - m_i)^T / 12 (moment-matched).
    """
    means, covs = [*mix.means], [*mix.covs]
    for i, j in mix.pairs:
        d = mix.means[j] - mix.means[i]
        means.append(0.5 * (mix.means[i] + mix.means[j]))
        covs.append(0.5 * (mix.covs[i] + mix.covs[j]) + np.outer(d, d) / 12.0)
    return np.array(means), np.array(covs)


def pv_fraction(x: np.ndarray, mix: Mixture, pair: tuple[int, int]) -> np.ndarray:
    """Per-sample fraction (0..1) of the second class of ``pair``: the projection of ``x`` on the segment
    between the two class means, in the metric of their average covariance."""
    i, j = pair
    d = mix.means[j] - mix.means[i]
    w = np.linalg.solve(0.5 * (mix.covs[i] + mix.covs[j]) + 1e-6 * np.eye(len(d)), d)
    return np.clip(((x - mix.means[i]) @ w) / max(float(d @ w), 1e-9), 0.0, 1.0)


def expand_prior(prior: np.ndarray, pairs: tuple[tuple[int, int], ...], pv_weight: float = 1.0) -> np.ndarray:
    """Per-sample priors (n x K) -> (n x K + P): a pair's prior is the geometric mean of its classes' (times
    ``pv_weight``), so partial volume is expected where both classes are; rows renormalised."""
    if not pairs:
        return prior
    extra = [pv_weight * np.sqrt(prior[:, i] * prior[:, j]) for i, j in pairs]
    out = np.concatenate([prior, np.stack(extra, axis=1)], axis=1)
    return out / np.maximum(out.sum(axis=1, keepdims=True), 1e-12)


def fold_pv(post: np.ndarray, x: np.ndarray, mix: Mixture) -> np.ndarray:
    """Posteriors over K + P components -> K pure-class fractions: a pair's posterior is split between its
    two classes by each voxel's :func:`pv_fraction` (partial-volume-aware volumes)."""
    k = len(mix.means)
    out = post[:, :k].copy()
    for p, pair in enumerate(mix.pairs):
        a = pv_fraction(x, mix, pair)
        out[:, pair[0]] += post[:, k + p] * (1.0 - a)
        out[:, pair[1]] += post[:, k + p] * a
    return out


def _log_gauss(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    d = x.shape[1]
    chol = np.linalg.cholesky(cov + 1e-6 * np.eye(d))
    z = np.linalg.solve(chol, (x - mean).T)
    return -0.5 * np.sum(z * z, axis=0) - np.log(np.diag(chol)).sum() - 0.5 * d * np.log(2 * np.pi)


def posteriors(x: np.ndarray, mix: Mixture, prior: np.ndarray | None = None) -> np.ndarray:
    """Component posteriors (n x K + P) of samples ``x`` (n x d) under ``mix`` and optional per-sample priors
    (n x K + P; see :func:`expand_prior`)."""
    means, covs = pv_components(mix)
    logp = np.stack([_log_gauss(x, m, c) for m, c in zip(means, covs)], axis=1)
    logp += np.log(np.maximum(prior, 1e-6)) if prior is not None else np.log(np.maximum(mix.weights, 1e-6))
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)


def initial_mixture(x: np.ndarray, order: np.ndarray, prior: np.ndarray | None = None,
                    pairs: tuple[tuple[int, int], ...] = ()) -> Mixture:
    """Start values: prior-weighted moments, else intensity terciles of the first feature in ``order``.

    ``order[k]`` is the intensity rank (0 darkest) of class k in the first feature; ``prior`` (n x K,
    pure classes only).
    """
    k = len(order)
    if prior is None:
        edges = np.quantile(x[:, 0], np.linspace(0, 1, k + 1))
        ranks = np.clip(np.searchsorted(edges[1:-1], x[:, 0]), 0, k - 1)
        resp = np.stack([(ranks == order[c]).astype(np.float64) for c in range(k)], axis=1)
    else:
        resp = prior[:, :k] ** 4  # the prior's confident cores
    resp = np.concatenate([resp, np.zeros((len(x), len(pairs)))], axis=1)
    mix = _m_step(x, resp, np.full(k + len(pairs), 1.0 / (k + len(pairs))), pairs)
    return Mixture(mix.means, mix.covs, np.full(k + len(pairs), 1.0 / (k + len(pairs))), pairs)


def _m_step(x: np.ndarray, resp: np.ndarray, old_w: np.ndarray, pairs: tuple[tuple[int, int], ...] = ()) -> Mixture:
    """Pure classes' means and covariances from their own responsibilities (partial-volume voxels, the
    last P columns, do not widen them); weights of all K + P components."""
    d = x.shape[1]
    nall = resp.sum(axis=0) + 1e-9
    k_pure = resp.shape[1] - len(pairs)
    nk = nall[:k_pure]
    means = (resp[:, :k_pure].T @ x) / nk[:, None]
    covs = np.empty((k_pure, d, d))
    floor = 1e-4 * np.var(x, axis=0).mean() + 1e-6
    for k in range(k_pure):
        diff = x - means[k]
        covs[k] = (resp[:, k, None] * diff).T @ diff / nk[k] + floor * np.eye(d)
    w = nall / nall.sum() if nall.sum() > 0 else old_w
    return Mixture(means, covs, w, pairs)


def fit_mixture(x: np.ndarray, order: np.ndarray, prior: np.ndarray | None = None,
                iterations: int = 25, tol: float = 1e-4, pairs: tuple[tuple[int, int], ...] = (),
                pv_weight: float = 1.0) -> Mixture:
    """EM fit of a K-class Gaussian mixture to ``x`` (n x d), with optional per-sample priors (n x K) and
    partial-volume classes ``pairs`` (:class:`Mixture`)."""
    mix = initial_mixture(x, order, prior, pairs)
    full = None if prior is None else expand_prior(prior, pairs, pv_weight)
    for _ in range(iterations):
        prev = mix.means
        mix = _m_step(x, posteriors(x, mix, full), mix.weights, pairs)
        if np.abs(mix.means - prev).max() < tol:
            break
    return mix


@dataclass(frozen=True, eq=False)
class Samples:
    """The voxels of one scan that the mixture sees: features ``x`` (n x d) of the ICV minus the lesions,
    their pure-class priors (n x K, rows summing to 1, or None), and where they sit (``box``, ``inside``)."""

    x: np.ndarray
    prior: np.ndarray | None
    shape: tuple[int, ...]
    box: tuple[slice, ...]
    inside: np.ndarray


def tissue_samples(images: list[np.ndarray], icv: np.ndarray, lesions: np.ndarray,
                   prior: np.ndarray | None = None) -> Samples | None:
    """The :class:`Samples` of a scan, or None where fewer than 100 voxels are left."""
    if np.count_nonzero(icv & ~lesions) < 100:
        return None
    idx = np.array(np.nonzero(icv))
    box = tuple(slice(max(a - 2, 0), b + 3) for a, b in zip(idx.min(1), idx.max(1)))
    inside = icv[box] & ~lesions[box]
    x = np.stack([np.asarray(im[box], np.float32)[inside] for im in images], axis=1).astype(np.float64)
    pr = None if prior is None else np.asarray(prior[box], np.float64)[inside]
    if pr is not None:
        pr = pr / np.maximum(pr.sum(axis=1, keepdims=True), 1e-9)
    return Samples(x, pr, tuple(icv.shape), box, inside)


def fit_samples(scans: list[Samples], order: tuple[int, ...], max_fit_samples: int = 60_000, seed: int = 0,
                pairs: tuple[tuple[int, int], ...] = (), pv_weight: float = 1.0) -> Mixture:
    """One mixture fitted on the pooled voxels of ``scans`` (at most ``max_fit_samples`` in all, an equal
    deterministic share from each): one scan for ``analyze``, both for a longitudinal ``compare``."""
    rng = np.random.default_rng(seed)
    share = max_fit_samples // len(scans)
    xs: list[np.ndarray] = []
    prs: list[np.ndarray] = []
    for sc in scans:
        n = len(sc.x)
        pick = np.sort(rng.choice(n, size=min(n, share), replace=False))
        xs.append(sc.x[pick])
        if sc.prior is not None:
            prs.append(sc.prior[pick])
    prior = np.concatenate(prs) if len(prs) == len(scans) else None
    return fit_mixture(np.concatenate(xs), np.asarray(order), prior, pairs=pairs, pv_weight=pv_weight)


def apply_mixture(sc: Samples, mix: Mixture, smooth_vox: float = 0.0, pv_weight: float = 1.0) -> np.ndarray:
    """Soft pure-class fractions (X x Y x Z x 3) of one scan under ``mix`` (see :func:`classify`)."""
    out = np.zeros(sc.shape + (len(CLASSES),), np.float32)
    full = None if sc.prior is None else expand_prior(sc.prior, mix.pairs, pv_weight)
    post = posteriors(sc.x, mix, full).astype(np.float32)
    if smooth_vox > 0:
        grid = np.zeros(sc.inside.shape + (post.shape[1],), np.float32)
        grid[sc.inside] = post
        neigh = np.stack([ndimage.gaussian_filter(grid[..., k], smooth_vox) for k in range(post.shape[1])], axis=-1)
        post = post * (neigh[sc.inside] + 0.05)
        post /= post.sum(axis=1, keepdims=True)
    sub = out[sc.box]
    sub[sc.inside] = fold_pv(post, sc.x, mix)
    return out


def classify(images: list[np.ndarray], icv: np.ndarray, lesions: np.ndarray, orders: list[tuple[int, ...]],
             prior: np.ndarray | None = None, max_fit_samples: int = 60_000, smooth_vox: float = 0.0,
             seed: int = 0, pairs: tuple[tuple[int, int], ...] = (), pv_weight: float = 1.0) -> np.ndarray:
    """Soft tissue posteriors (X x Y x Z x 3: csf, gm, wm) inside ``icv`` and outside ``lesions``.

    ``images`` are co-registered intensity arrays (one per contrast) and ``orders`` their
    expected (csf, gm, wm) intensity ranks; ``prior`` (X x Y x Z x 3) spatial class priors.
    The mixture is fitted on at most ``max_fit_samples`` voxels (deterministic) and evaluated
    on all. ``smooth_vox`` > 0 adds one mean-field step: each voxel's posterior is re-weighted
    by its neighbourhood's (a cheap Markov-random-field stand-in against noise). ``pairs``: partial-volume
    classes (:class:`Mixture`), folded back into their two classes' fractions (:func:`fold_pv`).
    """
    sc = tissue_samples(images, icv, lesions, prior)
    if sc is None:
        return np.zeros(icv.shape + (len(CLASSES),), np.float32)
    mix = fit_samples([sc], orders[0], max_fit_samples, seed, pairs, pv_weight)
    return apply_mixture(sc, mix, smooth_vox, pv_weight)


def label_map(post: np.ndarray, icv: np.ndarray, lesions: np.ndarray) -> np.ndarray:
    """Hard labels: 0 outside the ICV, 1 CSF, 2 GM, 3 WM (argmax of ``post``), 4 lesion."""
    labels = (np.argmax(post, axis=-1) + 1).astype(np.uint8)
    labels[~icv] = 0
    labels[lesions & icv] = LESION_LABEL
    return labels


def soft_volumes_ml(post: np.ndarray, voxel_ml: float) -> dict[str, float]:
    """Partial-volume-aware class volumes (sum of posteriors) in ml."""
    return {name: float(post[..., k].sum(dtype=np.float64)) * voxel_ml for k, name in enumerate(CLASSES)}
