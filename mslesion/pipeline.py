"""The analysis pipeline shared by the CLI, the batch runner and the Python API.

    from mslesion import Analyzer
    analyzer = Analyzer()                      # loads the model once
    result = analyzer.run({"flair": "sub-01_FLAIR.nii.gz"}, out_dir="out/sub-01")
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__
from .atomic import output_group
from .enhancement_stage import assess_subject as assess_enhancement
from .errors import InputError, OutputError
from .io import check_same_space, load_volume, save_volume
from .memory import check_memory
from .lesions import Lesion, find_lesions, remove_small
from .location import LocationOptions, LocationResult, dis_verdict, locate
from .preprocess import Preprocessed, PreprocessOptions, preprocess
from .qc import write_subject_qc
from .report import sha256_of, write_lesions_csv, write_report
from .segment import Segmenter, load_segmenter
from .volume import Volume
from .volumes import TissueVolumes, assess_volumes

log = logging.getLogger(__name__)

CONTRASTS = ("flair", "t1", "t2", "t1post")
OUTPUT_FILES = ("lesions.nii.gz", "lesion_probability.nii.gz", "lesions.csv", "report.json")


@dataclass
class AnalyzeOptions:
    """Settings of one analysis."""

    model: str = "auto"
    device: str = "auto"
    #: flip test-time augmentation: None = the model's default for the device (on GPUs, off on CPUs)
    tta: bool | None = None
    #: full fp32 inference (no bf16/fp16 autocast), e.g. to compare machines with and without bf16
    fp32: bool = False
    threshold: float | None = None
    min_lesion_mm3: float = 3.0
    preprocess: PreprocessOptions = field(default_factory=PreprocessOptions)
    location: LocationOptions = field(default_factory=LocationOptions)
    #: refuse inputs whose estimated peak memory exceeds this (bytes); None: most of the free RAM; 0: no check.
    max_memory: int | None = None
    #: refuse a FLAIR whose brain mask is not that of a brain (e.g. a spine volume), as the CLI does;
    #: applies when the skull is stripped (``preprocess.skull_strip``)
    check_brain: bool = True

    def preprocess_options(self) -> PreprocessOptions:
        """The preprocessing settings; the brain-extraction network runs on the model's device unless set.

        With :attr:`check_brain` (the default) a skull-stripped FLAIR must hold a brain-sized brain.
        """
        check = self.preprocess.check_brain or (self.check_brain and self.preprocess.skull_strip)
        return replace(self.preprocess, device=self.preprocess.device or self.device, check_brain=check)


@dataclass
class AnalysisResult:
    """What one analysis produced (also written to ``out_dir``)."""

    lesion_mask: Volume
    #: None where there is no probability (``mslesion report`` on a given mask): none is written
    probability: Volume | None
    lesions: list[Lesion]
    location: LocationResult
    report: dict
    preprocessed: Preprocessed
    out_dir: Path | None = None
    #: brain volumes (ICV, brain, GM/WM/CSF, BPF); None where not assessed
    volumes: TissueVolumes | None = None


def load_inputs(paths: dict[str, str | Path | None]) -> dict[str, Volume]:
    """Load and cross-check the given contrasts; 'flair' is required."""
    unknown = set(paths) - set(CONTRASTS)
    if unknown:
        raise InputError(None, f"unknown contrast(s) {sorted(unknown)}; expected {list(CONTRASTS)}")
    if not paths.get("flair"):
        raise InputError(None, "a FLAIR image is required")
    if paths.get("t1post") and not paths.get("t1"):
        raise InputError(paths["t1post"], "a post-contrast T1 is compared with the pre-contrast T1: pass --t1 too")
    vols = {name: load_volume(p, role=name.upper()) for name, p in paths.items() if p}
    for name, vol in vols.items():
        if name != "flair":
            check_same_space(vols["flair"], vol, name.upper())
    return vols


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create the output folder and prove it is writable; an existing file in its place is refused."""
    out = Path(out_dir)
    for place in (out, *out.parents):
        if place.exists() or place.is_symlink():
            if not place.is_dir():
                where = "" if place == out else f" (in the output path {out})"
                raise OutputError(place, f"is a file, not a folder{where}; give a folder for the outputs")
            break
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
            self._segmenters[key] = load_segmenter(self.options.model, contrasts=set(contrasts), device=self.options.device,
                                                   tta=self.options.tta, amp=not self.options.fp32)
        return self._segmenters[key]

    def run(self, inputs: dict[str, str | Path | None], out_dir: str | Path | None = None,
            spine: Sequence[tuple[str | Path, str]] = ()) -> AnalysisResult:
        """Analyse one subject. Inputs are checked before anything is written.

        ``spine`` lists (image, contrast) pairs of spinal images of the same subject; their
        cord lesions join the report and the dissemination-in-space verdict.
        """
        t_start = time.perf_counter()
        if self.options.max_memory != 0:
            check_memory(inputs, self.options.max_memory, self.options.preprocess.spacing_mm,
                         trained_model=self.options.model not in ("baseline", "flair-threshold-baseline"))
        vols = load_inputs(inputs)
        spinal = load_spinal_inputs(spine)
        out = prepare_out_dir(out_dir) if out_dir is not None else None
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        opts = self.options
        pre_opts = opts.preprocess_options()
        if out is not None and pre_opts.save_dir is not None and not Path(pre_opts.save_dir).is_absolute():
            pre_opts = replace(pre_opts, save_dir=out / pre_opts.save_dir)
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
        t0 = time.perf_counter()
        enhancement = assess_enhancement(pre, labels, lesions)
        timings["enhancement_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        volumes = assess_volumes(pre, mask, sum(les.volume_ml for les in lesions))
        timings["volumes_s"] = time.perf_counter() - t0
        spine_results = analyze_spinal_inputs(spinal, out)
        timings["total_s"] = time.perf_counter() - t_start
        report = build_report(vols, seg, threshold, lesions, location, timings, opts)
        report["brain_mask"] = brain_mask_summary(pre.brain_mask)
        report["enhancement"] = enhancement
        report["volumes"] = volumes.to_dict()
        if spine_results:
            merge_spine(report, spine_results, opts.location)
        result = AnalysisResult(mask, prob, lesions, location, report, pre, out, volumes)
        if out is not None:
            write_outputs(result, out)
        return result


def load_spinal_inputs(spine: Sequence[tuple[str | Path, str]]) -> list[tuple[Volume, str]]:
    """Load and check the spinal images up front, so a bad one is refused before anything is written."""
    from .spine import CONTRASTS as SPINE_CONTRASTS

    loaded = []
    for path, contrast in spine:
        if contrast not in SPINE_CONTRASTS:
            raise InputError(path, f"unknown spinal contrast {contrast!r}; expected one of {list(SPINE_CONTRASTS)}")
        loaded.append((load_volume(path, role=f"spinal {contrast.upper()}"), contrast))
    return loaded


def analyze_spinal_inputs(spinal: list[tuple[Volume, str]], out: Path | None) -> list:
    """Run the spinal-cord analysis on each image (outputs under OUT/spine/<n>/)."""
    from .spine import analyze_volume

    return [analyze_volume(vol, contrast, None if out is None else out / "spine" / str(i))
            for i, (vol, contrast) in enumerate(spinal)]


def merge_spine(report: dict, spine_results: list, location_options: LocationOptions) -> None:
    """Add the cord lesions to the brain report: a spinal_cord region and one DIS verdict over both."""
    cord_lesions = [les for res in spine_results for les in res.lesions]
    qualifying = sum((res.report.get("mcdonald_dis") or {}).get("qualifying_lesions_per_area", {}).get("spinal_cord", 0)
                     for res in spine_results)
    report["regions"] = dict(report.get("regions") or {})
    report["regions"]["spinal_cord"] = {
        "count": len(cord_lesions),
        "volume_ml": round(sum(float(les.get("volume_mm3", 0.0)) for les in cord_lesions) / 1000.0, 5),
    }
    brain_dis = report.get("mcdonald_dis") or {}
    counts = {k: int(v) for k, v in (brain_dis.get("qualifying_lesions_per_area") or {}).items()
              if k not in brain_dis.get("areas_not_assessed", []) and k != "spinal_cord"}
    counts["spinal_cord"] = int(qualifying)
    report["mcdonald_dis"] = dis_verdict(counts, location_options)
    report["spine"] = [{"image": str(res.report.get("image", {}).get("path")), "lesion_count": len(res.lesions),
                        "lesions": res.lesions, "out_dir": None if res.out_dir is None else str(res.out_dir)}
                       for res in spine_results]


def brain_mask_summary(mask: Volume) -> dict:
    """How the brain was found (method, e.g. 'deepbet') and its volume in ml (intracranial, incl. CSF for deepbet)."""
    return {"method": str(mask.meta.get("brain_method", "head-foreground")),
            "volume_ml": round(float(np.count_nonzero(mask.data)) * mask.voxel_volume_ml, 1)}


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
        "model": {"id": seg.model_id, "kind": seg.kind, "threshold": threshold,
                  **({"inference": seg.inference_settings()} if hasattr(seg, "inference_settings") else {}),
                  # the validated accuracy from the model card, so every report says how far to trust it
                  "validation": getattr(seg, "validation", None)},
        "settings": {"min_lesion_mm3": opts.min_lesion_mm3, "device": opts.device, "tta": opts.tta, "fp32": opts.fp32},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "mslesion_version": __version__,
    }


def write_outputs(result: AnalysisResult, out: Path) -> None:
    """Write the outputs atomically (no probability map where there is none); report.json last, so it marks completion.

    Inside :func:`~mslesion.atomic.output_group` a previous run's outputs are
    removed first and the new ones appear together, so runs never mix.
    """
    from .volumes.outputs import OUTPUT_FILES as VOLUME_FILES, write_volume_outputs

    with output_group(out, ("report.json", *OUTPUT_FILES, *VOLUME_FILES, "report.html")):
        save_volume(result.lesion_mask, out / "lesions.nii.gz", dtype=np.uint8)
        if result.probability is not None:
            save_volume(result.probability, out / "lesion_probability.nii.gz", dtype=np.float32)
        write_lesions_csv(out / "lesions.csv", result.lesions)
        if result.volumes is not None:
            write_volume_outputs(result.volumes, out)
        write_subject_qc(result, out)  # report.html + qc/*.png, before report.json
        write_report(out / "report.json", result.report)


def analyze(flair: str | Path, t1: str | Path | None = None, t2: str | Path | None = None,
            out_dir: str | Path | None = None, options: AnalyzeOptions | None = None,
            t1post: str | Path | None = None) -> AnalysisResult:
    """One-shot convenience: load the model, analyse one subject."""
    inputs = {"flair": flair, "t1": t1, "t2": t2, "t1post": t1post}
    contrasts = {k for k, v in inputs.items() if v}
    return Analyzer(options, contrasts=contrasts).run(inputs, out_dir)
