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
from dataclasses import dataclass

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


@dataclass(frozen=True)
class WindowSettings:
    """How :func:`predict_windows` tiles, mirrors and batches (the model card's inference settings).

    ``tta``: average over every mirror along a subset of the spatial ``tta_axes`` (all three: 8
    copies; ``(0,)``, left-right on the RAS working grid: 2 copies); ``flips_per_pass`` mirrored
    copies go through the network in one forward pass.
    """

    window: tuple[int, int, int]
    overlap: float = 0.5
    device: torch.device | str = "cpu"
    tta: bool = False
    amp: bool = True
    batch_size: int = 2
    #: the network's size divisor (2 ** (levels - 1)): a window shrunk to a small image is a multiple of it
    divisor: int = 8
    flips_per_pass: int = 1
    tta_axes: tuple[int, ...] = (0, 1, 2)

    def mirrors(self) -> list[tuple[int, ...]]:
        """The flipped tensor dims (N, C, D, H, W) of every mirrored copy; ``[()]`` without TTA."""
        if not self.tta:
            return [()]
        dims = tuple(sorted(int(a) + 2 for a in self.tta_axes))
        return [f for r in range(len(dims) + 1) for f in itertools.combinations(dims, r)]


# slicing ----------------------------------------------------------------------------------------------

def padded_input(image: np.ndarray, window: tuple[int, ...]) -> np.ndarray:
    """``image`` (C, D, H, W) zero-padded at the far end to at least ``window`` along each axis."""
    spatial = image.shape[1:]
    padded = tuple(max(s, w) for s, w in zip(spatial, window))
    x = np.zeros((image.shape[0], *padded), np.float32)
    x[(slice(None),) + tuple(slice(0, s) for s in spatial)] = image
    return x


def window_slices(shape: tuple[int, ...], window: tuple[int, ...], overlap: float) -> list[tuple[slice, ...]]:
    """The spatial slices of every window over ``shape``, in raster order."""
    starts = itertools.product(*(window_starts(p, w, overlap) for p, w in zip(shape, window)))
    return [tuple(slice(o, o + w) for o, w in zip(st, window)) for st in starts]


# mirroring --------------------------------------------------------------------------------------------

class _MirroredPredictor:
    """Mean probability over the mirrored copies of a batch; on a CUDA out-of-memory error it falls
    back to one mirror per pass (for the rest of the image)."""

    def __init__(self, net: nn.Module, settings: WindowSettings, device: torch.device) -> None:
        self.net, self.device, self.amp = net, device, settings.amp
        self.flips = settings.mirrors()
        self.flips_per_pass = settings.flips_per_pass

    def __call__(self, batch: torch.Tensor, window: tuple[int, ...]) -> torch.Tensor:
        prob = torch.zeros((len(batch), *window), dtype=torch.float32, device=self.device)
        done = 0
        while done < len(self.flips):
            group = self.flips[done:done + max(1, self.flips_per_pass)]
            try:
                prob += _mirrored_pass(self.net, batch, group, self.device, self.amp)
            except torch.cuda.OutOfMemoryError:
                if len(group) == 1:
                    raise
                log.warning("GPU out of memory with %d flips per pass; continuing with 1", len(group))
                self.flips_per_pass = 1
                torch.cuda.empty_cache()
                continue
            done += len(group)
        prob /= len(self.flips)
        return prob


# aggregation ------------------------------------------------------------------------------------------

class _GaussianBlend:
    """Windows' probabilities blended with a Gaussian importance map."""

    def __init__(self, shape: tuple[int, ...], window: tuple[int, ...], device: torch.device) -> None:
        self.weight = torch.from_numpy(gaussian_weight(window)).to(device)
        self.acc = torch.zeros(shape, dtype=torch.float32, device=device)
        self.norm = torch.zeros(shape, dtype=torch.float32, device=device)

    def add(self, where: tuple[slice, ...], prob: torch.Tensor) -> None:
        self.acc[where] += prob * self.weight
        self.norm[where] += self.weight

    def result(self, spatial: tuple[int, ...]) -> np.ndarray:
        out = (self.acc / self.norm.clamp_min(1e-6))[tuple(slice(0, s) for s in spatial)]
        return out.cpu().numpy().astype(np.float32)


@torch.inference_mode()
def predict_windows(net: nn.Module, image: np.ndarray, settings: WindowSettings) -> np.ndarray:
    """Lesion probability (D, H, W) float32 for ``image`` (C, D, H, W), any spatial shape.

    Three steps, as nnU-Net splits them: slicing (pad, tile into windows), mirroring (flip TTA,
    several mirrors per forward pass) and aggregation (Gaussian blending).
    """
    device = torch.device(settings.device) if isinstance(settings.device, str) else settings.device
    if image.ndim != 4:
        raise ValueError(f"image must be (C, D, H, W), got shape {image.shape}")
    spatial = tuple(int(s) for s in image.shape[1:])
    win = fit_window(spatial, tuple(int(w) for w in settings.window), settings.divisor)
    xt = torch.from_numpy(padded_input(image, win)).to(device)
    slices = window_slices(tuple(xt.shape[1:]), win, settings.overlap)
    predict = _MirroredPredictor(net, settings, device)
    blend = _GaussianBlend(tuple(xt.shape[1:]), win, device)
    for i in range(0, len(slices), settings.batch_size):
        chunk = slices[i:i + settings.batch_size]
        batch = torch.stack([xt[(slice(None),) + s] for s in chunk])
        for s, p in zip(chunk, predict(batch, win)):
            blend.add(s, p)
    return blend.result(spatial)


def sliding_window_predict(net: nn.Module, image: np.ndarray, window: tuple[int, int, int], overlap: float = 0.5,
                           device: torch.device | str = "cpu", tta: bool = False, amp: bool = True,
                           batch_size: int = 2, divisor: int = 8, flips_per_pass: int = 1,
                           tta_axes: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    """:func:`predict_windows` with the settings as keyword arguments (see :class:`WindowSettings`)."""
    return predict_windows(net, image, WindowSettings(tuple(window), overlap, device, tta, amp,  # type: ignore[arg-type]
                                                      batch_size, divisor, flips_per_pass, tuple(tta_axes)))
