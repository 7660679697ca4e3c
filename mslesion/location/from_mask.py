"""Location report for a lesion mask the user already has (e.g. an expert segmentation).

Same code path as :class:`mslesion.pipeline.Analyzer` minus the segmenter:
load and check inputs, preprocess, label lesions, :func:`locate`, and write
with :func:`mslesion.pipeline.write_outputs` (``lesions.nii.gz``, ``lesions.csv``,
QC and ``report.json``; no ``lesion_probability.nii.gz``: a given mask has none).

A mask on another grid than the FLAIR is resampled onto the FLAIR's grid (nearest
neighbour), which can merge or drop small lesions; ``report.json`` then says so under
``lesion_mask_input.resampled``, with the lesion count on the mask's own grid.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..clock import Clock
from ..errors import InputError
from ..inputs import load_inputs, prepare_out_dir
from ..io import check_same_space, load_volume
from ..lesions import find_lesions, remove_small
from ..preprocess.resample import resample_like
from ..report import LesionMaskInput, sha256_of
from ..volume import Volume

log = logging.getLogger(__name__)


@dataclass
class _MaskSource:
    """Stands in for a segmenter in the report: the lesions come from a given mask."""

    model_id: str = "user-mask"
    kind: str = "user-mask"
    threshold: float = 0.5


def grid_change(mask: Volume, flair: Volume, mask_threshold: float, min_lesion_mm3: float) -> dict:
    """What resampling ``mask`` onto ``flair``'s grid does, for report.json (lesions counted on the mask's grid)."""
    own = mask.data >= mask_threshold
    min_vox = max(1, int(round(min_lesion_mm3 / (mask.voxel_volume_ml * 1000.0)))) if min_lesion_mm3 > 0 else 1
    _, before = find_lesions(mask.with_data(remove_small(own, min_vox).astype(np.uint8)))

    def grid(vol: Volume) -> str:
        return f"{'x'.join(str(s) for s in vol.shape)} voxels of {'x'.join(f'{z:.3g}' for z in vol.zooms)} mm"

    return {"from_grid": grid(mask), "to_grid": grid(flair), "method": "nearest neighbour, by world coordinates",
            "lesion_count_on_mask_grid": len(before),
            "note": f"the lesion mask ({grid(mask)}) is not on the FLAIR's grid ({grid(flair)}); it was resampled "
                    "onto the FLAIR's grid, which can merge or drop small lesions: give the FLAIR the mask was "
                    "drawn on to avoid it"}


def report_mask(flair: str | Path, lesions: str | Path, out_dir: str | Path | None = None,
                t1: str | Path | None = None, options=None, mask_threshold: float = 0.5):
    """Locate the lesions of a given mask and write the pipeline's outputs to ``out_dir``."""
    from ..pipeline import AnalysisResult, AnalyzeOptions, build_report, write_outputs
    from ..preprocess import preprocess
    from ..volumes import assess_volumes
    from .regions import locate

    opts = options or AnalyzeOptions(model="baseline")
    clock = Clock()
    vols = load_inputs({"flair": flair, "t1": t1})
    mask = load_volume(lesions, role="LESION MASK")
    check_same_space(vols["flair"], mask, "LESION MASK")
    if not np.isfinite(mask_threshold) or not 0 < mask_threshold <= 1:
        raise InputError(Path(lesions), f"mask threshold must be in (0, 1], got {mask_threshold}")
    resampled = None
    if not mask.same_grid(vols["flair"]):
        resampled = grid_change(mask, vols["flair"], mask_threshold, opts.min_lesion_mm3)
        log.warning("%s: %s", lesions, resampled["note"])
        mask = resample_like(mask.with_data(mask.data >= mask_threshold).as_labels(), vols["flair"])
    binary = mask.data >= mask_threshold
    if not binary.any():
        log.warning("%s: the lesion mask is empty", lesions)
    flair_vol = vols["flair"]
    min_vox = max(1, int(round(opts.min_lesion_mm3 / (flair_vol.voxel_volume_ml * 1000.0)))) \
        if opts.min_lesion_mm3 > 0 else 1
    mask = flair_vol.with_data(remove_small(binary, min_vox).astype(np.uint8))
    out = prepare_out_dir(out_dir) if out_dir is not None else None
    timings = clock.timings
    with clock.step("preprocess_s"):
        pre = preprocess(vols, opts.preprocess)
    labels, found = find_lesions(mask)
    with clock.step("location_s"):
        location = locate(labels, found, pre, opts.location)
    with clock.step("volumes_s"):
        volumes = assess_volumes(pre, mask, sum(les.volume_ml for les in found))
    clock.total("total_s")
    report = build_report(vols, _MaskSource(), mask_threshold, found, location, timings, opts)
    report.lesion_mask_input = LesionMaskInput(path=str(lesions), sha256=sha256_of(lesions), resampled=resampled)
    report.volumes = volumes.section()
    if resampled is not None:
        resampled["lesion_count_on_flair_grid"] = len(found)
    result = AnalysisResult(mask, None, found, location, report, pre, out, volumes)
    if out is not None:
        write_outputs(result, out)
    return result
