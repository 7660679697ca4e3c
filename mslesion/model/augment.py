"""Batch augmentation on the training device (GPU or CPU), pure torch.

Spatial: random rotation, scaling, flips, translation and a smooth elastic
field, applied by one ``grid_sample`` from the whole case volume, so patches
have no border artefacts.  Intensity: per-channel contrast/brightness, gamma,
smooth multiplicative bias field, Gaussian noise, blur, simulated thick
slices / low resolution (average along one axis, then upsample), and a tissue-contrast
bump (:func:`tissue_contrast_bump`: brightens or darkens one band of normal-tissue
intensities, so grey matter may come close to lesions, as on low grey/white-contrast FLAIR).  Optional
synthetic lesions (:func:`paste_lesions`): soft-edged, textured ellipsoids added
to normal-appearing tissue of the patch (brighter on FLAIR/T2, darker on T1) and
to its label, before the intensity augmentation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.85, 1.2)
    flip: bool = True
    elastic_mm: float = 3.0
    p_elastic: float = 0.3
    p_gamma: float = 0.5
    p_bias: float = 0.5
    bias_strength: float = 0.35
    p_noise: float = 0.3
    noise_std: float = 0.1
    p_blur: float = 0.15
    p_lowres: float = 0.35
    lowres_factor: tuple[float, float] = (2.0, 6.0)
    p_drop_channel: float = 0.2
    #: tissue-contrast bump on the FLAIR channel: probability, band centre and width (robust-z units of the
    #: model input, where white matter sits near -0.3..0 and grey matter near 0.2..0.7), largest shift
    p_tissue_bump: float = 0.0
    tissue_bump_centre: tuple[float, float] = (0.0, 0.6)
    tissue_bump_width: tuple[float, float] = (0.15, 0.35)
    tissue_bump_max: float = 0.35
    #: synthetic lesions: probability per patch, count, radius (voxels), FLAIR amplitude (robust-z units;
    #: real lesions sit about 0.5-1.5 above the brain median of the model input)
    p_synthetic: float = 0.0
    synthetic_max: int = 3
    synthetic_radius: tuple[float, float] = (1.5, 6.0)
    synthetic_amplitude: tuple[float, float] = (0.4, 1.4)


def random_rotation(n: int, max_deg: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` rotation matrices (on the CPU) from three random Euler angles (uniform in +-max_deg)."""
    ang = (torch.rand(n, 3, generator=gen) * 2 - 1) * math.radians(max_deg)
    c, s = torch.cos(ang), torch.sin(ang)
    one, zero = torch.ones(n), torch.zeros(n)
    rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], 1).view(n, 3, 3)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], 1).view(n, 3, 3)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], 1).view(n, 3, 3)
    return rz @ ry @ rx


def sample_patch(volume: torch.Tensor, centre: torch.Tensor, patch: tuple[int, int, int], cfg: AugmentConfig | None,
                 gen: torch.Generator) -> torch.Tensor:
    """Resample one patch (C, *patch) around ``centre`` (voxel index, float) from ``volume`` (C, D, H, W).

    ``gen`` is a CPU generator (random parameters are drawn on the CPU, so the GPU never
    waits on a host sync).  With ``cfg`` None the patch is a plain crop (zero padding outside).
    """
    dev = volume.device
    shape = torch.tensor(volume.shape[1:], dtype=torch.float32, device=dev)
    axes = [torch.arange(p, dtype=torch.float32, device=dev) - (p - 1) / 2 for p in patch]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)  # (*patch, 3) offsets in voxels
    if cfg is not None:
        rot = random_rotation(1, cfg.rotate_deg, gen)[0]
        lo, hi = cfg.scale
        iso = lo + (hi - lo) * torch.rand(1, generator=gen)
        scale = iso * (0.92 + 0.16 * torch.rand(3, generator=gen))  # mostly isotropic
        if cfg.flip:
            scale = scale * torch.where(torch.rand(3, generator=gen) < 0.5, -1.0, 1.0)
        grid = grid @ (rot * scale[None, :]).T.to(dev)
        if _rand(gen) < cfg.p_elastic:
            coarse = (torch.randn(1, 3, 5, 5, 5, generator=gen) * cfg.elastic_mm).to(dev)
            field = F.interpolate(coarse, size=patch, mode="trilinear", align_corners=True)[0]
            grid = grid + field.permute(1, 2, 3, 0)
    pos = grid + centre.to(dev).float()
    norm = pos / (shape - 1) * 2 - 1  # voxel index -> [-1, 1]
    norm = norm.flip(-1)  # grid_sample wants (x=W, y=H, z=D)
    out = F.grid_sample(volume[None], norm[None], mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0]


def _smooth_field(size: tuple[int, int, int], points: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    coarse = torch.randn(1, 1, points, points, points, generator=gen).to(device)
    return F.interpolate(coarse, size=size, mode="trilinear", align_corners=True)


def _rand(gen: torch.Generator) -> float:
    return float(torch.rand(1, generator=gen).item())


def tissue_contrast_bump(x: torch.Tensor, centre: float, width: float, amplitude: float) -> torch.Tensor:
    """Add ``amplitude`` times a Gaussian bump of intensity (centred on ``centre``, sd ``width``) to ``x``.

    The amplitude is clipped so the mapping stays monotonic (intensity order, hence lesion
    conspicuity ranking, is kept): the bump's steepest slope is ``|a| / (width * sqrt(e))`` < 1.
    """
    limit = 0.9 * width * math.sqrt(math.e)
    a = max(-limit, min(limit, amplitude))
    return x + a * torch.exp(-0.5 * ((x - centre) / width) ** 2)


def intensity_augment(img: torch.Tensor, present: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator,
                      noise_gen: torch.Generator | None = None) -> torch.Tensor:
    """Augment a batch (N, C, D, H, W); ``present`` (N, C) marks real channels (absent ones stay 0).

    ``gen`` is a CPU generator for the random parameters, ``noise_gen`` one on ``img``'s device for noise.
    """
    n, c = img.shape[:2]
    size = (int(img.shape[2]), int(img.shape[3]), int(img.shape[4]))
    dev = img.device
    out = img.clone()
    for b in range(n):
        x = out[b]
        if _rand(gen) < cfg.p_tissue_bump:
            lo_c, hi_c = cfg.tissue_bump_centre
            lo_w, hi_w = cfg.tissue_bump_width
            centre = lo_c + (hi_c - lo_c) * _rand(gen)
            width = lo_w + (hi_w - lo_w) * _rand(gen)
            x[0] = tissue_contrast_bump(x[0], centre, width, (_rand(gen) * 2 - 1) * cfg.tissue_bump_max)
        if _rand(gen) < cfg.p_bias:
            field = torch.exp(_smooth_field(size, 4, gen, dev)[0] * cfg.bias_strength * _rand(gen))
            x = (x - x.amin()) * field + x.amin()
        if _rand(gen) < cfg.p_gamma:
            for ch in range(c):
                lo, hi = x[ch].amin(), x[ch].amax()
                span = (hi - lo).clamp_min(1e-3)
                gamma = math.exp((_rand(gen) * 2 - 1) * 0.4)
                x[ch] = ((x[ch] - lo) / span).clamp(0, 1) ** gamma * span + lo
        if _rand(gen) < cfg.p_lowres:
            axis = int(_rand(gen) * 3) % 3
            f = cfg.lowres_factor[0] + (cfg.lowres_factor[1] - cfg.lowres_factor[0]) * _rand(gen)
            low = list(size)
            low[axis] = max(4, int(round(size[axis] / f)))
            x = F.interpolate(F.adaptive_avg_pool3d(x[None], (low[0], low[1], low[2])), size=size, mode="trilinear",
                              align_corners=False)[0]
        if _rand(gen) < cfg.p_blur:
            k = torch.tensor([0.25, 0.5, 0.25], device=dev)
            for axis in range(3):
                shape = [1, 1, 1, 1, 1]
                shape[2 + axis] = 3
                pad = [0, 0, 0, 0, 0, 0]
                pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = 1
                xp = F.pad(x[:, None], pad, mode="replicate")
                x = F.conv3d(xp, k.view(shape))[:, 0]
        # contrast / brightness per channel
        scale = torch.exp((torch.rand(c, 1, 1, 1, generator=gen) * 2 - 1) * 0.25).to(dev)
        shift = ((torch.rand(c, 1, 1, 1, generator=gen) * 2 - 1) * 0.2).to(dev)
        x = x * scale + shift
        if _rand(gen) < cfg.p_noise:
            x = x + torch.randn(x.shape, generator=noise_gen, device=dev) * (cfg.noise_std * _rand(gen))
        # optional channels (t1/t2) are sometimes dropped so the model copes without them
        for ch in range(1, c):
            if _rand(gen) < cfg.p_drop_channel:
                x[ch] = 0
        x = x * present[b].view(c, 1, 1, 1)
        out[b] = x
    return out


#: per-channel sign and scale of a synthetic lesion (FLAIR, T1, T2 order of the training channels)
_LESION_SIGN = {"flair": 1.0, "t1": -0.45, "t2": 0.9}


def paste_lesions(patch: torch.Tensor, channels: tuple[str, ...], cfg: AugmentConfig,
                  gen: torch.Generator) -> torch.Tensor:
    """Add up to ``cfg.synthetic_max`` synthetic lesions to one patch (C + 1, D, H, W; last = label).

    Each lesion is a randomly oriented ellipsoid with a soft edge and a smooth texture, centred
    on a voxel of normal-appearing tissue (FLAIR between -0.5 and 0.6 robust-z, i.e. not CSF,
    background or an existing lesion).  The label becomes 1 where the lesion profile exceeds 0.5.
    """
    if _rand(gen) >= cfg.p_synthetic:
        return patch
    out = patch.clone()
    size = torch.tensor(patch.shape[1:])
    dev = patch.device
    for _ in range(1 + int(_rand(gen) * cfg.synthetic_max) % cfg.synthetic_max):
        lo, hi = cfg.synthetic_radius
        radii = lo + (hi - lo) * torch.rand(3, generator=gen)
        margin = int(math.ceil(float(radii.max()) * 1.5)) + 2
        if bool((size <= 2 * margin + 1).any()):
            continue
        cands = (margin + torch.rand(32, 3, generator=gen) * (size - 2 * margin - 1).float()).long()
        values = out[0][cands[:, 0], cands[:, 1], cands[:, 2]].cpu()
        ok = torch.nonzero((values > -0.5) & (values < 0.6))
        if len(ok) == 0:
            continue
        centre = cands[int(ok[0, 0])]
        box = tuple(slice(int(c) - margin, int(c) + margin + 1) for c in centre)
        axes = [torch.arange(-margin, margin + 1, dtype=torch.float32) for _ in range(3)]
        offs = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1) @ random_rotation(1, 180.0, gen)[0]
        dist = ((offs / radii) ** 2).sum(-1).sqrt()
        sharp = 3.0 + 5.0 * _rand(gen)
        texture = 1.0 + 0.25 * F.interpolate(torch.randn(1, 1, 4, 4, 4, generator=gen), size=dist.shape,
                                             mode="trilinear", align_corners=True)[0, 0]
        profile = (torch.sigmoid((1.0 - dist) * sharp * 2.0) * texture).clamp(0, 1.5).to(dev)
        lo, hi = cfg.synthetic_amplitude
        amp = lo + (hi - lo) * _rand(gen)
        for ch, name in enumerate(channels):
            out[ch][box] = out[ch][box] + amp * _LESION_SIGN.get(name, 0.0) * profile
        out[-1][box] = torch.maximum(out[-1][box], (profile > 0.5).float())
    return out
