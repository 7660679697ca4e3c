"""The analysis pipeline shared by the CLI, the batch runner and the Python API.

    from mslesion import Analyzer
    analyzer = Analyzer()                      # loads the model once
    result = analyzer.run({"flair": "sub-01_FLAIR.nii.gz"}, out_dir="out/sub-01")
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .errors import InputError, OutputError
from .io import check_same_space, load_volume, save_volume
from .lesions import Lesion, find_lesions, remove_small
from .location import LocationOptions, LocationResult, locate
from .preprocess import Preprocessed, PreprocessOptions, preprocess
from .report import sha256_of, write_lesions_csv, write_report
from .segment import Segmenter, load_segmenter
from .volume import Volume

log = logging.getLogger(__name__)

CONTRASTS = ("flair", "t1", "t2")
OUTPUT_FILES = ("lesions.nii.gz", "lesion_probability.nii.gz", "lesions.csv", "report.json")


@dataclass
class AnalyzeOptions:
    """Settings of one analysis."""

    model: str = "auto"
    device: str = "auto"
    threshold: float | None = None
    min_lesion_mm3: float = 3.0
    preprocess: PreprocessOptions = field(default_factory=PreprocessOptions)
    location: LocationOptions = field(default_factory=LocationOptions)


@dataclass
class AnalysisResult:
    """What one analysis produced (also written to ``out_dir``)."""

    lesion_mask: Volume
    probability: Volume
    lesions: list[Lesion]
    location: LocationResult
    report: dict
    preprocessed: Preprocessed
    out_dir: Path | None = None


def load_inputs(paths: dict[str, str | Path | None]) -> dict[str, Volume]:
    """Load and cross-check the given contrasts; 'flair' is required."""
    unknown = set(paths) - set(CONTRASTS)
    if unknown:
        raise InputError(None, f"unknown contrast(s) {sorted(unknown)}; expected {list(CONTRASTS)}")
    if not paths.get("flair"):
        raise InputError(None, "a FLAIR image is required")
    vols = {name: load_volume(p, role=name.upper()) for name, p in paths.items() if p}
    for name, vol in vols.items():
        if name != "flair":
            check_same_space(vols["flair"], vol, name.upper())
    return vols


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create the output folder and prove it is writable."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".mslesion-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(out, f"output folder cannot be written ({exc.strerror or exc})") from exc
    return out


class Analyzer:
    """Holds a loaded segmenter; call :meth:`run` for each subject."""

    def __init__(self, options: AnalyzeOptions | None = None, segmenter: Segmenter | None = None,
                 contrasts: set[str] | None = None) -> None:
        self.options = options or AnalyzeOptions()
        self._segmenters: dict[frozenset[str], Segmenter] = {}
        if segmenter is not None:
            self._fixed: Segmenter | None = segmenter
        else:
            self._fixed = None
            self.segmenter_for(contrasts or {"flair"})

    def segmenter_for(self, contrasts: set[str]) -> Segmenter:
        if self._fixed is not None:
            return self._fixed
        key = frozenset(contrasts)
        if key not in self._segmenters:
            self._segmenters[key] = load_segmenter(self.options.model, contrasts=set(contrasts), device=self.options.device)
        return self._segmenters[key]

    def run(self, inputs: dict[str, str | Path | None], out_dir: str | Path | None = None) -> AnalysisResult:
        """Analyse one subject. Inputs are checked before anything is written."""
        t_start = time.perf_counter()
        vols = load_inputs(inputs)
        out = prepare_out_dir(out_dir) if out_dir is not None else None
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        opts = self.options
        pre_opts = opts.preprocess
        if out is not None and pre_opts.save_dir is not None and not Path(pre_opts.save_dir).is_absolute():
            pre_opts = PreprocessOptions(**{**pre_opts.__dict__, "save_dir": out / pre_opts.save_dir})
        pre = preprocess(vols, pre_opts)
        timings["preprocess_s"] = time.perf_counter() - t0
        seg = self.segmenter_for(set(vols))
        t0 = time.perf_counter()
        prob_work = seg.predict(pre)
        timings["segment_s"] = time.perf_counter() - t0
        threshold = opts.threshold if opts.threshold is not None else seg.threshold
        prob = pre.to_native(prob_work, order=1)
        prob = prob.with_data(np.clip(prob.data, 0.0, 1.0).astype(np.float32))
        min_vox = max(1, int(round(opts.min_lesion_mm3 / (prob.voxel_volume_ml * 1000.0))))
        mask = prob.with_data(remove_small(prob.data >= threshold, min_vox).astype(np.uint8))
        labels, lesions = find_lesions(mask)
        t0 = time.perf_counter()
        location = locate(labels, lesions, pre, opts.location)
        timings["location_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - t_start
        report = build_report(vols, seg, threshold, lesions, location, timings, opts)
        result = AnalysisResult(mask, prob, lesions, location, report, pre, out)
        if out is not None:
            write_outputs(result, out)
        return result


def build_report(vols: dict[str, Volume], seg: Segmenter, threshold: float, lesions: list[Lesion],
                 location: LocationResult, timings: dict[str, float], opts: AnalyzeOptions) -> dict:
    return {
        "lesion_count": len(lesions),
        "total_volume_ml": round(float(sum(l.volume_ml for l in lesions)), 4),
        "regions": location.regions,
        "mcdonald_dis": location.mcdonald_dis,
        "inputs": {
            name: {"path": str(v.path), "sha256": sha256_of(v.path) if v.path else None,
                   "shape": list(v.shape), "voxel_size_mm": [round(z, 4) for z in v.zooms]}
            for name, v in vols.items()
        },
        "model": {"id": seg.model_id, "kind": seg.kind, "threshold": threshold},
        "settings": {"min_lesion_mm3": opts.min_lesion_mm3, "device": opts.device},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "mslesion_version": __version__,
    }


def write_outputs(result: AnalysisResult, out: Path) -> None:
    """Write the four outputs atomically; report.json last, so it marks completion."""
    save_volume(result.lesion_mask, out / "lesions.nii.gz", dtype=np.uint8)
    save_volume(result.probability, out / "lesion_probability.nii.gz", dtype=np.float32)
    write_lesions_csv(out / "lesions.csv", result.lesions)
    write_report(out / "report.json", result.report)


def analyze(flair: str | Path, t1: str | Path | None = None, t2: str | Path | None = None,
            out_dir: str | Path | None = None, options: AnalyzeOptions | None = None) -> AnalysisResult:
    """One-shot convenience: load the model, analyse one subject."""
    contrasts = {"flair"} | ({"t1"} if t1 else set()) | ({"t2"} if t2 else set())
    return Analyzer(options, contrasts=contrasts).run({"flair": flair, "t1": t1, "t2": t2}, out_dir)
