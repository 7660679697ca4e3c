"""The preprocessing stage shared by every command."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..clock import Clock
from ..volume import Volume, VolumeMeta
from .bias import n4_correct
from .brain import brain_ml_plausible, check_brain_plausible, extract_brain, foreground_mask
from .brain_rim import trim_bright_rim
from .normalize import robust_zscore
from .qc import save_step
from .registration import centre_start, head_centre, register_rigid, resample_moving
from .resample import isotropic_grid, reorient_canonical, resample_like, resample_to_grid, slab_peak

log = logging.getLogger(__name__)


@dataclass
class PreprocessOptions:
    """Settings of the preprocessing stage."""

    spacing_mm: float = 1.0
    bias_correction: bool = True
    skull_strip: bool = True
    #: 'deepbet' (pretrained network, default) or 'template' (MNI template fit); see preprocess.brain
    brain_extraction: str = "deepbet"
    #: where the brain-extraction network runs ('auto': cuda, then mps, then cpu); None: 'auto', or
    #: inside an analysis the model's device (``AnalyzeOptions.preprocess_options``)
    device: str | None = None
    coregister: bool = True
    #: trim scalp the brain mask took in on an image with skull (``brain_rim``); off keeps the extractor's mask
    trim_rim: bool = True
    #: refuse a FLAIR whose brain mask is not brain-sized (e.g. a spine volume)
    check_brain: bool = False
    save_dir: Path | None = None


@dataclass
class Preprocessed:
    """All contrasts on the working grid, plus the native FLAIR grid to map back to."""

    native: Volume
    images: dict[str, Volume]
    brain_mask: Volume
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def flair(self) -> Volume:
        return self.images["flair"]

    def to_native(self, vol: Volume, order: int = 1) -> Volume:
        """Resample a working-grid volume back onto the native FLAIR grid."""
        return resample_like(vol, self.native, order=order)

    def to_native_peaks(self, vol: Volume) -> Volume:
        """A working-grid map's highest value inside each native voxel (its slab, where slices are thick),
        on the native FLAIR grid; without thick slices, :meth:`to_native`."""
        peak = slab_peak(vol, self.native)
        return self.to_native(vol if peak is None else peak)


def preprocess(inputs: dict[str, Volume], options: PreprocessOptions | None = None) -> Preprocessed:
    """Bring ``inputs`` (keys 'flair', optional 't1', 't2') onto one normalised working grid.

    Steps: RAS reorientation and resampling of the FLAIR to ``spacing_mm`` isotropic
    (the working grid), N4 bias correction, brain extraction (with a plausibility
    check that the FLAIR is a brain), rigid MI co-registration of the other
    contrasts to the FLAIR followed by their own N4, and ``robust_zscore``
    normalisation inside the brain mask.
    """
    options = options or PreprocessOptions()
    timings: dict[str, float] = {}
    save = Path(options.save_dir) if options.save_dir is not None else None
    clock = Clock(timings, digits=3)
    native = inputs["flair"]
    canon = reorient_canonical(native)
    shape, affine = isotropic_grid(canon, options.spacing_mm)
    flair = resample_to_grid(canon, shape, affine, order=1)
    clock.lap("resample")
    save_step(save, "flair_resampled", flair)
    head = foreground_mask(flair.data)
    if options.bias_correction:
        flair = n4_correct(flair, head)
        clock.lap("n4_flair")
        save_step(save, "flair_n4", flair, head)
    mask, found = head, VolumeMeta()
    if options.skull_strip:
        mask_vol = extract_brain(flair, "flair", method=options.brain_extraction, device=options.device or "auto")
        mask = mask_vol.data.astype(bool)
        for key in ("brain_method", "in_head_fraction", "to_mni"):
            if key in mask_vol.meta:
                found[key] = mask_vol.meta[key]
        if options.trim_rim and found.get("brain_method") != "stripped-input" and mask.any():
            trimmed = trim_bright_rim(robust_zscore(flair.data, mask), mask, flair.zooms)
            found["rim_trimmed_ml"] = round(float(np.count_nonzero(mask & ~trimmed)) * flair.voxel_volume_ml, 1)
            log.info("%s: %.1f ml of bright scalp trimmed from the brain mask", native.path, found["rim_trimmed_ml"])
            mask = trimmed
    clock.lap("brain_mask")
    brain = flair.with_data(mask.astype(np.uint8), **found)
    if options.check_brain:
        check_brain_plausible(brain, native.path)
    elif options.skull_strip and not brain_ml_plausible(brain):
        log.warning("%s: brain mask of %.0f ml is implausible; using the head foreground instead",
                    native.path, mask.sum() * flair.voxel_volume_ml)
        mask = head
        brain = flair.with_data(mask.astype(np.uint8))
    save_step(save, "brain_mask", flair, mask)
    images = {"flair": flair.with_data(robust_zscore(flair.data, mask))}
    save_step(save, "flair", images["flair"], mask)
    reg_mask = ndimage.binary_dilation(mask, iterations=3) if mask.any() else None
    flair_centre = head_centre(flair) if options.coregister and len(inputs) > 1 else None
    for name, vol in inputs.items():
        if name == "flair":
            continue
        moving = reorient_canonical(vol)
        extra = VolumeMeta()
        if options.coregister:
            start, offset = centre_start(flair_centre, head_centre(moving))
            if offset is not None:
                extra["world_offset_mm"] = offset
            if start is not None:
                log.warning("%s: its head lies %.0f mm from the FLAIR's in world space; registering from the head "
                            "centres", vol.path, float(np.linalg.norm(offset or 0.0)))
            transform = register_rigid(flair, moving, fixed_mask=reg_mask, init=start)
        else:
            transform = np.eye(4)
        moved = resample_moving(moving, flair, transform, order=1)
        moved = Volume(moved.data, moved.affine, vol.path, {**moved.meta, "to_flair": transform, **extra})
        clock.lap(f"register_{name}")
        if options.bias_correction:
            moved = n4_correct(moved, reg_mask if reg_mask is not None else foreground_mask(moved.data))
            clock.lap(f"n4_{name}")
        images[name] = moved.with_data(robust_zscore(moved.data, mask))
        save_step(save, name, images[name], mask)
    timings["total"] = sum(timings.values())
    return Preprocessed(native=native, images=images, brain_mask=brain, timings=timings)
