"""Model folders: ``models/<id>/`` = ``model.json`` + ``weights.pt`` + ``model_card.md``.

``model.json`` holds the id, the contrasts (input channels in order), the
architecture, the inference settings, the threshold and the sha256 of
``weights.pt``.  Weights load with ``torch.load(weights_only=True)`` only after
the hash matches; any mismatch raises :class:`~mslesion.errors.ModelError`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ModelError
from .unet import UNet3D, build_unet

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS_NAME = "weights.pt"
CARD_NAME = "model.json"


def models_root(package_dir: Path | None = None) -> Path:
    """Where model folders live: ``$MSLESION_MODELS``, else the models shipped with mslesion.

    An installed wheel holds them in ``mslesion/models/`` (the build maps the checkout's
    top-level ``models/`` there, see ``setup.py``); a checkout (editable install) reads
    ``<repo>/models`` directly.  ``package_dir`` (default: the installed ``mslesion``
    folder) is for tests.
    """
    env = os.environ.get("MSLESION_MODELS")
    if env:
        return Path(env)
    package = Path(package_dir) if package_dir is not None else Path(__file__).resolve().parents[1]
    shipped = package / "models"
    return shipped if shipped.is_dir() else package.parent / "models"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ModelSpec:
    """The parsed ``model.json`` of a model folder."""

    folder: Path
    model_id: str
    channels: list[str]
    architecture: dict
    threshold: float
    sha256: str
    patch_size: list[int]
    inference: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)

    @property
    def required(self) -> set[str]:
        return set(self.raw.get("required_contrasts", ["flair"]))


def read_spec(folder: Path) -> ModelSpec:
    """Parse and validate ``folder/model.json``."""
    card = folder / CARD_NAME
    if not card.is_file():
        raise ModelError(card, "model.json is missing (not a model folder)")
    try:
        raw = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(card, f"model.json cannot be read ({exc})") from exc
    try:
        spec = ModelSpec(folder=folder, model_id=str(raw["id"]), channels=list(raw["channels"]),
                         architecture=dict(raw["architecture"]), threshold=float(raw["threshold"]),
                         sha256=str(raw["sha256"]), patch_size=[int(p) for p in raw["patch_size"]],
                         inference=dict(raw.get("inference", {})), raw=raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(card, f"model.json lacks or has a bad field: {exc}") from exc
    if spec.channels[:1] != ["flair"]:
        raise ModelError(card, f"channels must start with 'flair', got {spec.channels}")
    if int(spec.architecture.get("in_channels", -1)) != len(spec.channels):
        raise ModelError(card, f"architecture in_channels {spec.architecture.get('in_channels')} "
                               f"!= {len(spec.channels)} channels")
    return spec


def describe_models(root: Path | None = None, verify: bool = False) -> list[dict]:
    """One summary per model folder under ``root`` (default :func:`models_root`), sorted by id.

    ``verify`` also recomputes each weights file's sha256 (``"sha256_ok"``).  A folder whose
    model.json cannot be read is listed with its ``"error"``.
    """
    root = Path(root) if root is not None else models_root()
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if not (folder / CARD_NAME).is_file():
            continue
        try:
            spec = read_spec(folder)
        except ModelError as exc:
            rows.append({"id": folder.name, "folder": str(folder), "error": exc.problem})
            continue
        weights = folder / WEIGHTS_NAME
        training = spec.raw.get("training", {})
        row = {"id": spec.model_id, "folder": str(folder), "channels": spec.channels,
               "required": sorted(spec.required), "auto_select": bool(spec.raw.get("auto_select", True)),
               "threshold": spec.threshold, "patch_size": spec.patch_size,
               "weights_mb": round(weights.stat().st_size / 2**20, 2) if weights.is_file() else None,
               "trained": {k: training.get(k) for k in ("iterations", "train_seconds", "device_name") if k in training},
               "card": str(folder / "model_card.md") if (folder / "model_card.md").is_file() else None,
               "sha256": spec.sha256}
        if verify:
            row["sha256_ok"] = weights.is_file() and sha256_file(weights) == spec.sha256
        rows.append(row)
    return rows


def load_network(spec: ModelSpec, device: torch.device) -> UNet3D:
    """Check the weights' sha256, load them with ``weights_only=True`` and build the network."""
    path = spec.folder / WEIGHTS_NAME
    if not path.is_file():
        raise ModelError(path, "weights file is missing")
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise ModelError(path, f"sha256 mismatch: file has {digest}, model.json says {spec.sha256}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of a damaged file
        raise ModelError(path, f"weights cannot be loaded ({type(exc).__name__}: {exc})") from exc
    net = build_unet(spec.architecture)
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise ModelError(path, f"weights do not fit the architecture in model.json ({str(exc)[:200]})") from exc
    return net.to(device).eval()


def write_model_folder(folder: Path, weights: Path, model_id: str, channels: list[str], architecture: dict,
                       patch_size: list[int], threshold: float, inference: dict, extra: dict | None = None,
                       card_md: str | None = None) -> Path:
    """Copy ``weights`` into ``folder`` and write ``model.json`` (with its sha256) and the model card, atomically."""
    from ..atomic import write_bytes, write_json, write_text

    folder.mkdir(parents=True, exist_ok=True)
    write_bytes(folder / WEIGHTS_NAME, Path(weights).read_bytes())
    meta = {"id": model_id, "format_version": FORMAT_VERSION, "channels": list(channels),
            "required_contrasts": ["flair"] + [c for c in channels if c == "t1"],
            "architecture": architecture, "patch_size": list(patch_size), "threshold": float(threshold),
            "inference": inference, "sha256": sha256_file(folder / WEIGHTS_NAME), "weights": WEIGHTS_NAME,
            **(extra or {})}
    if card_md is not None:
        write_text(folder / "model_card.md", card_md)
    write_json(folder / CARD_NAME, meta)
    return folder


DEFAULT_INFERENCE = {"window_cpu": None, "overlap_cpu": 0.5, "tta_cpu": False,
                     "window_accelerator": None, "overlap_accelerator": 0.5, "tta_accelerator": True,
                     "brain_margin_vox": 8}


def package_run(run_dir: Path, dest: Path, model_id: str, threshold: float = 0.5, card_md: str | None = None,
                extra: dict | None = None, cpu_window: list[int] | None = None) -> Path:
    """Turn a training run folder (weights.pt + train_summary.json) into a model folder ``dest``."""
    summary_path = run_dir / "train_summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(summary_path, f"training summary cannot be read ({exc})") from exc
    cfg = summary["config"]
    inference = dict(DEFAULT_INFERENCE)
    inference["window_accelerator"] = list(cfg["patch"])
    # CPU default: the training patch size (instance norm statistics match training), no flips
    inference["window_cpu"] = list(cpu_window or cfg["patch"])
    training = {k: summary.get(k) for k in ("iterations", "train_seconds", "device", "device_name", "torch", "cases")}
    training["seed"] = cfg.get("seed")
    return write_model_folder(dest, run_dir / WEIGHTS_NAME, model_id, list(cfg["channels"]), summary["architecture"],
                              list(cfg["patch"]), threshold, inference, extra={"training": training, **(extra or {})},
                              card_md=card_md)
