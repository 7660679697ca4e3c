"""Combined models: the mean probability of several installed models (e.g. a 3-D and a 2.5-D network).

A combined model folder holds only ``model.json`` (and its card). It names its parts, sibling
model folders in the same models folder, and pins each part's weights by sha256::

    {"id": "mslesion-flair-v4", "channels": ["flair"], "threshold": 0.5, "min_peak": 0.9,
     "parts": ["mslesion-flair-v3", "mslesion-flair-2p5d-v1"],
     "parts_sha256": {"mslesion-flair-v3": ["e530...", "2dab..."], "mslesion-flair-2p5d-v1": ["91c0..."]}}

Each part predicts with its own inference settings (window, overlap, flips), so networks of
different kinds combine; the probabilities are averaged with equal weight per part, as
nnU-Net averages the configurations of an ensemble, unless model.json gives ``part_weights``
(one positive number per part, normalised to sum 1; e.g. one 3-D network beside two 2.5-D ones
at 0.5 / 0.25 / 0.25, so each kind of network counts alike).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..clock import Clock
from ..volume import Volume
from .store import CARD_NAME, FORMAT_VERSION, CombinedSpec, read_combined_spec, read_spec

log = logging.getLogger(__name__)


def write_combined_folder(folder: Path, model_id: str, parts: list[str], threshold: float, min_peak: float = 0.0,
                          extra: dict | None = None, card_md: str | None = None,
                          part_weights: list[float] | None = None) -> Path:
    """Write a combined model folder ``folder`` (model.json, optional card) whose parts are the sibling model
    folders ``parts``, each pinned by the sha256 of its weights; the parts must exist and share their contrasts.
    ``part_weights``: the parts' weights in the mean (default equal)."""
    from ..atomic import write_json, write_text

    specs = [read_spec(folder.parent / name) for name in parts]
    channels = specs[0].channels
    meta = {"id": model_id, "format_version": FORMAT_VERSION, "channels": channels,
            "required_contrasts": sorted(set().union(*(s.required for s in specs)), key=["flair", "t1", "t2"].index),
            "threshold": float(threshold), **({"min_peak": float(min_peak)} if min_peak > 0 else {}),
            "parts": list(parts), "parts_sha256": {name: [h for _, h in s.members] for name, s in zip(parts, specs)},
            **({"part_weights": [float(w) for w in part_weights]} if part_weights is not None else {}),
            **(extra or {})}
    folder.mkdir(parents=True, exist_ok=True)
    if card_md is not None:
        write_text(folder / "model_card.md", card_md)
    write_json(folder / CARD_NAME, meta)
    read_combined_spec(folder)  # the parts agree (channels, weights)
    return folder


class CombinedSegmenter:
    """Several loaded segmenters; the probability is the (weighted) mean of theirs."""

    kind = "trained"

    def __init__(self, spec: CombinedSpec, parts: list) -> None:
        self.spec = spec
        self.model_id = spec.model_id
        self.threshold = spec.threshold
        self.min_peak = spec.min_peak
        self.validation: dict | None = spec.raw.get("validation")
        self.parts = parts

    def inference_settings(self) -> dict:
        """How each part runs (recorded in report.json)."""
        parts = {p.model_id: p.inference_settings() for p in self.parts}
        first = next(iter(parts.values()))
        return {"device": first["device"], "precision": first["precision"], "parts": parts,
                "part_weights": dict(zip(parts, self.spec.part_weights))}

    def predict(self, pre) -> Volume:
        """Weighted mean lesion probability of the parts, on the working grid."""
        clock = Clock()
        prob = np.zeros(pre.flair.shape, np.float32)
        for part, weight in zip(self.parts, self.spec.part_weights):
            prob += np.float32(weight) * part.predict(pre).data.astype(np.float32)
        log.info("combined model %s predicted in %.1f s", self.model_id, clock.total())
        return pre.flair.with_data(prob)
