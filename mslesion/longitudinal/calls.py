"""The entries of compare_report.json that describe single changes: the change calls with their evidence
(``change_calls``, the DIT verdict's supporting and enlarging lesions) and the candidates the scans did not support."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ..lesions import Lesion
from ..report import Section
from .change import ChangeComponent


@dataclass
class ChangeEvidence(Section):
    """The two-scan evidence of a change call (robust-z FLAIR units; see ``compare._evidence_columns``)."""

    flair_difference: float | None = None
    difference_significance: float | None = None
    flair_where_bright: float | None = None
    flair_where_normal: float | None = None
    support_mm3: float | None = None
    resolved_fraction: float | None = None
    lesion_probability: float | None = None

    @classmethod
    def of(cls, les: Lesion) -> "ChangeEvidence":
        """From a change lesion's columns (None where it lacks one)."""
        return cls(**{k: les.extra.get(k) for k in EVIDENCE_COLUMNS})

    @classmethod
    def from_dict(cls, d: "ChangeEvidence | Mapping[str, Any]") -> "ChangeEvidence":
        return d if isinstance(d, ChangeEvidence) else cls._from_fields(d)


#: the evidence columns of a change lesion, in report order
EVIDENCE_COLUMNS = tuple(f.name for f in fields(ChangeEvidence))


@dataclass
class ChangeCall(Section):
    """One change call (new, enlarging, shrinking, disappearing): id, volume, region, centroid (RAS mm), evidence."""

    id: int = 0
    change: str = ""
    volume_ml: float = 0.0
    region: str = ""
    centroid_mm: list[float] = field(default_factory=list)
    evidence: ChangeEvidence = field(default_factory=ChangeEvidence)

    @classmethod
    def of(cls, les: Lesion) -> "ChangeCall":
        """From a change lesion (one row of changes.csv)."""
        return cls(id=les.id, change=les.extra["change"], volume_ml=les.volume_ml, region=les.region,
                   centroid_mm=[les.centroid_x, les.centroid_y, les.centroid_z], evidence=ChangeEvidence.of(les))

    @classmethod
    def from_dict(cls, d: "ChangeCall | Mapping[str, Any]") -> "ChangeCall":
        """From a compare_report.json entry (fields it lacks read as missing)."""
        if isinstance(d, ChangeCall):
            return d
        return cls._from_fields(d, evidence=ChangeEvidence.from_dict(d.get("evidence") or {}))


@dataclass
class RejectedCandidate(Section):
    """A new or enlarging candidate the two scans did not support: its volume, why, and its difference."""

    change: str = ""
    volume_ml: float = 0.0
    #: the evidence checks it failed
    why: list[str] = field(default_factory=list)
    difference: float | None = None
    significance: float | None = None

    @classmethod
    def of(cls, cand: ChangeComponent) -> "RejectedCandidate":
        return cls(change=cand.kind, volume_ml=round(cand.change_mm3 / 1000, 5), why=cand.evidence.get("failed", []),
                   difference=cand.evidence.get("difference"), significance=cand.evidence.get("significance"))

    @classmethod
    def from_dict(cls, d: "RejectedCandidate | Mapping[str, Any]") -> "RejectedCandidate":
        if isinstance(d, RejectedCandidate):
            return d
        return cls._from_fields(d)
