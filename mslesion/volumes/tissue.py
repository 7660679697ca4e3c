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


@dataclass(frozen=True)
class Mixture:
    """Fitted class means (K x d), covariances (K x d x d) and, without spatial priors, weights (K)."""

    means: np.ndarray
    covs: np.ndarray
    weights: np.ndarray


def _log_gauss(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    d = x.shape[1]
    chol = np.linalg.cholesky(cov + 1e-6 * np.eye(d))
    z = np.linalg.solve(chol, (x - mean).T)
    return -0.5 * np.sum(z * z, axis=0) - np.log(np.diag(chol)).sum() - 0.5 * d * np.log(2 * np.pi)


def posteriors(x: np.ndarray, mix: Mixture, prior: np.ndarray | None = None) -> np.ndarray:
    """Class posteriors (n x K) of samples ``x`` (n x d) under ``mix`` and optional per-sample priors (n x K)."""
    logp = np.stack([_log_gauss(x, m, c) for m, c in zip(mix.means, mix.covs)], axis=1)
    logp += np.log(np.maximum(prior, 1e-6)) if prior is not None else np.log(np.maximum(mix.weights, 1e-6))
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)


def initial_mixture(x: np.ndarray, order: np.ndarray, prior: np.ndarray | None = None) -> Mixture:
    """Start values: prior-weighted moments, else intensity terciles of the first feature in ``order``.

    ``order[k]`` is the intensity rank (0 darkest) of class k in the first feature.
    """
    k = len(order)
    if prior is None:
        edges = np.quantile(x[:, 0], np.linspace(0, 1, k + 1))
        ranks = np.clip(np.searchsorted(edges[1:-1], x[:, 0]), 0, k - 1)
        resp = np.stack([(ranks == order[c]).astype(np.float64) for c in range(k)], axis=1)
    else:
        resp = prior ** 4  # the prior's confident cores
    return _m_step(x, resp, np.full(k, 1.0 / k))


def _m_step(x: np.ndarray, resp: np.ndarray, old_w: np.ndarray) -> Mixture:
    d = x.shape[1]
    nk = resp.sum(axis=0) + 1e-9
    means = (resp.T @ x) / nk[:, None]
    covs = np.empty((len(nk), d, d))
    floor = 1e-4 * np.var(x, axis=0).mean() + 1e-6
    for k in range(len(nk)):
        diff = x - means[k]
        covs[k] = (resp[:, k, None] * diff).T @ diff / nk[k] + floor * np.eye(d)
    w = nk / nk.sum() if nk.sum() > 0 else old_w
    return Mixture(means, covs, w)


def fit_mixture(x: np.ndarray, order: np.ndarray, prior: np.ndarray | None = None,
                iterations: int = 25, tol: float = 1e-4) -> Mixture:
    """EM fit of a K-class Gaussian mixture to ``x`` (n x d), with optional per-sample priors (n x K)."""
    mix = initial_mixture(x, order, prior)
    for _ in range(iterations):
        prev = mix.means
        mix = _m_step(x, posteriors(x, mix, prior), mix.weights)
        if np.abs(mix.means - prev).max() < tol:
            break
    return mix


def classify(images: list[np.ndarray], icv: np.ndarray, lesions: np.ndarray, orders: list[tuple[int, ...]],
             prior: np.ndarray | None = None, max_fit_samples: int = 60_000, smooth_vox: float = 0.0,
             seed: int = 0) -> np.ndarray:
    """Soft tissue posteriors (X x Y x Z x 3: csf, gm, wm) inside ``icv`` and outside ``lesions``.

    ``images`` are co-registered intensity arrays (one per contrast) and ``orders`` their
    expected (csf, gm, wm) intensity ranks; ``prior`` (X x Y x Z x 3) spatial class priors.
    The mixture is fitted on at most ``max_fit_samples`` voxels (deterministic) and evaluated
    on all. ``smooth_vox`` > 0 adds one mean-field step: each voxel's posterior is re-weighted
    by its neighbourhood's (a cheap Markov-random-field stand-in against noise).
    """
    out = np.zeros(icv.shape + (len(CLASSES),), np.float32)
    if np.count_nonzero(icv & ~lesions) < 100:
        return out
    idx = np.array(np.nonzero(icv))
    box = tuple(slice(max(a - 2, 0), b + 3) for a, b in zip(idx.min(1), idx.max(1)))
    inside = icv[box] & ~lesions[box]
    n = int(inside.sum())
    x = np.stack([np.asarray(im[box], np.float32)[inside] for im in images], axis=1).astype(np.float64)
    pr = None if prior is None else np.asarray(prior[box], np.float64)[inside]
    if pr is not None:
        pr = pr / np.maximum(pr.sum(axis=1, keepdims=True), 1e-9)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n, size=min(n, max_fit_samples), replace=False))
    mix = fit_mixture(x[pick], np.asarray(orders[0]), None if pr is None else pr[pick])
    post = posteriors(x, mix, pr).astype(np.float32)
    if smooth_vox > 0:
        full = np.zeros(inside.shape + (len(CLASSES),), np.float32)
        full[inside] = post
        neigh = np.stack([ndimage.gaussian_filter(full[..., k], smooth_vox) for k in range(len(CLASSES))], axis=-1)
        post = post * (neigh[inside] + 0.05)
        post /= post.sum(axis=1, keepdims=True)
    sub = out[box]
    sub[inside] = post
    return out


def label_map(post: np.ndarray, icv: np.ndarray, lesions: np.ndarray) -> np.ndarray:
    """Hard labels: 0 outside the ICV, 1 CSF, 2 GM, 3 WM (argmax of ``post``), 4 lesion."""
    labels = (np.argmax(post, axis=-1) + 1).astype(np.uint8)
    labels[~icv] = 0
    labels[lesions & icv] = LESION_LABEL
    return labels


def soft_volumes_ml(post: np.ndarray, voxel_ml: float) -> dict[str, float]:
    """Partial-volume-aware class volumes (sum of posteriors) in ml."""
    return {name: float(post[..., k].sum(dtype=np.float64)) * voxel_ml for k, name in enumerate(CLASSES)}
