"""Trained lesion segmentation models (3-D U-Net) and their loading.

    seg = load_model_segmenter("auto", contrasts={"flair", "t1"}, device="auto")
    prob = seg.predict(preprocessed)   # Volume on the working grid

``"auto"`` picks the FLAIR+T1(+T2) model when a T1 is given, else the FLAIR-only
default.  A model is a folder ``models/<id>/`` (see :mod:`mslesion.model.store`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from scipy import ndimage

from ..clock import Clock
from ..errors import ModelError
from ..volume import Volume, bounding_box
from .combined import CombinedSegmenter
from .inference import WindowSettings, amp_dtype, predict_windows, resolve_device
from .store import (
    CombinedSpec,
    ModelSpec,
    load_network,
    models_root,
    read_any_spec,
    read_spec,
)


class Preprocessed(Protocol):
    """What a segmenter reads: the working-grid images and brain mask (a
    :class:`mslesion.preprocess.Preprocessed` is one; the model package does not import preprocessing)."""

    images: dict[str, Volume]
    brain_mask: Volume

    @property
    def flair(self) -> Volume: ...


log = logging.getLogger(__name__)

DEFAULT_FLAIR_MODEL = "mslesion-flair-v6"
#: what ``compare`` segments both scans with when the model is "auto": on the paired benchmark
#: (``scripts/bench_longitudinal_changes.py``, MSLesSeg P14 T1->T2) v6 calls 5 of the 6 new lesions "new" with 1
#: false call and no false "enlarging" (v3, the previous choice: 5 of 6, 1 false new, 1 false enlarging; v4 and v5:
#: 3 of 6, 2 false); patient12 and P14 T2->T3 score the same with either (notes/issue-21.md, sessions 20 and 25)
DEFAULT_COMPARE_MODEL = "mslesion-flair-v6"
DEFAULT_MULTI_MODEL = "mslesion-flair-t1-t2-v1"


class ModelSegmenter:
    """A trained U-Net, loaded once, applied to many preprocessed subjects."""

    kind = "trained"

    def __init__(self, spec: ModelSpec, device: str = "auto", tta: bool | None = None, amp: bool | None = None) -> None:
        self.spec = spec
        self.model_id = spec.model_id
        self.threshold = spec.threshold
        self.min_peak = spec.min_peak
        #: the model's cross-validated accuracy from model.json (None where the folder has none)
        self.validation: dict | None = spec.raw.get("validation")
        self.device = resolve_device(device)
        self.net = load_network(spec, self.device)
        # training-size windows (instance norm); flip TTA (8x cost) by default on accelerators only
        profile = spec.inference.for_device(self.device.type)
        self.window = profile.window or tuple(int(w) for w in spec.patch_size)
        self.overlap = profile.overlap
        self.tta = profile.tta if tta is None else tta
        # mixed precision: bf16/fp16 on GPUs, bf16 on CPUs with native bf16 (see inference.amp_dtype)
        self.amp = spec.inference.amp if amp is None else bool(amp)
        # TTA mirrors in one forward pass: all 8 on accelerators (fewer, larger calls), 1 on CPUs (memory)
        self.flips_per_pass = profile.flips_per_pass
        self.tta_axes = profile.tta_axes
        self.margin = spec.inference.brain_margin_vox
        self.divisor = 2 ** (int(spec.architecture.get("levels", 4)) - 1)
        log.info("model %s on %s (tta=%s, window=%s, precision=%s)", self.model_id, self.device, self.tta,
                 self.window, amp_dtype(self.device, self.amp) or torch.float32)

    def inference_settings(self) -> dict:
        """How this segmenter runs (recorded in report.json)."""
        return {"device": str(self.device), "tta": self.tta,
                "flips_per_pass": self.flips_per_pass if self.tta else None,
                "tta_axes": list(self.tta_axes) if self.tta else None,
                "window": list(self.window), "overlap": self.overlap,
                "precision": str(amp_dtype(self.device, self.amp) or torch.float32).replace("torch.", "")}

    def window_settings(self) -> WindowSettings:
        """The sliding-window settings this segmenter predicts with."""
        return WindowSettings(self.window, self.overlap, self.device, tta=self.tta,  # type: ignore[arg-type]
                              amp=self.amp, divisor=self.divisor, flips_per_pass=self.flips_per_pass,
                              tta_axes=self.tta_axes)

    def input_array(self, pre: "Preprocessed") -> np.ndarray:
        """Stack the model's channels (C, D, H, W); an optional contrast that is absent is zeros."""
        chans = []
        for name in self.spec.channels:
            if name in pre.images:
                chans.append(pre.images[name].data.astype(np.float32))
            elif name in self.spec.required:
                raise ModelError(self.spec.folder, f"model needs a {name.upper()} image, which was not given")
            else:
                chans.append(np.zeros(pre.flair.shape, np.float32))
        return np.stack(chans)

    def predict(self, pre: "Preprocessed") -> Volume:
        """Lesion probability on the working grid, zero outside the (dilated) brain mask."""
        clock = Clock()
        image = self.input_array(pre)
        brain = pre.brain_mask.data > 0
        if not brain.any():
            brain = np.ones(brain.shape, bool)
        box = bounding_box(brain, self.margin)
        prob = np.zeros(pre.flair.shape, np.float32)
        prob[box] = predict_windows(self.net, image[(slice(None),) + tuple(box)], self.window_settings())
        keep = ndimage.binary_dilation(brain, iterations=2)
        prob[~keep] = 0.0
        log.info("model %s predicted %s in %.1f s", self.model_id, pre.flair.shape, clock.total())
        return pre.flair.with_data(prob)


def resolve_model_folder(model: str, contrasts: set[str]) -> Path:
    """'auto' -> default model for the contrasts; an id -> models/<id>; else a folder path."""
    root = models_root()
    if model == "auto":
        multi = root / DEFAULT_MULTI_MODEL
        if "t1" in contrasts and (multi / "model.json").is_file() and read_spec(multi).raw.get("auto_select", True):
            return multi
        return root / DEFAULT_FLAIR_MODEL
    if (root / model / "model.json").is_file():
        return root / model
    path = Path(model)
    if path.is_dir():
        return path
    raise ModelError(root / model, f"no model '{model}' (neither models/{model}/ nor a folder)")


#: the one model cache of the process: (model folder, device, tta, amp) -> loaded segmenter.  Every
#: load goes through it (the Analyzer, compare, batch workers, scripts), so a model's weights are read
#: once per process however many Analyzers use it.
_CACHE: dict[tuple[str, str, bool | None, bool | None], ModelSegmenter | CombinedSegmenter] = {}


def load_model_segmenter(model: str = "auto", contrasts: set[str] | None = None, device: str = "auto",
                         tta: bool | None = None, amp: bool | None = None):
    """Load (once per process) the trained segmenter for ``model`` and ``contrasts``.

    A missing or corrupt model, the default one included, raises :class:`ModelError`
    naming its folder: ``"auto"`` never falls back to the threshold baseline (that
    runs only when asked for, ``model="baseline"`` in :func:`mslesion.segment.load_segmenter`).
    """
    contrasts = set(contrasts or {"flair"})
    folder = resolve_model_folder(model, contrasts)
    if model == "auto" and not (folder / "model.json").is_file():
        raise ModelError(folder, "the default model is missing (no model.json); reinstall mslesion, set "
                                 "MSLESION_MODELS to a models folder, or pass --model baseline for the "
                                 "classical threshold baseline")
    spec = read_any_spec(folder)
    missing = spec.required - contrasts
    if missing:
        raise ModelError(folder, f"model {spec.model_id} needs contrasts {sorted(missing)} that were not given")
    return _segmenter_for(spec, device, tta, amp)


def _segmenter_for(spec: ModelSpec | CombinedSpec, device: str, tta: bool | None,
                   amp: bool | None) -> ModelSegmenter | CombinedSegmenter:
    """The cached segmenter of a parsed model folder (a combined model's parts from their parsed specs)."""
    key = (str(spec.folder.resolve()), str(resolve_device(device)), tta, amp)
    if key not in _CACHE:
        if isinstance(spec, CombinedSpec):
            parts = [_segmenter_for(part, device, tta, amp) for part in spec.part_specs]
            _CACHE[key] = CombinedSegmenter(spec, parts)
        else:
            _CACHE[key] = ModelSegmenter(spec, device=device, tta=tta, amp=amp)
    return _CACHE[key]


__all__ = ["ModelSegmenter", "CombinedSegmenter", "load_model_segmenter", "resolve_model_folder", "DEFAULT_FLAIR_MODEL",
           "DEFAULT_MULTI_MODEL", "DEFAULT_COMPARE_MODEL"]
