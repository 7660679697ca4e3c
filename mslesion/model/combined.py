"""Combined models: the mean probability of several installed models (e.g. a 3-D and a 2.5-D network).

A combined model folder holds only ``model.json`` (and its card). It names its parts, sibling
model folders in the same models folder, and pins each part's weights by sha256::

    {"id": "mslesion-flair-v4", "channels": ["flair"], "threshold": 0.5, "min_peak": 0.9,
     "parts": ["mslesion-flair-v3", "mslesion-flair-2p5d-v1"],
     "parts_sha256": {"mslesion-flair-v3": ["e530...", "2dab..."], "mslesion-flair-2p5d-v1": ["91c0..."]}}

Each part predicts with its own inference settings (window, overlap, flips), so networks of
different kinds combine; the probabilities are averaged with equal weight per part, as
nnU-Net averages the configurations of an ensemble.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..clock import Clock
from ..errors import ModelError
from ..volume import Volume
from .store import CARD_NAME, read_raw, read_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CombinedSpec:
    """The parsed ``model.json`` of a combined model folder."""

    folder: Path
    model_id: str
    channels: list[str]
    threshold: float
    min_peak: float
    #: each part's folder and the sha256 of each of its weights files, as pinned in model.json
    parts: list[tuple[Path, list[str]]]
    raw: dict = field(default_factory=dict)

    @property
    def required(self) -> set[str]:
        return set(self.raw.get("required_contrasts", ["flair"]))


def is_combined(raw: dict) -> bool:
    """Whether a parsed model.json describes a combined model."""
    return "parts" in raw


def read_combined_spec(folder: Path) -> CombinedSpec:
    """Parse ``folder/model.json`` of a combined model; every part must exist with the pinned weights."""
    card = folder / CARD_NAME
    raw = read_raw(folder)
    try:
        names = [str(p) for p in raw["parts"]]
        pinned = {str(k): [str(h) for h in v] for k, v in dict(raw["parts_sha256"]).items()}
        spec = CombinedSpec(folder=folder, model_id=str(raw["id"]), channels=list(raw["channels"]),
                            threshold=float(raw["threshold"]), min_peak=float(raw.get("min_peak", 0.0)),
                            parts=[(folder.parent / n, pinned[n]) for n in names], raw=raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(card, f"model.json of a combined model lacks or has a bad field: {exc}") from exc
    if len(spec.parts) < 2:
        raise ModelError(card, f"a combined model needs at least 2 parts, got {len(spec.parts)}")
    for part, hashes in spec.parts:
        part_spec = read_spec(part)  # raises ModelError naming the part's folder
        have = [h for _, h in part_spec.members]
        if have != hashes:
            raise ModelError(part / CARD_NAME, f"part of {spec.model_id} has weights {have}, "
                                               f"{card} pins {hashes}")
        if part_spec.channels != spec.channels:
            raise ModelError(part / CARD_NAME, f"part channels {part_spec.channels} differ from the combined "
                                               f"model's {spec.channels}")
    return spec


def write_combined_folder(folder: Path, model_id: str, parts: list[str], threshold: float, min_peak: float = 0.0,
                          extra: dict | None = None, card_md: str | None = None) -> Path:
    """Write a combined model folder ``folder`` (model.json, optional card) whose parts are the sibling model
    folders ``parts``, each pinned by the sha256 of its weights; the parts must exist and share their contrasts."""
    from ..atomic import write_json, write_text

    specs = [read_spec(folder.parent / name) for name in parts]
    channels = specs[0].channels
    meta = {"id": model_id, "format_version": 1, "channels": channels,
            "required_contrasts": sorted(set().union(*(s.required for s in specs)), key=["flair", "t1", "t2"].index),
            "threshold": float(threshold), **({"min_peak": float(min_peak)} if min_peak > 0 else {}),
            "parts": list(parts), "parts_sha256": {name: [h for _, h in s.members] for name, s in zip(parts, specs)},
            **(extra or {})}
    folder.mkdir(parents=True, exist_ok=True)
    if card_md is not None:
        write_text(folder / "model_card.md", card_md)
    write_json(folder / CARD_NAME, meta)
    read_combined_spec(folder)  # the parts agree (channels, weights)
    return folder


class CombinedSegmenter:
    """Several loaded segmenters; the probability is the mean of theirs."""

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
        return {"device": first["device"], "precision": first["precision"], "parts": parts}

    def predict(self, pre) -> Volume:
        """Mean lesion probability of the parts, on the working grid."""
        clock = Clock()
        prob = np.mean([p.predict(pre).data for p in self.parts], axis=0).astype(np.float32)
        log.info("combined model %s predicted in %.1f s", self.model_id, clock.total())
        return pre.flair.with_data(prob)
