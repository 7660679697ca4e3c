"""Sliding-window inference with Gaussian blending and optional flip TTA (pure torch/numpy).

One code path for every device: windows are batched, run under autocast (CUDA:
bf16 where supported, else fp16; CPU: bf16 only where the CPU has native bf16
instructions, AVX512-BF16 or AMX, else fp32), blended with a Gaussian importance
map, and averaged over mirrored copies when ``tta`` is on.
"""
from __future__ import annotations

import functools
import itertools
import logging
import math

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda, then mps, then cpu; anything else is passed to torch.device."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def gaussian_weight(window: tuple[int, ...], sigma_scale: float = 0.125) -> np.ndarray:
    """Separable Gaussian importance map (peak 1) used to blend overlapping windows."""
    w = np.ones(window, np.float32)
    for axis, n in enumerate(window):
        x = np.arange(n, dtype=np.float32) - (n - 1) / 2
        g = np.exp(-0.5 * (x / max(n * sigma_scale, 1e-3)) ** 2)
        shape = [1] * len(window)
        shape[axis] = n
        w = w * g.reshape(shape)
    w = w / w.max()
    return np.maximum(w, 1e-3).astype(np.float32)


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Window origins along one axis: fewest windows with at least ``overlap`` overlap, spread evenly."""
    if size <= window:
        return [0]
    step = max(1, int(window * (1 - overlap)))
    n = math.ceil((size - window) / step) + 1
    return sorted({int(round(i * (size - window) / (n - 1))) for i in range(n)})


def fit_window(shape: tuple[int, ...], window: tuple[int, ...], divisor: int) -> tuple[int, ...]:
    """Shrink the window to the (divisor-rounded-up) image where the image is smaller."""
    return tuple(min(w, int(math.ceil(s / divisor) * divisor)) for s, w in zip(shape, window))


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 convolutions natively on this CPU (AVX512-BF16 or AMX).

    Without those instructions bf16 is emulated and slower than fp32.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_dtype(device: torch.device, amp: bool = True) -> torch.dtype | None:
    """Autocast dtype for inference on ``device`` (None: full fp32)."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def _autocast(device: torch.device, amp: bool):
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def _mirrored_pass(net: nn.Module, batch: torch.Tensor, flips: list[tuple[int, ...]], device: torch.device,
                   amp: bool) -> torch.Tensor:
    """Sum over ``flips`` of the un-mirrored probabilities (N, *window), in one forward pass."""
    inp = torch.cat([batch.flip(f) if f else batch for f in flips])
    with _autocast(device, amp):
        logits = net(inp)
    probs = torch.sigmoid(logits.float())[:, 0].split(len(batch))
    return sum((p.flip([a - 1 for a in f]) if f else p) for p, f in zip(probs, flips))


@torch.inference_mode()
def sliding_window_predict(net: nn.Module, image: np.ndarray, window: tuple[int, int, int], overlap: float = 0.5,
                           device: torch.device | str = "cpu", tta: bool = False, amp: bool = True,
                           batch_size: int = 2, divisor: int = 8, flips_per_pass: int = 1,
                           tta_axes: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    """Lesion probability (D, H, W) float32 for ``image`` (C, D, H, W), any spatial shape.

    With ``tta``, the prediction is averaged over every mirror along a subset of the spatial
    ``tta_axes`` (all three: 8 copies; ``(0,)``, left-right on the RAS working grid: 2 copies);
    ``flips_per_pass`` mirrored copies go through the network in one forward pass
    (a larger batch keeps a GPU busy; on a CUDA out-of-memory error it falls back to one at a time).
    """
    device = torch.device(device) if isinstance(device, str) else device
    if image.ndim != 4:
        raise ValueError(f"image must be (C, D, H, W), got shape {image.shape}")
    spatial = tuple(int(s) for s in image.shape[1:])
    win = fit_window(spatial, tuple(int(w) for w in window), divisor)
    padded = tuple(max(s, w) for s, w in zip(spatial, win))
    x = np.zeros((image.shape[0], *padded), np.float32)
    x[(slice(None), *(slice(0, s) for s in spatial))] = image
    xt = torch.from_numpy(x).to(device)
    weight = torch.from_numpy(gaussian_weight(win)).to(device)
    acc = torch.zeros(padded, dtype=torch.float32, device=device)
    norm = torch.zeros(padded, dtype=torch.float32, device=device)
    starts = list(itertools.product(*(window_starts(p, w, overlap) for p, w in zip(padded, win))))
    flips = [()]
    if tta:
        dims = tuple(sorted(int(a) + 2 for a in tta_axes))
        flips = [f for r in range(len(dims) + 1) for f in itertools.combinations(dims, r)]
    for i in range(0, len(starts), batch_size):
        chunk = starts[i:i + batch_size]
        sl = [tuple(slice(o, o + w) for o, w in zip(st, win)) for st in chunk]
        batch = torch.stack([xt[(slice(None), *s)] for s in sl])
        prob = torch.zeros((len(chunk), *win), dtype=torch.float32, device=device)
        done = 0
        while done < len(flips):
            group = flips[done:done + max(1, flips_per_pass)]
            try:
                prob += _mirrored_pass(net, batch, group, device, amp)
            except torch.cuda.OutOfMemoryError:
                if len(group) == 1:
                    raise
                log.warning("GPU out of memory with %d flips per pass; continuing with 1", len(group))
                flips_per_pass = 1
                torch.cuda.empty_cache()
                continue
            done += len(group)
        prob /= len(flips)
        for s, p in zip(sl, prob):
            acc[s] += p * weight
            norm[s] += weight
    out = (acc / norm.clamp_min(1e-6))[tuple(slice(0, s) for s in spatial)]
    return out.cpu().numpy().astype(np.float32)
