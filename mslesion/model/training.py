"""Training of the lesion U-Net from the npz cases made by ``scripts/prepare_training_data.py``.

Imports only torch/numpy/scipy (and this package's pure-torch modules), so it runs on a
machine with little else installed.  Patches are drawn around lesions (a fixed
fraction) or anywhere in the brain, augmented on the training device, and fitted
with Dice + BCE.  The learning rate decays with progress, where progress is the
larger of iterations done / ``iterations`` and seconds spent / ``max_seconds``,
so a time-boxed run still finishes its schedule.

Long runs can be split over several calls (a GPU lent for minutes at a time):
``session_seconds``/``session_iterations`` end one call early with a checkpoint
(``checkpoint.pt``: network, optimiser, random generators, progress), and the next
call with the same configuration and ``out_dir`` resumes from it.  On CPU the
resumed run gives the same weights as an uninterrupted one.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .augment import AugmentConfig, intensity_augment, paste_lesions, sample_patch
from .inference import amp_dtype as inference_amp_dtype
from .inference import resolve_device, sliding_window_predict
from .losses import blob_dice_loss, dice_bce_loss, false_blob_loss
from .unet import SliceStackNet, build_unet, slice_stack

log = logging.getLogger(__name__)

ALL_CHANNELS = ("flair", "t1", "t2")


@dataclass
class TrainConfig:
    data_dir: str
    out_dir: str
    channels: tuple[str, ...] = ("flair",)
    holdout: tuple[str, ...] = ()
    patch: tuple[int, int, int] = (112, 112, 112)
    batch: int = 2
    iterations: int = 3000
    max_seconds: float = 1e9
    lr: float = 2e-3
    weight_decay: float = 3e-5
    warmup: float = 0.03
    base: int = 16
    levels: int = 4
    residual: bool = True
    #: "3d": a 3-D U-Net on ``patch``-sized patches; "2.5d": a 2-D U-Net on stacks of ``patch[0]``
    #: neighbouring slices of ``patch[1] x patch[2]``, cut across a random axis per sample
    #: (:class:`~mslesion.model.unet.SliceStackNet`)
    arch: str = "3d"
    lesion_fraction: float = 0.6
    #: how a lesion-centred patch picks its lesion: "voxel" (big lesions dominate) or
    #: "component" (every connected lesion equally likely, so small lesions are seen as often)
    lesion_sampling: str = "voxel"
    #: weight of the BCE term on the voxels of small lesions: a lesion of s voxels gets
    #: min(small_lesion_weight, sqrt(small_lesion_voxels / s)), at least 1 (1.0 = off)
    small_lesion_weight: float = 1.0
    small_lesion_voxels: int = 100
    #: weight of the lesion-wise Dice term (:func:`~mslesion.model.losses.blob_dice_loss`; 0 = off)
    blob_weight: float = 0.0
    #: neighbourhood (voxels) in which each lesion's blob Dice is taken; 0: the whole patch
    blob_margin: int = 6
    #: weight of the false-lesion term (:func:`~mslesion.model.losses.false_blob_loss`; 0 = off)
    false_blob_weight: float = 0.0
    #: start from these weights (fine-tuning); "" = random initialisation
    init_weights: str = ""
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    log_every: int = 25
    infer_window: tuple[int, int, int] = (160, 192, 160)
    infer_overlap: float = 0.25
    holdout_tta: bool = True
    #: predict the held-out cases at the end (pred_<case>.npz)
    holdout_predict: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    #: end this call after this many seconds / iterations with a checkpoint (resume later)
    session_seconds: float = 1e9
    session_iterations: int = 0
    #: also checkpoint every this many iterations (0: only at the end of a session)
    checkpoint_every: int = 500
    #: speed options of one process (for accelerators): the channels-last memory layout of the network and
    #: its input, and ``torch.compile``.  The same arithmetic, so the calls of one run may differ in them.
    channels_last: bool = False
    compile: bool = False

    def architecture(self) -> dict:
        common = {"in_channels": len(self.channels), "base": self.base, "levels": self.levels,
                  "residual": self.residual}
        if self.arch == "2.5d":
            return {"name": SliceStackNet.NAME, **common, "slices": int(self.patch[0]), "axes": [0, 1, 2]}
        return {"name": "UNet3D", **common}

    def __post_init__(self) -> None:
        if self.arch not in ("3d", "2.5d"):
            raise ValueError(f"arch must be '3d' or '2.5d', got {self.arch!r}")
        if self.arch == "2.5d" and (self.blob_weight > 0 or self.false_blob_weight > 0):
            raise ValueError("the lesion-wise losses (blob, false-blob) need 3-D patches (arch '3d')")


@dataclass
class Case:
    case_id: str
    subject: str
    volume: torch.Tensor       # (C + 1 [+ 1], D, H, W): channels, soft label [, voxel loss weight]
    present: torch.Tensor      # (C,)
    lesion_idx: torch.Tensor   # (n, 3) voxel indices with label > 0 (CPU)
    brain_idx: torch.Tensor    # (m, 3) voxel indices inside the brain (CPU, subsampled)
    #: start of each connected lesion's run in ``lesion_idx`` (sorted by component), plus the end
    component_bounds: torch.Tensor = field(default_factory=lambda: torch.zeros(1, dtype=torch.long))


def load_cases(data_dir: Path, channels: tuple[str, ...], exclude: tuple[str, ...], device: torch.device,
               rng: np.random.Generator, small_weight: tuple[float, int] = (1.0, 100)) -> list[Case]:
    """Load every case of ``data_dir/cases.json`` whose subject is not in ``exclude``.

    With ``small_weight`` (largest weight, reference size in voxels) above 1, each volume
    carries a last channel of voxel loss weights (:func:`small_lesion_weights`).
    """
    meta = json.loads((data_dir / "cases.json").read_text())
    chan_idx = [ALL_CHANNELS.index(c) for c in channels]
    cases = []
    for info in meta["cases"]:
        if info["subject"] in exclude or info["case"] in exclude:
            continue
        if "flair" not in info["contrasts"]:
            continue
        with np.load(data_dir / f"{info['case']}.npz") as z:
            image = z["image"][chan_idx].astype(np.float32)
            present = z["present"][chan_idx].astype(np.float32)
            label = z["labels"].astype(np.float32).mean(axis=0)  # average of raters: 0, 0.5, 1
            brain = z["brain"] > 0
        lesion_idx, bounds = _lesion_voxels_by_component(label > 0)
        brain_idx = np.argwhere(brain)
        if len(brain_idx) > 200_000:
            brain_idx = brain_idx[rng.choice(len(brain_idx), 200_000, replace=False)]
        stack = [image, label[None]]
        if small_weight[0] > 1.0:
            stack.append(small_lesion_weights(label > 0, *small_weight)[None])
        vol = torch.from_numpy(np.concatenate(stack, 0)).to(device)
        cases.append(Case(info["case"], info["subject"], vol, torch.from_numpy(present).to(device),
                          torch.from_numpy(lesion_idx), torch.from_numpy(brain_idx), torch.from_numpy(bounds)))
        log.info("case %s: shape %s, %d lesion voxels", info["case"], image.shape, len(lesion_idx))
    if not cases:
        raise ValueError(f"no training cases left in {data_dir} after excluding {exclude}")
    return cases


def small_lesion_weights(mask: np.ndarray, max_weight: float, ref_voxels: int) -> np.ndarray:
    """Voxel weights: 1 outside lesions; min(max_weight, sqrt(ref_voxels / size)) (at least 1) inside one."""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float32)
    per_label = np.clip(np.sqrt(ref_voxels / np.maximum(sizes, 1.0)), 1.0, max_weight)
    per_label[0] = 1.0
    return per_label[labels].astype(np.float32)


def _lesion_voxels_by_component(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lesion voxel indices grouped by connected component (26-connectivity), and the group bounds."""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    idx = np.argwhere(labels > 0)
    comp = labels[tuple(idx.T)]
    order = np.argsort(comp, kind="stable")
    counts = np.bincount(comp, minlength=n + 1)[1:]
    return idx[order], np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _lesion_centre(case: Case, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """A lesion voxel: uniform over voxels, or over components then voxels (``cfg.lesion_sampling``)."""
    if cfg.lesion_sampling == "component" and len(case.component_bounds) > 1:
        k = int(torch.randint(len(case.component_bounds) - 1, (1,), generator=gen))
        lo, hi = int(case.component_bounds[k]), int(case.component_bounds[k + 1])
        return case.lesion_idx[lo + int(torch.randint(hi - lo, (1,), generator=gen))]
    return case.lesion_idx[int(torch.randint(len(case.lesion_idx), (1,), generator=gen))]


def _patch_shape(cfg: TrainConfig, gen: torch.Generator) -> tuple[tuple[int, int, int], int]:
    """The patch to resample and, for the 2.5-D model, the axis it is thin along (-1 for 3-D).

    A 2.5-D patch is ``patch[0]`` slices thick, plus room for a whole synthetic lesion on each side
    when lesions are pasted (cut back to ``patch[0]`` slices afterwards)."""
    if cfg.arch != "2.5d":
        return cfg.patch, -1
    axis = int(torch.randint(3, (1,), generator=gen))
    thick = cfg.patch[0]
    if cfg.augment.p_synthetic > 0:
        thick += 2 * (int(math.ceil(cfg.augment.synthetic_radius[1] * 1.5)) + 2)
    shape = [cfg.patch[1], cfg.patch[2]]
    shape.insert(axis, thick)
    return (shape[0], shape[1], shape[2]), axis


def _centre_slices(patch: torch.Tensor, axis: int, slices: int) -> torch.Tensor:
    """``patch`` (C, D, H, W) cut to its centre ``slices`` along spatial ``axis``, that axis moved first."""
    moved = patch.movedim(axis + 1, 1)
    lo = (moved.shape[1] - slices) // 2
    return moved[:, lo:lo + slices]


def draw_batch(cases: list[Case], cfg: TrainConfig, gen: torch.Generator,
               noise_gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One augmented batch: images (N, C, *patch), soft labels (N, 1, *patch) and voxel weights (or None).

    For the 2.5-D model: images (N, C * slices, A, B) in :func:`~mslesion.model.unet.slice_stack`'s layout,
    labels and weights of the centre slice (N, 1, A, B).
    """
    n_ch = len(cfg.channels)
    imgs, labs, pres, weights = [], [], [], []
    for _ in range(cfg.batch):
        case = cases[int(torch.randint(len(cases), (1,), generator=gen))]
        use_lesion = len(case.lesion_idx) > 0 and float(torch.rand(1, generator=gen)) < cfg.lesion_fraction
        if use_lesion:
            centre = _lesion_centre(case, cfg, gen).float()
        else:
            centre = case.brain_idx[int(torch.randint(len(case.brain_idx), (1,), generator=gen))].float()
        shape, axis = _patch_shape(cfg, gen)
        jitter = torch.tensor(shape, dtype=torch.float32) / 3
        if axis >= 0:
            jitter[axis] = 0.0  # the centre slice goes through the chosen voxel
        centre = centre + (torch.rand(3, generator=gen) * 2 - 1) * jitter
        patch = sample_patch(case.volume, centre, shape, cfg.augment, gen)
        if cfg.augment.p_synthetic > 0:
            patch = torch.cat([paste_lesions(patch[:n_ch + 1], tuple(cfg.channels), cfg.augment, gen),
                               patch[n_ch + 1:]], 0)
        if axis >= 0:
            patch = _centre_slices(patch, axis, cfg.patch[0])
        imgs.append(patch[:n_ch])
        labs.append(patch[n_ch:n_ch + 1])
        weights.append(patch[n_ch + 1:n_ch + 2])
        pres.append(case.present)
    img = intensity_augment(torch.stack(imgs), torch.stack(pres), cfg.augment, gen, noise_gen)
    # interpolated weights are 0 where the patch leaves the volume; the loss there is as elsewhere
    weight = torch.stack(weights).clamp_min(1.0) if weights[0].shape[0] else None
    lab = torch.stack(labs).clamp(0, 1)
    if cfg.arch == "2.5d":
        mid = cfg.patch[0] // 2
        img = torch.stack([slice_stack(x, 0, cfg.patch[0]) for x in img])
        lab = lab[:, :, mid]
        weight = weight[:, :, mid] if weight is not None else None
    return img, lab, weight


def lr_at(progress: float, cfg: TrainConfig) -> float:
    if progress < cfg.warmup:
        return cfg.lr * max(progress / cfg.warmup, 0.02)
    t = (progress - cfg.warmup) / max(1e-6, 1 - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def _log_record(fh, it: int, losses: list[torch.Tensor], lr: float, t0: float) -> None:
    rec = {"it": it, "loss": round(float(torch.stack(losses).mean()), 4), "lr": round(lr, 6),
           "s": round(time.perf_counter() - t0, 1)}
    fh.write(json.dumps(rec) + "\n")
    fh.flush()
    log.info("%s", rec)


def _save_state(state: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


CHECKPOINT = "checkpoint.pt"
#: settings that may differ between the calls of one resumed run
_SESSION_FIELDS = ("out_dir", "device", "session_seconds", "session_iterations", "checkpoint_every", "log_every",
                   "channels_last", "compile")


def fast_forward(net: torch.nn.Module,
                 cfg: TrainConfig) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.memory_format | None]:
    """What the training loop calls: ``net`` itself, or (``cfg.channels_last``) ``net`` moved to the
    channels-last layout and / or (``cfg.compile``) compiled; the parameters stay ``net``'s.  Also the
    memory format the input batch must have (None: as drawn)."""
    fmt = None
    if cfg.channels_last:
        fmt = torch.channels_last_3d if cfg.arch == "3d" else torch.channels_last
        net.to(memory_format=fmt)  # type: ignore[call-overload]  # runtime keyword the stubs lack
    return (torch.compile(net) if cfg.compile else net), fmt


def _run_identity(cfg: TrainConfig) -> str:
    return json.dumps({k: v for k, v in _jsonable(asdict(cfg)).items() if k not in _SESSION_FIELDS}, sort_keys=True)


def _save_checkpoint(path: Path, cfg: TrainConfig, net: torch.nn.Module, opt: torch.optim.Optimizer,
                     scaler: torch.amp.GradScaler, gens: tuple[torch.Generator, torch.Generator], it: int,
                     trained_s: float) -> None:
    _save_state({"identity": _run_identity(cfg), "iteration": it, "trained_seconds": trained_s,
                 "net": net.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                 "generator": gens[0].get_state(), "noise_generator": gens[1].get_state(),
                 "torch_rng": torch.get_rng_state()}, path)


def _restore_checkpoint(path: Path, cfg: TrainConfig, net: torch.nn.Module, opt: torch.optim.Optimizer,
                        scaler: torch.amp.GradScaler,
                        gens: tuple[torch.Generator, torch.Generator]) -> tuple[int, float]:
    """Load ``path`` into the training state; returns (iteration, seconds trained so far)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("identity") != _run_identity(cfg):
        raise ValueError(f"{path}: checkpoint of a run with other settings; use another --out or delete it")
    net.load_state_dict(state["net"])
    opt.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    gens[0].set_state(state["generator"])
    gens[1].set_state(state["noise_generator"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["iteration"]), float(state["trained_seconds"])


def train(cfg: TrainConfig) -> dict:
    """Train one model; writes ``weights.pt``, ``train_log.jsonl`` and ``train_summary.json`` to ``out_dir``.

    A call that stops early (``session_seconds``/``session_iterations``) writes ``checkpoint.pt``
    instead of weights and returns ``{"complete": False, ...}``; calling again resumes.
    """
    t_start = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    cases = load_cases(Path(cfg.data_dir), tuple(cfg.channels), tuple(cfg.holdout), device, np_rng,
                       (cfg.small_lesion_weight, cfg.small_lesion_voxels))
    model = build_unet(cfg.architecture()).to(device)
    # the 2.5-D model trains its 2-D U-Net on slice stacks; the whole SliceStackNet is saved and predicts
    net = model.net if isinstance(model, SliceStackNet) else model
    if cfg.init_weights:
        model.load_state_dict(torch.load(cfg.init_weights, map_location=device, weights_only=True))
        log.info("initialised from %s", cfg.init_weights)
    forward, in_format = fast_forward(net, cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # mixed precision: bf16/fp16 on CUDA; bf16 on CPUs with native bf16 instructions (about 2.4x faster)
    amp_dtype = inference_amp_dtype(device, cfg.amp)
    use_amp = amp_dtype is not None
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and device.type == "cuda" and amp_dtype == torch.float16)
    gens = (gen, noise_gen)
    ckpt = out / CHECKPOINT
    it, trained_before = 0, 0.0
    if ckpt.is_file():
        it, trained_before = _restore_checkpoint(ckpt, cfg, net, opt, scaler, gens)
        log.info("resumed %s at iteration %d (%.0f s trained before)", ckpt, it, trained_before)
    log_path = out / "train_log.jsonl"
    log_fh = open(log_path, "a" if it else "w", encoding="utf-8")
    t_session = time.perf_counter()
    t_train = t_session - trained_before  # so that now - t_train = seconds trained over all calls
    first_it, running = it, []  # type: int, list[torch.Tensor]
    net.train()
    while True:
        progress = max(it / cfg.iterations, (time.perf_counter() - t_train) / cfg.max_seconds)
        if progress >= 1.0:
            break
        if (time.perf_counter() - t_session >= cfg.session_seconds
                or (cfg.session_iterations and it - first_it >= cfg.session_iterations)):
            if running:
                _log_record(log_fh, it, running, lr_at(progress, cfg), t_train)
            log_fh.close()
            _save_checkpoint(ckpt, cfg, net, opt, scaler, gens, it, time.perf_counter() - t_train)
            log.info("session ended at iteration %d; resume with the same command", it)
            return {"complete": False, "iterations": it, "train_seconds": round(time.perf_counter() - t_train, 1),
                    "device": str(device), "checkpoint": str(ckpt)}
        lr = lr_at(progress, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        img, lab, weight = draw_batch(cases, cfg, gen, noise_gen)
        if in_format is not None:
            img = img.contiguous(memory_format=in_format)
        with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=use_amp):
            logits = forward(img)
        loss = dice_bce_loss(logits, lab, weight)
        if cfg.blob_weight > 0:
            loss = loss + cfg.blob_weight * blob_dice_loss(logits, lab, cfg.blob_margin)
        if cfg.false_blob_weight > 0:
            loss = loss + cfg.false_blob_weight * false_blob_loss(logits, lab)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
        scaler.step(opt)
        scaler.update()
        it += 1
        running.append(loss.detach())
        if it % cfg.log_every == 0:
            _log_record(log_fh, it, running, lr, t_train)
            running = []
        if cfg.checkpoint_every and it % cfg.checkpoint_every == 0:
            _save_checkpoint(ckpt, cfg, net, opt, scaler, gens, it, time.perf_counter() - t_train)
    if running:
        _log_record(log_fh, it, running, lr_at(1.0, cfg), t_train)
    log_fh.close()
    train_s = time.perf_counter() - t_train
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    _save_state(state, out / "weights.pt")
    ckpt.unlink(missing_ok=True)
    summary = {"complete": True, "config": _jsonable(asdict(cfg)), "architecture": cfg.architecture(), "iterations": it,
               "train_seconds": round(train_s, 1), "device": str(device),
               "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "cases": [c.case_id for c in cases]}
    if cfg.holdout and cfg.holdout_predict:
        summary["holdout_predictions"] = predict_holdout(model, cfg, device, out)
    summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def predict_holdout(net: torch.nn.Module, cfg: TrainConfig, device: torch.device, out: Path) -> list[str]:
    """Predict each held-out case (crop frame) and save it as ``pred_<case>.npz`` (uint8 probability x 255)."""
    data_dir = Path(cfg.data_dir)
    meta = json.loads((data_dir / "cases.json").read_text())
    chan_idx = [ALL_CHANNELS.index(c) for c in cfg.channels]
    net.eval()
    written = []
    for info in meta["cases"]:
        if info["subject"] not in cfg.holdout and info["case"] not in cfg.holdout:
            continue
        with np.load(data_dir / f"{info['case']}.npz") as z:
            image = z["image"][chan_idx].astype(np.float32)
        t0 = time.perf_counter()
        div = 2 ** (cfg.levels - 1)
        # "accurate": training-size windows, 50 % overlap, 8 flips (accelerator default);
        # "fast": one large window, 25 % overlap, no flips (CPU default)
        window = cfg.infer_window if cfg.arch == "2.5d" else cfg.patch
        accurate = sliding_window_predict(net, image, window, 0.5, device, tta=cfg.holdout_tta, amp=cfg.amp,
                                          divisor=div)
        fast = sliding_window_predict(net, image, cfg.infer_window, cfg.infer_overlap, device, tta=False,
                                      amp=cfg.amp, divisor=div)
        np.savez_compressed(out / f"pred_{info['case']}.npz", accurate_u8=_quantise(accurate), fast_u8=_quantise(fast))
        log.info("held-out %s predicted in %.1f s", info["case"], time.perf_counter() - t0)
        written.append(info["case"])
    return written


def _quantise(prob: np.ndarray) -> np.ndarray:
    return np.round(np.clip(prob, 0, 1) * 255).astype(np.uint8)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
