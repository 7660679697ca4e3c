"""The typed comparison report (``compare_report.json``), as :class:`mslesion.report.Report` is for ``analyze``.

:class:`CompareReport` is built in one place (:meth:`CompareReport.build`, called by
:func:`mslesion.longitudinal.compare_scans`) and extended by the brain-volume change
(``volume_change``) and the QC page (``qc_html``, set by the writer).  :meth:`CompareReport.to_dict`
gives compare_report.json with the same keys, in the same order, as the dict it replaces;
``report["key"]`` and ``report.get("key")`` still read like that dict.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from .. import __version__
from ..lesions import Lesion
from ..location import LocationResult
from ..report import InputInfo, RegionCount, Section, SegmenterInfo, VolumeChange
from ..volume import Volume
from .calls import ChangeCall
from .change import KINDS, ChangeMaps
from .transforms import rigid_parameters
from .verdict import MEANING, DitVerdict, dit_verdict


@dataclass
class ChangeCount(Section):
    """How many changes of one kind (new, enlarging, ...) and their volume (ml)."""

    count: int = 0
    volume_ml: float = 0.0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ChangeCount":
        """From a compare_report.json object (fields it lacks read as missing)."""
        return cls._from_fields(d)


@dataclass
class Registration(Section):
    """The follow-up -> baseline transform (RAS, 4x4) and its rigid parameters."""

    followup_to_baseline_ras: list[list[float]] = field(default_factory=list)
    rotation_deg: float = 0.0
    translation_mm: float = 0.0

    @classmethod
    def of(cls, transform: np.ndarray) -> "Registration":
        """From a 4x4 world transform (rounded to 6 decimals)."""
        return cls(followup_to_baseline_ras=np.round(transform, 6).tolist(), **rigid_parameters(transform))

    @classmethod
    def from_dict(cls, d: "Registration | Mapping[str, Any]") -> "Registration":
        """From a compare_report.json object (fields it lacks read as missing)."""
        return d if isinstance(d, Registration) else cls._from_fields(d)


@dataclass
class NewLesionEvidence(Section):
    """Whether the follow-up shows a new T2 lesion, and the dissemination-in-time verdict behind it."""

    new_t2_lesion: bool
    new_lesions: int
    enlarging_lesions: int
    #: :func:`mslesion.longitudinal.verdict.dit_verdict`: verdict, reason, supporting lesions, ...
    dissemination_in_time: DitVerdict
    meaning: str = MEANING


@dataclass
class CompareModelInfo(Section):
    """The segmenter of both time points and the probability threshold."""

    id: str | None
    kind: str | None
    threshold: float | None


@dataclass
class CompareSettings(Section):
    """The comparison settings that change the result, and the noise level and evidence levels found."""

    change: dict[str, Any]
    device: str
    min_lesion_mm3: float
    noise_sigma: float
    evidence_levels: Any


@dataclass
class CompareReport(Section):
    """compare_report.json of one baseline/follow-up pair (``mslesion compare``).

    ``volume_change`` and ``qc_html`` are left out while None; ``sections`` holds any further
    named sections, written last in the order they were added.
    """

    OPTIONAL: ClassVar[tuple[str, ...]] = ("volume_change", "qc_html")
    READERS: ClassVar[Mapping[str, Callable[[Mapping[str, Any]], Any]]] = {
        "registration": Registration.from_dict, "volume_change": VolumeChange.from_dict}

    changes: dict[str, ChangeCount]
    new_or_enlarging_count: int
    new_or_enlarging_volume_ml: float
    #: change kind -> region -> number of changes
    regions_by_change: dict[str, dict[str, int]]
    regions: dict[str, RegionCount]
    # dissemination in space is a property of all lesions at one time point (see `analyze`),
    # not of the changes, so it is deliberately not reported here
    new_lesion_evidence: NewLesionEvidence
    #: change kind -> number of candidates the two scans did not support
    rejected_candidates: dict[str, int]
    change_calls: list[ChangeCall]
    registration: Registration
    inputs: dict[str, InputInfo]
    model: CompareModelInfo
    settings: CompareSettings
    timings_s: dict[str, float]
    mslesion_version: str | None
    #: brain volume and BPF change between the time points (:func:`mslesion.volumes.outputs.compare_volumes`)
    volume_change: VolumeChange | None = None
    #: file name of the QC page, set when it was written
    qc_html: str | None = None
    sections: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, vols0: Mapping[str, Volume], vols1: Mapping[str, Volume], seg: SegmenterInfo, threshold: float,
              changes: ChangeMaps, lesions: list[Lesion], location: LocationResult, transform: np.ndarray,
              timings: Mapping[str, float], change_options: Any, device: str,
              min_lesion_mm3: float) -> "CompareReport":
        """The report of a comparison (the one place it is built)."""
        summary = {kind: ChangeCount(count=changes.count(kind), volume_ml=round(changes.volume_mm3(kind) / 1000, 4))
                   for kind in KINDS.values()}
        regions: dict[str, dict[str, int]] = {}
        for les in lesions:
            kind = les.extra["change"]
            regions.setdefault(kind, {})
            regions[kind][les.region] = regions[kind].get(les.region, 0) + 1
        n_new = summary["new"].count
        dit = dit_verdict(changes, lesions)
        rejected: dict[str, int] = {}
        for cand in changes.rejected:
            rejected[cand.kind] = rejected.get(cand.kind, 0) + 1
        return cls(
            changes=summary,
            new_or_enlarging_count=n_new + summary["enlarging"].count,
            new_or_enlarging_volume_ml=round(summary["new"].volume_ml + summary["enlarging"].volume_ml, 4),
            regions_by_change=regions,
            regions={name: RegionCount.from_dict(r) for name, r in location.regions.items()},
            new_lesion_evidence=NewLesionEvidence(new_t2_lesion=dit.met, new_lesions=n_new,
                                                  enlarging_lesions=summary["enlarging"].count,
                                                  dissemination_in_time=dit),
            rejected_candidates=rejected,
            change_calls=[ChangeCall.of(les) for les in lesions],
            registration=Registration.of(transform),
            inputs={f"{when}_{name}": InputInfo.of(v)
                    for when, vols in (("baseline", vols0), ("followup", vols1)) for name, v in vols.items()},
            model=CompareModelInfo(id=seg.model_id, kind=seg.kind, threshold=threshold),
            settings=CompareSettings(change=asdict(change_options), device=device, min_lesion_mm3=min_lesion_mm3,
                                     noise_sigma=round(changes.noise_sigma, 5), evidence_levels=changes.levels),
            timings_s={k: round(v, 3) for k, v in timings.items()},
            mslesion_version=__version__,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CompareReport":
        """Read a compare_report.json (unknown keys kept in ``sections``; missing ones empty)."""
        known = {f for f in cls.__dataclass_fields__} - {"sections"}
        evidence = dict(d.get("new_lesion_evidence") or {})
        model = d.get("model") or {}
        settings = d.get("settings") or {}
        return cls(
            changes={k: ChangeCount.from_dict(v) for k, v in (d.get("changes") or {}).items()},
            new_or_enlarging_count=d.get("new_or_enlarging_count", 0),
            new_or_enlarging_volume_ml=d.get("new_or_enlarging_volume_ml", 0.0),
            regions_by_change=dict(d.get("regions_by_change") or {}),
            regions={k: RegionCount.from_dict(v) for k, v in (d.get("regions") or {}).items()},
            new_lesion_evidence=NewLesionEvidence(
                new_t2_lesion=evidence.get("new_t2_lesion", False), new_lesions=evidence.get("new_lesions", 0),
                enlarging_lesions=evidence.get("enlarging_lesions", 0),
                dissemination_in_time=DitVerdict.from_dict(evidence.get("dissemination_in_time") or {}),
                meaning=evidence.get("meaning", MEANING))._read_from(evidence),
            rejected_candidates=dict(d.get("rejected_candidates") or {}),
            change_calls=[ChangeCall.from_dict(c) for c in d.get("change_calls") or []],
            registration=Registration.from_dict(d.get("registration") or {}),
            inputs={k: InputInfo.from_dict(v) for k, v in (d.get("inputs") or {}).items()},
            model=CompareModelInfo(model.get("id"), model.get("kind"), model.get("threshold")),
            settings=CompareSettings(change=dict(settings.get("change") or {}), device=settings.get("device", ""),
                                     min_lesion_mm3=settings.get("min_lesion_mm3", 0.0),
                                     noise_sigma=settings.get("noise_sigma", 0.0),
                                     evidence_levels=settings.get("evidence_levels")),
            timings_s=dict(d.get("timings_s") or {}),
            mslesion_version=d.get("mslesion_version"),
            volume_change=None if d.get("volume_change") is None else VolumeChange.from_dict(d["volume_change"]),
            qc_html=d.get("qc_html"),
            sections={k: v for k, v in d.items() if k not in known})._read_from(d)
