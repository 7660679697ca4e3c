"""Training losses: voxel-wise BCE + soft Dice, and a lesion-wise ("blob") Dice that counts every lesion alike.

Axis order as everywhere in mslesion: tensors are (N, 1, i, j, k) in nibabel's voxel order.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

_CONNECTIVITY = np.ones((3, 3, 3), bool)


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """BCE (voxel-weighted where ``weight`` is given) + soft Dice over the whole batch.

    Stable with soft targets and empty patches.
    """
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight)
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    dice = (2 * inter + 1.0) / (p.sum() + target.sum() + 1.0)
    return bce + (1 - dice)


def lesion_regions(mask: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Connected lesions of ``mask`` and, for each, its own neighbourhood.

    Returns ``(lesions, regions, n)``: ``lesions`` labels each lesion 1..n; ``regions`` gives every voxel within
    ``margin`` voxels of a lesion the label of the nearest lesion (so neighbourhoods never overlap), 0 elsewhere.
    ``margin`` 0 gives no neighbourhoods (``regions`` is all 0): see :func:`blob_dice_loss`.
    """
    lesions, n = ndimage.label(mask, structure=_CONNECTIVITY)
    if n == 0 or margin <= 0:
        return lesions, np.zeros_like(lesions), n
    dist, nearest = ndimage.distance_transform_edt(lesions == 0, return_indices=True)
    regions = lesions[tuple(nearest)]
    regions[dist > margin] = 0
    return lesions, regions, n


def blob_dice_loss(logits: torch.Tensor, target: torch.Tensor, margin: int = 6) -> torch.Tensor:
    """Mean over the lesions in the batch of 1 - soft Dice in each lesion's own neighbourhood.

    A 10-voxel lesion weighs as much as a 10,000-voxel one, which a batch-wide Dice does not do (the idea of
    Kofler et al. 2023, "blob loss"). The neighbourhood (``margin`` voxels around the lesion, split between
    neighbouring lesions) charges the predicted probability spilled around the lesion, not far-away false
    positives, which the batch-wide terms already charge. ``margin`` 0 charges every voxel outside the lesions
    to every lesion, as the original blob loss does (false positives anywhere in the patch lower each lesion's
    Dice). 0 when the batch holds no lesion.
    """
    p = torch.sigmoid(logits.float())
    hard = (target.detach() > 0.5).cpu().numpy()
    terms = []
    for i in range(p.shape[0]):
        lesions, regions, n = lesion_regions(hard[i, 0], margin)
        if n == 0:
            continue
        flat_p = p[i, 0].reshape(-1)
        les = torch.from_numpy(lesions.reshape(-1)).to(p.device, torch.long)
        reg = torch.from_numpy(regions.reshape(-1)).to(p.device, torch.long)
        inter = torch.zeros(n + 1, device=p.device).scatter_add_(0, les, flat_p)[1:]
        if margin > 0:
            spread = torch.zeros(n + 1, device=p.device).scatter_add_(0, reg, flat_p)[1:]
        else:  # the whole patch: the lesion itself plus everything that is no lesion
            spread = inter + flat_p[les == 0].sum()
        size = torch.bincount(les, minlength=n + 1)[1:].float()
        terms.append(1 - 2 * inter / (spread + size + 1e-6))
    if not terms:
        return logits.sum() * 0.0
    return torch.cat(terms).mean()


def false_blob_loss(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5,
                    margin: int = 2) -> torch.Tensor:
    """Mean over the false lesions in the batch of each one's BCE towards 0.

    A false lesion is a connected component of ``sigmoid(logits) >= threshold`` (the inference threshold)
    that comes no closer than ``margin`` voxels to a labelled lesion. Each weighs alike, however small: the
    counterpart of :func:`blob_dice_loss`, whose lesion-wise weighting makes the network propose small
    lesions that the batch-wide BCE, dominated by millions of background voxels, hardly charges. 0 when the
    batch has no false lesion.
    """
    logits = logits.float()
    p = torch.sigmoid(logits).detach().cpu().numpy()
    hard = (target.detach() > 0.5).cpu().numpy()
    terms = []
    for i in range(p.shape[0]):
        near = hard[i, 0]
        if margin > 0 and near.any():
            near = ndimage.binary_dilation(near, structure=_CONNECTIVITY, iterations=margin)
        found, n = ndimage.label(p[i, 0] >= threshold, structure=_CONNECTIVITY)
        if n == 0:
            continue
        touching = np.unique(found[near & (found > 0)])
        false = np.setdiff1d(np.arange(1, n + 1), touching)
        if false.size == 0:
            continue
        relabel = np.zeros(n + 1, np.int64)
        relabel[false] = np.arange(1, false.size + 1)
        comp = torch.from_numpy(relabel[found].reshape(-1)).to(logits.device)
        bce = F.softplus(logits[i, 0].reshape(-1))  # -log(1 - sigmoid(x))
        total = torch.zeros(false.size + 1, device=logits.device).scatter_add_(0, comp, bce)[1:]
        size = torch.bincount(comp, minlength=false.size + 1)[1:].float()
        terms.append(total / size)
    if not terms:
        return logits.sum() * 0.0
    return torch.cat(terms).mean()
