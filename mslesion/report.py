"""The typed subject report (``report.json``), its lesion table and the files they are written to.

:class:`Report` is built in one place (:func:`mslesion.pipeline.build_report`) and extended by
the spine (:meth:`Report.add_spine`), the enhancement stage (``enhancement``, an
:class:`EnhancementSection`), the brain volumes (``volumes``, a :class:`VolumesSection`) and any
later section (``sections``).  :meth:`Report.to_dict` gives report.json with the
same keys, in the same order, as the nested dicts it replaces; ``report["key"]`` and
``report.get("key")`` still read like those dicts, and ``report["name"] = section`` adds a section.
"""
from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping, Protocol, Sequence, TypeVar

from .atomic import write_json, write_text
from .lesions import BASE_COLUMNS, Lesion


class SegmenterInfo(Protocol):
    """What a report says about the segmenter (a segmenter, or a stand-in for a given mask)."""

    @property
    def model_id(self) -> str: ...

    @property
    def kind(self) -> str: ...


_S = TypeVar("_S", bound="Section")


class Section:
    """A dataclass that serialises to a JSON object and reads like one (``s["key"]``, ``s.get``)."""

    #: fields left out of :meth:`to_dict` while they are None (sections a report may not have)
    OPTIONAL: ClassVar[tuple[str, ...]] = ()
    #: read from a report.json that lacked some fields (an older shape): the fields it had; the
    #: others read as missing (``"key" in s`` is False, ``s["key"]`` raises KeyError) and are not written
    _given: frozenset[str] | None = None
    #: field -> reader of its report.json object, for ``s["field"] = {...}`` (a typed section given as a dict)
    READERS: ClassVar[Mapping[str, Callable[[Mapping[str, Any]], Any]]] = {}

    @classmethod
    def _from_fields(cls: type[_S], d: Mapping[str, Any], **typed: Any) -> _S:
        """An instance from a report.json object's fields (``typed``: fields already read into their types);
        fields it lacks keep their defaults and read as missing (:meth:`_read_from`), unknown keys are dropped."""
        names = [f.name for f in fields(cls) if f.init]  # type: ignore[arg-type]
        kwargs = {k: d[k] for k in names if k in d}
        kwargs.update({k: v for k, v in typed.items() if k in d})
        return cls(**kwargs)._read_from(d)

    def _present(self) -> Iterator[str]:
        for f in fields(self):  # type: ignore[arg-type]
            if f.name == "sections":
                yield from getattr(self, "sections")
            elif self._given is not None and f.name not in self._given:
                continue
            elif not (f.name in self.OPTIONAL and getattr(self, f.name) is None):
                yield f.name

    def _read_from(self: _S, keys: Iterator[str] | Mapping[str, Any]) -> _S:
        """Note which fields a report.json gave (only where some are missing); returns self."""
        names = {f.name for f in fields(self)} - {"sections"}  # type: ignore[arg-type]
        given = frozenset(keys) & names
        if given != names:
            self._given = given
        return self

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (nested sections, lesions and tuples made plain)."""
        return {k: to_plain(self[k]) for k in self._present()}

    def __getitem__(self, key: str) -> Any:
        if key in (f.name for f in fields(self)) and key != "sections":  # type: ignore[arg-type]
            if self._given is not None and key not in self._given:
                raise KeyError(key)
            if not (key in self.OPTIONAL and getattr(self, key) is None):
                return getattr(self, key)
        extra = getattr(self, "sections", None)
        if isinstance(extra, dict) and key in extra:
            return extra[key]
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        """``report["key"] = value`` as on the dicts: a field is set, any other name becomes a further section."""
        if key in (f.name for f in fields(self)) and key != "sections":  # type: ignore[arg-type]
            reader = self.READERS.get(key)
            setattr(self, key, reader(value) if reader is not None and isinstance(value, Mapping) else value)
            return
        extra = getattr(self, "sections", None)
        if not isinstance(extra, dict):
            raise KeyError(f"{type(self).__name__} has no field {key!r}")
        extra[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in set(self._present())

    def keys(self) -> list[str]:
        return list(self._present())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


def to_plain(value: Any) -> Any:
    """JSON-ready copy of a report value: sections and lesions as dicts, tuples as lists."""
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, Lesion):
        return value.row()
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


@dataclass
class RegionCount(Section):
    """Lesions in one region: how many and their volume."""

    count: int = 0
    volume_ml: float = 0.0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | int) -> "RegionCount":
        """From a report.json region (an older report may give a bare count, or no volume)."""
        if not isinstance(d, Mapping):
            return cls(count=d)._read_from(iter(("count",)))
        return cls(count=d.get("count", 0), volume_ml=d.get("volume_ml", 0.0))._read_from(d)



@dataclass
class DisVerdict(Section):
    """McDonald 2017 dissemination in space (:func:`mslesion.location.dis_verdict`)."""

    met: bool = False
    areas_involved: list[str] = field(default_factory=list)
    qualifying_lesions_per_area: dict[str, int] = field(default_factory=dict)
    areas_not_assessed: list[str] = field(default_factory=list)
    min_areas: int = 2
    min_long_axis_mm: float = 3.0
    lesion_size_rule: str = ""
    rule: str = ""
    note: str = ""

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> "DisVerdict":
        """From :func:`mslesion.location.dis_verdict`'s dict."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "DisVerdict | None":
        """The verdict of a report.json (None where there is none: no object, or one without ``met``)."""
        if isinstance(d, DisVerdict):
            return d
        if not isinstance(d, Mapping) or "met" not in d:
            return None
        return cls.of(d)._read_from(d)


@dataclass
class InputInfo(Section):
    """One input image: where it was read from, its checksum and grid."""

    path: str | None
    sha256: str | None
    shape: list[int]
    voxel_size_mm: list[float]

    @classmethod
    def of(cls, vol: Any) -> "InputInfo":
        """From a :class:`~mslesion.volume.Volume` read from disk."""
        return cls(path=str(vol.path), sha256=sha256_of(vol.path) if vol.path else None, shape=list(vol.shape),
                   voxel_size_mm=[round(z, 4) for z in vol.zooms])

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "InputInfo":
        return cls(d.get("path"), d.get("sha256"), list(d.get("shape") or []), list(d.get("voxel_size_mm") or []))


@dataclass
class ModelInfo(Section):
    """The segmenter: id, kind, threshold, inference settings (trained models) and validated accuracy."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("min_peak", "inference")

    id: str | None
    kind: str | None
    threshold: float | None
    #: a lesion is kept only where its highest probability reaches this (0: off; None: no segmentation ran)
    min_peak: float | None = None
    inference: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None

    @classmethod
    def of(cls, seg: "SegmenterInfo", threshold: float, min_peak: float | None = None) -> "ModelInfo":
        """From a segmenter (``inference`` only where the segmenter has inference settings)."""
        inference = seg.inference_settings() if hasattr(seg, "inference_settings") else None
        return cls(id=seg.model_id, kind=seg.kind, threshold=threshold, min_peak=min_peak, inference=inference,
                   validation=getattr(seg, "validation", None))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelInfo":
        return cls(id=d.get("id"), kind=d.get("kind"), threshold=d.get("threshold"), min_peak=d.get("min_peak"),
                   inference=d.get("inference"), validation=d.get("validation"))


@dataclass
class Settings(Section):
    """The analysis settings that change the result."""

    min_lesion_mm3: float
    device: str
    tta: bool | None
    fp32: bool


@dataclass
class BrainMaskInfo(Section):
    """How the brain was found and its volume (ml)."""

    method: str | None
    volume_ml: float | None
    #: ml of bright scalp trimmed from the extractor's mask (images with skull; None: not trimmed)
    rim_trimmed_ml: float | None = None
    #: lesion candidates dropped for lying mostly (> 50 %) outside the mask (None: not checked)
    lesions_outside_dropped: int | None = None


@dataclass
class SpineSummary(Section):
    """One spinal image of ``analyze --spine``: its cord lesions and where its own outputs are."""

    image: str
    lesion_count: int
    lesions: list[Lesion]
    out_dir: str | None


@dataclass
class LesionMaskInput(Section):
    """``mslesion report``: the lesion mask given, and what resampling it onto the FLAIR did (or None)."""

    path: str | None
    sha256: str | None
    resampled: dict[str, Any] | None


@dataclass
class SingleVisitDit(Section):
    """McDonald 2017 dissemination in time on one scan: enhancing and non-enhancing lesions side by side.

    ``met`` is None where it was not assessed (no post-contrast T1), never False; ``reason`` says why.
    """

    OPTIONAL: ClassVar[tuple[str, ...]] = ("enhancing_lesions", "non_enhancing_lesions", "reason")

    assessed: bool = False
    met: bool | None = None
    enhancing_lesions: int | None = None
    non_enhancing_lesions: int | None = None
    statement: str = ""
    #: why it was not assessed
    reason: str | None = None

    @classmethod
    def from_dict(cls, d: "SingleVisitDit | Mapping[str, Any]") -> "SingleVisitDit":
        return d if isinstance(d, SingleVisitDit) else cls._from_fields(d)


@dataclass
class ReferenceT1(Section):
    """Pre-contrast T1 of the reference tissues (normal-appearing white matter, CSF) the calls are scaled by."""

    nawm: float = 0.0
    csf: float = 0.0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ReferenceT1":
        return cls._from_fields(d)


@dataclass
class EnhancingFocusRow(Section):
    """An enhancing focus outside the FLAIR lesions: centroid in world (RAS) mm, volume, peak z, shape."""

    centroid_mm: list[float] = field(default_factory=list)
    volume_mm3: float = 0.0
    z_max: float = 0.0
    elongation: float = 1.0
    flair_z: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EnhancingFocusRow":
        return cls._from_fields(d)


@dataclass
class PostContrastCheckInfo(Section):
    """The checks of the post-contrast T1 (:mod:`mslesion.enhancement_checks`): where ``usable`` is false,
    enhancement was not assessed and ``problems`` say why."""

    usable: bool = True
    rank_correlation: float | None = None
    normal_enhancement_fraction: float | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PostContrastCheckInfo":
        return cls._from_fields(d, problems=list(d.get("problems") or []), notes=list(d.get("notes") or []))


@dataclass
class EnhancementSection(Section):
    """Gadolinium enhancement, T1 black holes and single-visit dissemination in time
    (:func:`mslesion.enhancement_stage.assess_subject`, where it is built).

    The counts are left out of report.json where they were not assessed (no T1: no black holes;
    no post-contrast T1: no enhancement counts or foci).
    """

    OPTIONAL: ClassVar[tuple[str, ...]] = ("black_holes", "reference_t1", "enhancing_lesions",
                                           "non_enhancing_lesions", "enhancing_foci_outside_lesions",
                                           "post_contrast_check")

    #: the a-priori thresholds (:class:`mslesion.enhancement.EnhancementRules`)
    rules: dict[str, Any] = field(default_factory=dict)
    t1_hypointensity_assessed: bool = False
    enhancement_assessed: bool = False
    black_holes: int | None = None
    reference_t1: ReferenceT1 | None = None
    enhancing_lesions: int | None = None
    non_enhancing_lesions: int | None = None
    enhancing_foci_outside_lesions: list[EnhancingFocusRow] | None = None
    dissemination_in_time: SingleVisitDit = field(default_factory=SingleVisitDit)
    #: the checks of the post-contrast T1 (None without one)
    post_contrast_check: PostContrastCheckInfo | None = None

    @classmethod
    def from_dict(cls, d: "EnhancementSection | Mapping[str, Any]") -> "EnhancementSection":
        """From a report.json ``enhancement`` object (fields it lacks read as missing)."""
        if isinstance(d, EnhancementSection):
            return d
        ref, foci, dit = d.get("reference_t1"), d.get("enhancing_foci_outside_lesions"), d.get("dissemination_in_time")
        return cls._from_fields(
            d, rules=dict(d.get("rules") or {}),
            reference_t1=None if ref is None else ReferenceT1.from_dict(ref),
            enhancing_foci_outside_lesions=None if foci is None else [EnhancingFocusRow.from_dict(f) for f in foci],
            dissemination_in_time=SingleVisitDit.from_dict(dit or {}),
            post_contrast_check=None if d.get("post_contrast_check") is None
            else PostContrastCheckInfo.from_dict(d["post_contrast_check"]))


@dataclass
class MriDissemination(Section):
    """McDonald 2017 dissemination in space AND in time from this MRI (report.json ``mri_dissemination``).

    ``met`` is True when both are shown, False when either is not met, None when DIS is met and DIT was not
    assessed (no usable post-contrast T1) or DIS was not assessed. An MRI research measure, not a diagnosis.
    """

    met: bool | None = None
    dissemination_in_space: bool | None = None
    dissemination_in_time: bool | None = None
    statement: str = ""

    @classmethod
    def of(cls, dis: DisVerdict | None, dit: SingleVisitDit | None) -> "MriDissemination":
        """The combined statement of a DIS verdict and a single-visit DIT (either may be missing)."""
        space = None if dis is None else bool(dis.met)
        in_time = None if dit is None or not dit.assessed else bool(dit.met)
        met = False if False in (space, in_time) else (True if (space, in_time) == (True, True) else None)
        parts = ["dissemination in space " + {True: f"met ({', '.join(dis.areas_involved)})" if dis else "met",
                                              False: "not met", None: "not assessed"}[space]]
        if in_time is None:
            why = dit.reason if dit is not None and dit.reason else "no post-contrast T1 given"
            parts.append(f"dissemination in time not assessed from this scan ({why})")
        else:
            parts.append("dissemination in time " + ("shown (enhancing and non-enhancing lesions at once)" if in_time
                                                     else "not shown on this scan"))
        if met is not True and space is True:
            parts.append("a follow-up scan (mslesion compare) or a post-contrast T1 can show dissemination in time")
        head = {True: "MRI shows dissemination in space and in time (McDonald 2017)",
                False: "MRI does not show dissemination in space and in time (McDonald 2017)",
                None: "MRI dissemination in space and in time not fully assessed (McDonald 2017)"}[met]
        return cls(met, space, in_time, f"{head}: " + "; ".join(parts) + ". An MRI research measure, not a diagnosis.")

    @classmethod
    def from_dict(cls, d: "MriDissemination | Mapping[str, Any]") -> "MriDissemination":
        return d if isinstance(d, MriDissemination) else cls._from_fields(d)


#: the labels of the tissue map (tissue_dseg.nii.gz), as report.json gives them
TISSUE_LABELS = {"0": "outside ICV", "1": "CSF", "2": "GM", "3": "WM", "4": "lesion"}


@dataclass
class VolumesSection(Section):
    """Brain volumes (ml; None where not finite, e.g. an empty ICV), how they were found and their caveats
    (built by :meth:`mslesion.volumes.TissueVolumes.section`)."""

    icv_ml: float | None = None
    brain_ml: float | None = None
    gm_ml: float | None = None
    wm_ml: float | None = None
    csf_ml: float | None = None
    lesion_ml: float | None = None
    bpf: float | None = None
    lesion_pct_icv: float | None = None
    method: str = ""
    #: the contrasts the tissue classes were found on
    inputs: list[str] = field(default_factory=list)
    icv_source: str = ""
    priors: str = ""
    caveats: list[str] = field(default_factory=list)
    seconds: float = 0.0
    labels: dict[str, str] = field(default_factory=lambda: dict(TISSUE_LABELS))

    @classmethod
    def from_dict(cls, d: "VolumesSection | Mapping[str, Any]") -> "VolumesSection":
        """From a report.json ``volumes`` object (fields it lacks read as missing)."""
        if isinstance(d, VolumesSection):
            return d
        return cls._from_fields(d, inputs=list(d.get("inputs") or []), caveats=list(d.get("caveats") or []),
                                labels=dict(d.get("labels") or {}))


@dataclass
class VolumeChange(Section):
    """Brain volume and BPF change between two scans (compare_report.json ``volume_change``; built by
    :func:`mslesion.volumes.outputs.volume_change`); None where not finite."""

    brain_ml_change: float | None = None
    brain_pct_change: float | None = None
    bpf_change: float | None = None
    icv_ml_change: float | None = None
    #: each scan's numeric volumes (:data:`mslesion.volumes.outputs.NUMBERS`)
    baseline: dict[str, float | None] = field(default_factory=dict)
    followup: dict[str, float | None] = field(default_factory=dict)
    method: str = ""
    caveats: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: "VolumeChange | Mapping[str, Any]") -> "VolumeChange":
        """From a compare_report.json ``volume_change`` object (fields it lacks read as missing)."""
        if isinstance(d, VolumeChange):
            return d
        return cls._from_fields(d, baseline=dict(d.get("baseline") or {}), followup=dict(d.get("followup") or {}),
                                caveats=list(d.get("caveats") or []))


@dataclass
class Report(Section):
    """report.json of one subject (``analyze`` and ``report``).

    Optional sections are left out of report.json while None; ``sections`` holds further named
    sections written after the others, in the order they were added.
    """

    OPTIONAL: ClassVar[tuple[str, ...]] = ("brain_mask", "enhancement", "mri_dissemination", "spine",
                                           "lesion_mask_input", "volumes", "batch")
    READERS: ClassVar[Mapping[str, Callable[[Mapping[str, Any]], Any]]] = {
        "enhancement": EnhancementSection.from_dict, "volumes": VolumesSection.from_dict,
        "mri_dissemination": MriDissemination.from_dict}

    lesion_count: int | None
    total_volume_ml: float | None
    regions: dict[str, RegionCount]
    mcdonald_dis: DisVerdict | None
    inputs: dict[str, InputInfo]
    model: ModelInfo
    settings: Settings | dict[str, Any]
    timings_s: dict[str, float]
    mslesion_version: str | None
    brain_mask: BrainMaskInfo | None = None
    enhancement: EnhancementSection | None = None
    #: DIS and single-visit DIT together (:meth:`state_dissemination`; where enhancement was looked at)
    mri_dissemination: MriDissemination | None = None
    spine: list[SpineSummary] | None = None
    lesion_mask_input: LesionMaskInput | None = None
    #: brain volumes (before ``batch``: the batch runner adds ``batch`` last)
    volumes: VolumesSection | None = None
    #: set by the batch runner (subject, session, outputs, ...)
    batch: dict[str, Any] | None = None
    #: further sections, by name, written last
    sections: dict[str, Any] = field(default_factory=dict)

    def add_spine(self, spine_results: Sequence[Any], location_options: Any = None) -> None:
        """Add the cord lesions: a spinal_cord region, one DIS verdict over brain and cord, a spine list."""
        from .location.dis import dis_verdict

        cord_lesions = [les for res in spine_results for les in res.lesions]
        qualifying = sum(res.report.mcdonald_dis.qualifying_lesions_per_area.get("spinal_cord", 0)
                         for res in spine_results)
        self.regions = dict(self.regions)
        self.regions["spinal_cord"] = RegionCount(
            count=len(cord_lesions), volume_ml=round(sum(float(les.volume_mm3) for les in cord_lesions) / 1000.0, 5))
        brain = self.mcdonald_dis
        counts = {} if brain is None else {
            k: int(v) for k, v in brain.qualifying_lesions_per_area.items()
            if k not in brain.areas_not_assessed and k != "spinal_cord"}
        counts["spinal_cord"] = int(qualifying)
        self.mcdonald_dis = DisVerdict.of(dis_verdict(counts, location_options))
        self.spine = [SpineSummary(image=str(res.report.image.get("path")), lesion_count=len(res.lesions),
                                   lesions=list(res.lesions), out_dir=None if res.out_dir is None else str(res.out_dir))
                      for res in spine_results]
        if self.mri_dissemination is not None:
            self.state_dissemination()

    def state_dissemination(self) -> None:
        """Set ``mri_dissemination`` from the DIS verdict and the enhancement section's single-visit DIT."""
        dit = None if self.enhancement is None else self.enhancement.dissemination_in_time
        self.mri_dissemination = MriDissemination.of(self.mcdonald_dis, dit)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Report":
        """Read a report.json (unknown keys kept in ``sections``; missing ones empty)."""
        known = {f.name for f in fields(cls)} - {"sections"}
        settings = d.get("settings") or {}
        spine = d.get("spine")
        brain = d.get("brain_mask")
        mask_in = d.get("lesion_mask_input")
        regions = d.get("regions") or {}
        return cls(
            lesion_count=d.get("lesion_count"), total_volume_ml=d.get("total_volume_ml"),
            regions={k: RegionCount.from_dict(v) for k, v in regions.items()},
            mcdonald_dis=DisVerdict.from_dict(d.get("mcdonald_dis")),
            inputs={k: InputInfo.from_dict(v) for k, v in (d.get("inputs") or {}).items()},
            model=ModelInfo.from_dict(d.get("model") or {}),
            settings=dict(settings), timings_s=dict(d.get("timings_s") or {}),
            mslesion_version=d.get("mslesion_version"),
            brain_mask=BrainMaskInfo(brain.get("method"), brain.get("volume_ml"), brain.get("rim_trimmed_ml"),
                                       brain.get("lesions_outside_dropped")) if brain else None,
            enhancement=None if d.get("enhancement") is None else EnhancementSection.from_dict(d["enhancement"]),
            mri_dissemination=None if d.get("mri_dissemination") is None
            else MriDissemination.from_dict(d["mri_dissemination"]),
            spine=None if spine is None else [SpineSummary(s.get("image", ""), s.get("lesion_count", 0),
                                                           list(s.get("lesions") or []), s.get("out_dir"))
                                              for s in spine],
            lesion_mask_input=LesionMaskInput(mask_in.get("path"), mask_in.get("sha256"),
                                              mask_in.get("resampled")) if mask_in else None,
            volumes=None if d.get("volumes") is None else VolumesSection.from_dict(d["volumes"]),
            batch=d.get("batch"),
            sections={k: v for k, v in d.items() if k not in known})


def as_report(report: Report | Mapping[str, Any]) -> Report:
    """``report`` as a :class:`Report` (a report.json dict is read with :meth:`Report.from_dict`)."""
    return report if isinstance(report, Report) else Report.from_dict(report)


def sha256_of(path: str | Path) -> str:
    """sha256 of a file, or of every file in a folder (sorted by name) for DICOM series."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def lesions_csv_text(lesions: Sequence[Lesion], columns: Sequence[str] | None = None) -> str:
    """The lesion table as CSV: ``columns`` (default: the lesions' own) first, then any extra columns."""
    rows = [les.row() for les in lesions]
    if columns is None:
        columns = lesions[0].COLUMNS if lesions else BASE_COLUMNS
    header = list(columns)
    for r in rows:
        header += [k for k in r if k not in header]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    return buf.getvalue()


def write_lesions_csv(path: str | Path, lesions: Sequence[Lesion], columns: Sequence[str] | None = None) -> Path:
    return write_text(path, lesions_csv_text(lesions, columns))


def write_report(path: str | Path, report: Section | Mapping[str, Any]) -> Path:
    return write_json(path, to_plain(report))


@dataclass
class SpineReport(Section):
    """report.json of one spinal image (``mslesion spine``, and each ``analyze --spine`` image)."""

    kind: str
    #: path, contrast (and how it was chosen), shape, voxel size
    image: dict[str, Any]
    #: volume, slices, length, cross-sectional area per level, plausibility features
    cord: dict[str, Any]
    #: where the vertebral levels came from (or why there are none), levels covered, discs
    levels: dict[str, Any]
    lesion_count: int
    total_lesion_volume_mm3: float
    regions: dict[str, RegionCount]
    mcdonald_dis: DisVerdict
    method: dict[str, str]
    mslesion_version: str
    timings_s: dict[str, float] = field(default_factory=dict)
