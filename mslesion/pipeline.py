"""The analysis pipeline shared by the CLI, the batch runner and the Python API.

    from mslesion import Analyzer
    analyzer = Analyzer()                      # loads the model once
    result = analyzer.run({"flair": "sub-01_FLAIR.nii.gz"}, out_dir="out/sub-01")
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import __version__
from .atomic import output_group
from .clock import Clock
from .enhancement_stage import assess_subject as assess_enhancement
from .inputs import CONTRASTS, load_inputs, prepare_out_dir
from .io import load_volume, save_volume
from .lesions import Lesion, binarize, drop_outside, find_lesions
from .location import LocationOptions, LocationResult, locate
from .location.regions import Anatomy, subject_anatomy
from .memory import check_memory
from .preprocess import Preprocessed, PreprocessOptions, preprocess
from .qc import write_subject_qc
from .report import (
    BrainMaskInfo,
    DisVerdict,
    InputInfo,
    ModelInfo,
    RegionCount,
    Report,
    SegmenterInfo,
    Settings,
    to_plain,
    write_lesions_csv,
    write_report,
)
from .segment import Segmenter, load_segmenter
from .volume import Volume
from .volumes import TissueVolumes, assess_volumes

log = logging.getLogger(__name__)

__all__ = ["CONTRASTS", "OUTPUT_FILES", "AnalysisResult", "AnalyzeOptions", "Analyzer", "analyze", "build_report",
           "load_inputs", "merge_spine", "prepare_out_dir", "write_outputs"]

OUTPUT_FILES = ("lesions.nii.gz", "lesion_probability.nii.gz", "lesions.csv", "report.json")
#: written where enhancement was assessed (--t1post)
ENHANCEMENT_MAP = "enhancement.nii.gz"


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
    #: keep a lesion only where its highest probability reaches this; None: the model's (0: off).
    #: analyze and batch only: compare calls changes from the evidence in both scans
    min_peak: float | None = None
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

    def min_peak_for(self, seg: object) -> float | None:
        """The hysteresis level in force: the option where set, else the model's (None: a given mask, no model)."""
        return self.min_peak if self.min_peak is not None else getattr(seg, "min_peak", None)


@dataclass
class AnalysisResult:
    """What one analysis produced (also written to ``out_dir``)."""

    lesion_mask: Volume
    #: None where there is no probability (``mslesion report`` on a given mask): none is written
    probability: Volume | None
    lesions: list[Lesion]
    location: LocationResult
    report: Report
    preprocessed: Preprocessed
    out_dir: Path | None = None
    #: brain volumes (ICV, brain, GM/WM/CSF, BPF); None where not assessed
    volumes: TissueVolumes | None = None
    #: enhancement calls on the native grid (1 enhancing lesion voxels, 2 foci outside lesions); None where not assessed
    enhancement_map: Volume | None = None


class Analyzer:
    """Holds a loaded segmenter; call :meth:`run` for each subject.

    The segmenter for the last contrasts seen is held here; a subject with other contrasts asks
    :func:`~mslesion.segment.load_segmenter` again, whose trained models come from the one model
    cache of the process (:func:`mslesion.model.load_model_segmenter`): a model is loaded once per
    process and predicts for every subject.
    """

    def __init__(self, options: AnalyzeOptions | None = None, segmenter: Segmenter | None = None,
                 contrasts: set[str] | None = None) -> None:
        self.options = options or AnalyzeOptions()
        self._held: tuple[frozenset[str], Segmenter] | None = None
        if segmenter is not None:
            self._fixed: Segmenter | None = segmenter
        else:
            self._fixed = None
            self.segmenter_for(contrasts or {"flair"})

    def segmenter_for(self, contrasts: set[str]) -> Segmenter:
        """The segmenter for ``contrasts`` (the one given, else loaded through the model cache)."""
        if self._fixed is not None:
            return self._fixed
        key = frozenset(contrasts)
        if self._held is None or self._held[0] != key:
            self._held = (key, load_segmenter(self.options.model, contrasts=set(contrasts),
                                              device=self.options.device, tta=self.options.tta,
                                              amp=not self.options.fp32))
        return self._held[1]

    # the steps of :meth:`run`, also used by ``mslesion compare`` (:func:`mslesion.longitudinal.compare_scans`)

    def segment(self, pre: Preprocessed, seg: Segmenter | None = None) -> Volume:
        """Lesion probability on ``pre``'s working grid (``seg``: default, the segmenter for ``pre``'s contrasts)."""
        return (seg or self.segmenter_for(set(pre.images))).predict(pre)

    def threshold_for(self, seg: Segmenter) -> float:
        """The probability threshold in force: the option where set, else the model's."""
        return self.options.threshold if self.options.threshold is not None else seg.threshold

    def lesion_mask(self, prob: Volume, seg: Segmenter, brain: np.ndarray | None = None,
                    peaks: Volume | None = None) -> tuple[Volume, int]:
        """The binary lesion mask (uint8) of a probability map: threshold, minimum size, minimum peak (read
        from ``peaks`` where given) and, given the ``brain`` mask on the same grid, lesions mostly outside it
        dropped (their number returned)."""
        opts = self.options
        min_vox = max(1, int(round(opts.min_lesion_mm3 / (prob.voxel_volume_ml * 1000.0))))
        mask = binarize(prob.data, self.threshold_for(seg), min_vox, opts.min_peak_for(seg) or 0.0,
                        peaks=None if peaks is None else peaks.data)
        dropped = 0
        if brain is not None:
            mask, dropped = drop_outside(mask, brain)
            if dropped:
                log.info("%d lesion candidate(s) lay mostly outside the brain mask and were dropped", dropped)
        return prob.with_data(mask.astype(np.uint8)), dropped

    def locate(self, labels: np.ndarray, lesions: list[Lesion], pre: Preprocessed,
               anatomy: Callable[[], Anatomy] | None = None) -> LocationResult:
        """McDonald regions of the lesions and the dissemination-in-space verdict (``anatomy``: an atlas fit
        already under way, see :meth:`run`)."""
        return locate(labels, lesions, pre, self.options.location, anatomy)

    def run(self, inputs: dict[str, str | Path | None], out_dir: str | Path | None = None,
            spine: Sequence[tuple[str | Path, str]] = ()) -> AnalysisResult:
        """Analyse one subject. Inputs are checked before anything is written.

        ``spine`` lists (image, contrast) pairs of spinal images of the same subject; their
        cord lesions join the report and the dissemination-in-space verdict.
        """
        clock = Clock()
        timings = clock.timings
        if self.options.max_memory != 0:
            check_memory(inputs, self.options.max_memory, self.options.preprocess.spacing_mm,
                         trained_model=self.options.model not in ("baseline", "flair-threshold-baseline"))
        vols = load_inputs(inputs)
        spinal = load_spinal_inputs(spine)
        out = prepare_out_dir(out_dir) if out_dir is not None else None
        opts = self.options
        pre_opts = opts.preprocess_options()
        if out is not None and pre_opts.save_dir is not None and not Path(pre_opts.save_dir).is_absolute():
            pre_opts = replace(pre_opts, save_dir=out / pre_opts.save_dir)
        with clock.step("preprocess_s"):
            pre = preprocess(vols, pre_opts)
        seg = self.segmenter_for(set(vols))
        # the atlas registration for lesion location needs only the preprocessed images and runs on one
        # thread: it goes on beside the segmentation, whose networks rarely keep both cores busy
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mslesion-atlas") as pool:
            atlas_fit = pool.submit(subject_anatomy, pre, opts.location)
            with clock.step("segment_s"):
                prob_work = self.segment(pre, seg)
            threshold = self.threshold_for(seg)
            prob = pre.to_native(prob_work, order=1)
            prob = prob.with_data(np.clip(prob.data, 0.0, 1.0).astype(np.float32))
            # min_peak reads the highest probability inside each native voxel (its whole slab on thick slices)
            peaks = pre.to_native_peaks(prob_work)
            mask, outside = self.lesion_mask(prob, seg, native_brain(pre), peaks)
            labels, lesions = find_lesions(mask)
            with clock.step("location_s"):
                location = self.locate(labels, lesions, pre, atlas_fit.result)
        with clock.step("enhancement_s"):
            enhancement, enhancement_map = assess_enhancement(pre, labels, lesions)
        with clock.step("volumes_s"):
            volumes = assess_volumes(pre, mask, sum(les.volume_ml for les in lesions))
        spine_results = analyze_spinal_inputs(spinal, out)
        clock.total("total_s")
        report = build_report(vols, seg, threshold, lesions, location, timings, opts)
        report.brain_mask = brain_mask_summary(pre.brain_mask, outside)
        report.enhancement = enhancement
        report.state_dissemination()
        report.volumes = volumes.section()
        if spine_results:
            report.add_spine(spine_results, opts.location)
        result = AnalysisResult(mask, prob, lesions, location, report, pre, out, volumes, enhancement_map)
        if out is not None:
            write_outputs(result, out)
        return result


def load_spinal_inputs(spine: Sequence[tuple[str | Path, str]]) -> list[tuple[Volume, str]]:
    """Load and check the spinal images up front, so a bad one is refused before anything is written."""
    from .spine.cord import check_contrast

    loaded = []
    for path, contrast in spine:
        check_contrast(contrast, path, allow_none=False)
        loaded.append((load_volume(path, role=f"spinal {contrast.upper()}"), contrast))
    return loaded


def analyze_spinal_inputs(spinal: list[tuple[Volume, str]], out: Path | None) -> list:
    """Run the spinal-cord analysis on each image (outputs under OUT/spine/<n>/)."""
    from .spine import analyze_volume

    return [analyze_volume(vol, contrast, None if out is None else out / "spine" / str(i))
            for i, (vol, contrast) in enumerate(spinal)]


def merge_spine(report: Report | dict, spine_results: list, location_options: LocationOptions) -> None:
    """Add the cord lesions to the brain report: a spinal_cord region and one DIS verdict over both.

    A :class:`Report` is extended with :meth:`Report.add_spine`; a report.json dict is updated in place.
    """
    if isinstance(report, Report):
        report.add_spine(spine_results, location_options)
        return
    typed = Report.from_dict(report)
    typed.add_spine(spine_results, location_options)
    for key in ("regions", "mcdonald_dis", "spine"):
        report[key] = to_plain(typed[key])


def native_brain(pre: Preprocessed) -> np.ndarray:
    """The working-grid brain mask on the native FLAIR grid (linear interpolation, half-voxel rule)."""
    brain = pre.brain_mask
    return pre.to_native(brain.with_data(brain.data.astype(np.float32)), order=1).data >= 0.5


def brain_mask_summary(mask: Volume, lesions_outside: int | None = None) -> BrainMaskInfo:
    """How the brain was found (method, e.g. 'deepbet') and its volume in ml (intracranial, incl. CSF for deepbet);
    ``lesions_outside``: lesion candidates dropped for lying mostly outside it."""
    return BrainMaskInfo(method=str(mask.meta.get("brain_method", "head-foreground")),
                         volume_ml=round(float(np.count_nonzero(mask.data)) * mask.voxel_volume_ml, 1),
                         rim_trimmed_ml=mask.meta.get("rim_trimmed_ml"), lesions_outside_dropped=lesions_outside)


def build_report(vols: dict[str, Volume], seg: SegmenterInfo, threshold: float, lesions: list[Lesion],
                 location: LocationResult, timings: dict[str, float], opts: AnalyzeOptions) -> Report:
    """The subject report of an analysis (the one place it is built; spine, enhancement etc. extend it)."""
    return Report(
        lesion_count=len(lesions),
        total_volume_ml=round(float(sum(les.volume_ml for les in lesions)), 4),
        regions={name: RegionCount.from_dict(r) for name, r in location.regions.items()},
        mcdonald_dis=DisVerdict.from_dict(location.mcdonald_dis),
        inputs={name: InputInfo.of(v) for name, v in vols.items()},
        # the validated accuracy from the model card, so every report says how far to trust it
        model=ModelInfo.of(seg, threshold, min_peak=opts.min_peak_for(seg)),
        settings=Settings(min_lesion_mm3=opts.min_lesion_mm3, device=opts.device, tta=opts.tta, fp32=opts.fp32),
        timings_s={k: round(v, 3) for k, v in timings.items()},
        mslesion_version=__version__,
    )


def write_outputs(result: AnalysisResult, out: Path) -> None:
    """Write the outputs atomically (no probability map where there is none); report.json last, so it marks completion.

    Inside :func:`~mslesion.atomic.output_group` a previous run's outputs are
    removed first and the new ones appear together, so runs never mix.
    """
    from .volumes.outputs import OUTPUT_FILES as VOLUME_FILES
    from .volumes.outputs import write_volume_outputs

    with output_group(out, ("report.json", *OUTPUT_FILES, *VOLUME_FILES, ENHANCEMENT_MAP, "report.html")):
        save_volume(result.lesion_mask, out / "lesions.nii.gz", dtype=np.uint8)
        if result.probability is not None:
            save_volume(result.probability, out / "lesion_probability.nii.gz", dtype=np.float32)
        write_lesions_csv(out / "lesions.csv", result.lesions)
        if result.volumes is not None:
            write_volume_outputs(result.volumes, out)
        if result.enhancement_map is not None:
            save_volume(result.enhancement_map, out / ENHANCEMENT_MAP, dtype=np.uint8)
        write_subject_qc(result, out)  # report.html + qc/*.png, before report.json
        write_report(out / "report.json", result.report)


def analyze(flair: str | Path, t1: str | Path | None = None, t2: str | Path | None = None,
            out_dir: str | Path | None = None, options: AnalyzeOptions | None = None,
            t1post: str | Path | None = None) -> AnalysisResult:
    """One-shot convenience: load the model, analyse one subject."""
    inputs = {"flair": flair, "t1": t1, "t2": t2, "t1post": t1post}
    contrasts = {k for k, v in inputs.items() if v}
    return Analyzer(options, contrasts=contrasts).run(inputs, out_dir)
