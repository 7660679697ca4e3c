"""Lesion segmenters.

A segmenter is loaded once and then called many times::

    seg = load_segmenter("auto", contrasts={"flair"}, device="auto")
    prob = seg.predict(preprocessed)   # Volume of probabilities, working grid

Every segmenter has a ``model_id`` and a ``kind`` ("trained" or
"classical-baseline") that the report records.
"""
from __future__ import annotations

from typing import Protocol

from ..preprocess import Preprocessed
from ..volume import Volume
from .baseline import BASELINE_ID, ThresholdSegmenter


class Segmenter(Protocol):
    model_id: str
    kind: str
    threshold: float
    #: keep a lesion only where its highest probability reaches this (0: off)
    min_peak: float

    def predict(self, pre: Preprocessed) -> Volume:
        """Lesion probability on the working grid of ``pre``."""
        ...


def load_segmenter(model: str = "auto", contrasts: set[str] | None = None, device: str = "auto",
                   tta: bool | None = None, amp: bool = True) -> Segmenter:
    """Pick and load a segmenter. ``model`` is 'auto', 'baseline', a model id or a model folder.

    ``tta`` (None: the model's default for the device) and ``amp`` (mixed precision where the
    device supports it) apply to trained models only.
    """
    contrasts = contrasts or {"flair"}
    if model == BASELINE_ID or model == "baseline":
        return ThresholdSegmenter()
    from ..model import load_model_segmenter

    return load_model_segmenter(model, contrasts=contrasts, device=device, tta=tta, amp=amp)


__all__ = ["Segmenter", "load_segmenter", "ThresholdSegmenter", "BASELINE_ID"]
