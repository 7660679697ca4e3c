"""Location report for a lesion mask the user already has (e.g. an expert segmentation).

Same code path as :class:`mslesion.pipeline.Analyzer` minus the segmenter:
load and check inputs, preprocess, label lesions, :func:`locate`, and write
with :func:`mslesion.pipeline.write_outputs` (``lesions.nii.gz``, a
``lesion_probability.nii.gz`` that is the mask itself, ``lesions.csv``, QC
and ``report.json``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import check_same_space, load_volume
from ..lesions import find_lesions, remove_small
from ..preprocess.resample import resample_like
from ..report import sha256_of

log = logging.getLogger(__name__)


@dataclass
class _MaskSource:
    """Stands in for a segmenter in the report: the lesions come from a given mask."""

    model_id: str = "user-mask"
    kind: str = "user-mask"
    threshold: float = 0.5


def report_mask(flair: str | Path, lesions: str | Path, out_dir: str | Path | None = None,
                t1: str | Path | None = None, options=None, mask_threshold: float = 0.5):
    """Locate the lesions of a given mask and write the pipeline's outputs to ``out_dir``."""
    from ..pipeline import AnalysisResult, AnalyzeOptions, build_report, load_inputs, prepare_out_dir, write_outputs
    from ..preprocess import preprocess
    from .regions import locate

    opts = options or AnalyzeOptions(model="baseline")
    t_start = time.perf_counter()
    vols = load_inputs({"flair": flair, "t1": t1})
    mask = load_volume(lesions, role="LESION MASK")
    check_same_space(vols["flair"], mask, "LESION MASK")
    if not np.isfinite(mask_threshold) or not 0 < mask_threshold <= 1:
        raise InputError(Path(lesions), f"mask threshold must be in (0, 1], got {mask_threshold}")
    if not mask.same_grid(vols["flair"]):
        log.info("lesion mask is on another grid; resampling it onto the FLAIR grid by world coordinates")
        mask = resample_like(mask.with_data((mask.data >= mask_threshold).astype(np.float32)), vols["flair"], order=0)
    binary = mask.data >= mask_threshold
    if not binary.any():
        log.warning("%s: the lesion mask is empty", lesions)
    flair_vol = vols["flair"]
    min_vox = max(1, int(round(opts.min_lesion_mm3 / (flair_vol.voxel_volume_ml * 1000.0)))) \
        if opts.min_lesion_mm3 > 0 else 1
    mask = flair_vol.with_data(remove_small(binary, min_vox).astype(np.uint8))
    out = prepare_out_dir(out_dir) if out_dir is not None else None
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    pre = preprocess(vols, opts.preprocess)
    timings["preprocess_s"] = time.perf_counter() - t0
    labels, found = find_lesions(mask)
    t0 = time.perf_counter()
    location = locate(labels, found, pre, opts.location)
    timings["location_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    report = build_report(vols, _MaskSource(), mask_threshold, found, location, timings, opts)
    report["lesion_mask_input"] = {"path": str(lesions), "sha256": sha256_of(lesions)}
    prob = mask.with_data(mask.data.astype(np.float32))
    result = AnalysisResult(mask, prob, found, location, report, pre, out)
    if out is not None:
        write_outputs(result, out)
    return result
