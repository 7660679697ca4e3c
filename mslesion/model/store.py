"""Model folders: ``models/<id>/`` = ``model.json`` + ``weights.pt`` + ``model_card.md``.

``model.json`` holds the id, the contrasts (input channels in order), the
architecture, the inference settings, the threshold and the sha256 of
``weights.pt``.  Weights load with ``torch.load(weights_only=True)`` only after
the hash matches; any mismatch raises :class:`~mslesion.errors.ModelError`.

An ensemble (several trainings of one architecture, e.g. seeds or folds) lists its
files: ``"weights": ["a.pt", "b.pt"]`` with ``"sha256": [hash_a, hash_b]``; the model's
probability is then the mean of the members' probabilities.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..errors import ModelError
from .unet import MeanEnsemble, build_unet

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


@dataclass(frozen=True)
class DeviceProfile:
    """How a model runs on one kind of device (model.json ``inference`` keys ``*_cpu`` or ``*_accelerator``)."""

    #: sliding-window size (voxels); None: the training patch size
    window: tuple[int, int, int] | None
    overlap: float
    #: flip test-time augmentation, the mirrored axes (0 = left-right on the RAS working grid), and how
    #: many mirrors go through the network in one call
    tta: bool
    tta_axes: tuple[int, ...]
    flips_per_pass: int


@dataclass(frozen=True)
class InferenceSpec:
    """model.json's ``inference`` block: one :class:`DeviceProfile` per kind of device, plus shared settings."""

    cpu: DeviceProfile
    accelerator: DeviceProfile
    #: mixed precision where the device supports it
    amp: bool = True
    #: voxels kept around the brain's bounding box before prediction
    brain_margin_vox: int = 8

    @classmethod
    def from_dict(cls, d: dict) -> "InferenceSpec":
        """Read the block (missing keys take the defaults: flips on accelerators only, 8 mirrors a call there)."""
        def profile(where: str) -> DeviceProfile:
            window = d.get(f"window_{where}")
            accelerator = where == "accelerator"
            return DeviceProfile(
                window=tuple(int(w) for w in window) if window else None,  # type: ignore[arg-type]
                overlap=float(d.get(f"overlap_{where}", 0.5)),
                tta=bool(d.get(f"tta_{where}", accelerator)),
                tta_axes=tuple(int(a) for a in d.get(f"tta_axes_{where}", (0, 1, 2))),
                flips_per_pass=int(d.get(f"flips_per_pass_{where}", 8 if accelerator else 1)))

        return cls(cpu=profile("cpu"), accelerator=profile("accelerator"), amp=bool(d.get("amp", True)),
                   brain_margin_vox=int(d.get("brain_margin_vox", 8)))

    def for_device(self, device_type: str) -> DeviceProfile:
        """The profile of a torch device type ("cpu", "cuda", "mps", ...)."""
        return self.cpu if device_type == "cpu" else self.accelerator


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
    inference: InferenceSpec = field(default_factory=lambda: InferenceSpec.from_dict({}))
    raw: dict = field(default_factory=dict)
    #: (weights file name, sha256) of every member; one for a single network
    members: list[tuple[str, str]] = field(default_factory=list)
    #: hysteresis: a lesion is kept only where its highest probability reaches this (0: off)
    min_peak: float = 0.0

    @property
    def required(self) -> set[str]:
        return set(self.raw.get("required_contrasts", ["flair"]))


def _members(raw: dict) -> list[tuple[str, str]]:
    """(file, sha256) pairs from model.json's ``weights``/``sha256`` (a string each, or equal-length lists)."""
    files, hashes = raw.get("weights", WEIGHTS_NAME), raw["sha256"]
    if isinstance(files, str) and isinstance(hashes, str):
        return [(files, hashes)]
    if isinstance(files, list) and isinstance(hashes, list) and len(files) == len(hashes) and files:
        return [(str(f), str(h)) for f, h in zip(files, hashes)]
    raise ValueError(f"'weights' {files!r} and 'sha256' must both be strings or lists of one length")


def read_raw(folder: Path) -> dict:
    """``folder/model.json`` as a dict (any kind of model folder)."""
    card = folder / CARD_NAME
    if not card.is_file():
        raise ModelError(card, "model.json is missing (not a model folder)")
    try:
        raw = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(card, f"model.json cannot be read ({exc})") from exc
    if not isinstance(raw, dict):
        raise ModelError(card, "model.json must hold a JSON object")
    return raw


def read_spec(folder: Path, raw: dict | None = None) -> ModelSpec:
    """Parse and validate ``folder/model.json`` of a network model (not a combined one); ``raw``: the file
    already read (:func:`read_raw`)."""
    card = folder / CARD_NAME
    raw = read_raw(folder) if raw is None else raw
    if "parts" in raw:
        raise ModelError(card, "a combined model (it lists 'parts'); load it with load_model_segmenter")
    try:
        members = _members(raw)
        spec = ModelSpec(folder=folder, model_id=str(raw["id"]), channels=list(raw["channels"]),
                         architecture=dict(raw["architecture"]), threshold=float(raw["threshold"]),
                         sha256=members[0][1], patch_size=[int(p) for p in raw["patch_size"]],
                         inference=InferenceSpec.from_dict(dict(raw.get("inference") or {})), raw=raw, members=members,
                         min_peak=float(raw.get("min_peak", 0.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(card, f"model.json lacks or has a bad field: {exc}") from exc
    if spec.channels[:1] != ["flair"]:
        raise ModelError(card, f"channels must start with 'flair', got {spec.channels}")
    if not 0.0 <= spec.min_peak <= 1.0:
        raise ModelError(card, f"min_peak must lie in [0, 1], got {spec.min_peak}")
    if int(spec.architecture.get("in_channels", -1)) != len(spec.channels):
        raise ModelError(card, f"architecture in_channels {spec.architecture.get('in_channels')} "
                               f"!= {len(spec.channels)} channels")
    return spec


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
    #: the parsed model.json of each part, in the order of ``parts``
    part_specs: list[ModelSpec] = field(default_factory=list)
    #: each part's weight in the mean probability (sums to 1; equal unless model.json gives ``part_weights``)
    part_weights: list[float] = field(default_factory=list)

    @property
    def required(self) -> set[str]:
        return set(self.raw.get("required_contrasts", ["flair"]))


def is_combined(raw: dict) -> bool:
    """Whether a parsed model.json describes a combined model."""
    return "parts" in raw


def read_combined_spec(folder: Path, raw: dict | None = None) -> CombinedSpec:
    """Parse ``folder/model.json`` of a combined model (``raw``: the file already read); every part must
    exist with the pinned weights."""
    card = folder / CARD_NAME
    raw = read_raw(folder) if raw is None else raw
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
    weights = _part_weights(card, raw.get("part_weights"), len(spec.parts))
    part_specs = []
    for part, hashes in spec.parts:
        part_spec = read_spec(part)  # raises ModelError naming the part's folder
        part_specs.append(part_spec)
        have = [h for _, h in part_spec.members]
        if have != hashes:
            raise ModelError(part / CARD_NAME, f"part of {spec.model_id} has weights {have}, "
                                               f"{card} pins {hashes}")
        if part_spec.channels != spec.channels:
            raise ModelError(part / CARD_NAME, f"part channels {part_spec.channels} differ from the combined "
                                               f"model's {spec.channels}")
    return replace(spec, part_specs=part_specs, part_weights=weights)


def _part_weights(card: Path, given: object, n_parts: int) -> list[float]:
    """The parts' weights, normalised to sum 1: ``given`` (model.json's ``part_weights``) or equal."""
    if given is None:
        return [1.0 / n_parts] * n_parts
    try:
        values = [float(w) for w in given]  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        raise ModelError(card, f"part_weights must be a list of numbers, got {given!r}") from exc
    if len(values) != n_parts or any(not w > 0 for w in values):
        raise ModelError(card, f"part_weights must give one positive number per part ({n_parts}), got {given!r}")
    total = sum(values)
    return [w / total for w in values]


def read_any_spec(folder: Path) -> ModelSpec | CombinedSpec:
    """The parsed ``folder/model.json`` of a network model or of a combined one (read once)."""
    raw = read_raw(folder)
    return read_combined_spec(folder, raw) if is_combined(raw) else read_spec(folder, raw)


def weights_match(spec: ModelSpec) -> bool:
    """Whether every weights file of ``spec`` exists and has the sha256 that model.json gives."""
    return all((spec.folder / name).is_file() and sha256_file(spec.folder / name) == h for name, h in spec.members)


def describe_models(root: Path | None = None, verify: bool = False) -> list[dict]:
    """One summary per model folder under ``root`` (default :func:`models_root`), sorted by id.

    ``verify`` also recomputes each weights file's sha256 (``"sha256_ok"``).  A folder whose
    model.json cannot be read is listed with its ``"error"``.
    """
    root = Path(root) if root is not None else models_root()
    rows: list[dict[str, object]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if not (folder / CARD_NAME).is_file():
            continue
        try:
            spec = read_any_spec(folder)
            if isinstance(spec, CombinedSpec):
                rows.append(_describe_combined(spec, verify))
                continue
        except ModelError as exc:
            rows.append({"id": folder.name, "folder": str(folder), "error": exc.problem})
            continue
        files = [folder / name for name, _ in spec.members]
        training = spec.raw.get("training", {})
        row = {"id": spec.model_id, "folder": str(folder), "channels": spec.channels,
               "required": sorted(spec.required), "auto_select": bool(spec.raw.get("auto_select", True)),
               "threshold": spec.threshold, "min_peak": spec.min_peak, "patch_size": spec.patch_size,
               "weights_mb": (round(sum(f.stat().st_size for f in files) / 2**20, 2)
                              if all(f.is_file() for f in files) else None),
               "ensemble_members": len(files),
               "trained": {k: training.get(k) for k in ("iterations", "train_seconds", "device_name") if k in training},
               "card": str(folder / "model_card.md") if (folder / "model_card.md").is_file() else None,
               "sha256": spec.sha256}
        if verify:
            row["sha256_ok"] = weights_match(spec)
        rows.append(row)
    return rows


def _describe_combined(spec: CombinedSpec, verify: bool) -> dict:
    """The :func:`describe_models` row of a combined model (its parts are listed in their own rows)."""
    folder = spec.folder
    row: dict[str, object] = {
        "id": spec.model_id, "folder": str(folder), "channels": spec.channels, "required": sorted(spec.required),
        "auto_select": bool(spec.raw.get("auto_select", True)), "threshold": spec.threshold,
        "min_peak": spec.min_peak, "parts": [p.name for p, _ in spec.parts], "part_weights": spec.part_weights,
        "weights_mb": 0.0, "ensemble_members": sum(len(h) for _, h in spec.parts), "trained": {},
        "card": str(folder / "model_card.md") if (folder / "model_card.md").is_file() else None,
        "sha256": None}
    if verify:
        row["sha256_ok"] = all(weights_match(part) for part in spec.part_specs)
    return row


def load_network(spec: ModelSpec, device: torch.device) -> torch.nn.Module:
    """Check each weights file's sha256, load it with ``weights_only=True`` and build the network.

    An ensemble folder gives a :class:`~mslesion.model.unet.MeanEnsemble` of its members.
    """
    members = spec.members or [(WEIGHTS_NAME, spec.sha256)]
    nets: list[torch.nn.Module] = [_load_member(spec, spec.folder / name, digest) for name, digest in members]
    net = nets[0] if len(nets) == 1 else MeanEnsemble(nets)
    return net.to(device).eval()


def _load_member(spec: ModelSpec, path: Path, expected: str) -> torch.nn.Module:
    if not path.is_file():
        raise ModelError(path, "weights file is missing")
    digest = sha256_file(path)
    if digest != expected:
        raise ModelError(path, f"sha256 mismatch: file has {digest}, model.json says {expected}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of a damaged file
        raise ModelError(path, f"weights cannot be loaded ({type(exc).__name__}: {exc})") from exc
    net = build_unet(spec.architecture)
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise ModelError(path, f"weights do not fit the architecture in model.json ({str(exc)[:200]})") from exc
    return net


def write_model_folder(folder: Path, weights: Path | list[Path], model_id: str, channels: list[str],
                       architecture: dict, patch_size: list[int], threshold: float, inference: dict,
                       extra: dict | None = None, card_md: str | None = None) -> Path:
    """Copy ``weights`` into ``folder`` and write ``model.json`` (with the sha256) and the model card, atomically.

    Several weights files make an ensemble folder (``weights_0.pt``, ``weights_1.pt``, ...).
    """
    from ..atomic import write_bytes, write_json, write_text

    folder.mkdir(parents=True, exist_ok=True)
    sources = [Path(w) for w in weights] if isinstance(weights, list) else [Path(weights)]
    names = [WEIGHTS_NAME] if len(sources) == 1 else [f"weights_{i}.pt" for i in range(len(sources))]
    for name, src in zip(names, sources):
        write_bytes(folder / name, src.read_bytes())
    hashes = [sha256_file(folder / n) for n in names]
    meta = {"id": model_id, "format_version": FORMAT_VERSION, "channels": list(channels),
            "required_contrasts": ["flair"] + [c for c in channels if c == "t1"],
            "architecture": architecture, "patch_size": list(patch_size), "threshold": float(threshold),
            "inference": inference, "sha256": hashes[0] if len(names) == 1 else hashes,
            "weights": names[0] if len(names) == 1 else names, **(extra or {})}
    if card_md is not None:
        write_text(folder / "model_card.md", card_md)
    write_json(folder / CARD_NAME, meta)
    return folder


DEFAULT_INFERENCE: dict[str, object] = {"window_cpu": None, "overlap_cpu": 0.5, "tta_cpu": False,
                     "window_accelerator": None, "overlap_accelerator": 0.5, "tta_accelerator": True,
                     "brain_margin_vox": 8}


def _read_summary(run_dir: Path) -> dict:
    summary_path = run_dir / "train_summary.json"
    try:
        return json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(summary_path, f"training summary cannot be read ({exc})") from exc


def package_run(run_dir: Path, dest: Path, model_id: str, threshold: float = 0.5, card_md: str | None = None,
                extra: dict | None = None, cpu_window: list[int] | None = None,
                also: list[Path] | None = None) -> Path:
    """Turn a training run folder (weights.pt + train_summary.json) into a model folder ``dest``.

    ``also``: further runs of the same architecture and inputs (other seeds or folds); the
    folder is then their ensemble (mean probability).
    """
    summary = _read_summary(run_dir)
    cfg = summary["config"]
    runs = [run_dir, *(also or [])]
    for other in runs[1:]:
        o = _read_summary(other)
        if o["architecture"] != summary["architecture"] or o["config"]["channels"] != cfg["channels"]:
            raise ModelError(other, "ensemble members must share the architecture and channels of the first run")
    inference = dict(DEFAULT_INFERENCE)
    # 3-D: the training patch size (instance norm statistics match training); 2.5-D (slice stacks, per-slice
    # statistics): the inference window of the run, which covers most brains at once
    window = list(cfg["infer_window"] if cfg.get("arch") == "2.5d" else cfg["patch"])
    inference["window_accelerator"] = window
    # CPU default: the same window, no flips
    inference["window_cpu"] = list(cpu_window or window)
    training = {k: summary.get(k) for k in ("iterations", "train_seconds", "device", "device_name", "torch", "cases")}
    training["seed"] = cfg.get("seed")
    if len(runs) > 1:
        training["members"] = [{"run": r.name, "seed": _read_summary(r)["config"].get("seed"),
                                "iterations": _read_summary(r).get("iterations")} for r in runs]
    weights: Path | list[Path] = run_dir / WEIGHTS_NAME if len(runs) == 1 else [r / WEIGHTS_NAME for r in runs]
    return write_model_folder(dest, weights, model_id, list(cfg["channels"]), summary["architecture"],
                              list(cfg["patch"]), threshold, inference, extra={"training": training, **(extra or {})},
                              card_md=card_md)
