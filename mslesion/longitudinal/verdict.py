"""Dissemination-in-time verdict of a comparison, with the lesions that support it (issue 21).

McDonald 2017: dissemination in time can be shown by "a new T2-hyperintense or
gadolinium-enhancing lesion on follow-up MRI, with reference to a baseline scan".  Here only
FLAIR pairs are compared, so the verdict rests on *new* lesions whose evidence both scans
support (:mod:`.evidence`) and whose change is at least 3 mm across (``MIN_LESION_MM3``, the
usual minimum size of an MS lesion).  Enlarging lesions are listed as activity but do not
count (McDonald 2017 names new lesions).  Candidates the scans did not support (faint or
unsupported changes) are listed with the reason and never count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..lesions import Lesion
from ..report import Section
from .calls import ChangeCall, RejectedCandidate
from .change import ChangeMaps

#: volume of a 3 mm sphere: a new lesion smaller than that does not count for DIT
MIN_LESION_MM3 = 14.1

MEANING = ("MRI research measure of dissemination in time: at least one new T2-hyperintense lesion on the "
           "follow-up compared with the baseline (McDonald 2017 DIT wording), each supported by both scans "
           "(follow-up FLAIR lesion-like, baseline FLAIR normal-appearing there, clear positive FLAIR difference "
           "standing out of the local noise). Automated, not a diagnosis; confirm on the images.")


@dataclass
class DitVerdict(Section):
    """Dissemination in time from a comparison (compare_report.json ``new_lesion_evidence.dissemination_in_time``)."""

    #: "met" or "not met"
    verdict: str = "not met"
    reason: str = ""
    #: the new lesions that count
    supporting_lesions: list[ChangeCall] = field(default_factory=list)
    enlarging_lesions_not_counted: list[ChangeCall] = field(default_factory=list)
    #: candidates the two scans did not support (the largest ``max_listed``), with why
    rejected_candidates: list[RejectedCandidate] = field(default_factory=list)
    rejected_candidates_total: int = 0
    rule: str = ""

    @property
    def met(self) -> bool:
        return self.verdict == "met"

    @classmethod
    def from_dict(cls, d: "DitVerdict | Mapping[str, Any]") -> "DitVerdict":
        """From a compare_report.json object (fields it lacks read as missing)."""
        if isinstance(d, DitVerdict):
            return d
        return cls._from_fields(
            d, **{k: [ChangeCall.from_dict(e) for e in d.get(k) or []]
                  for k in ("supporting_lesions", "enlarging_lesions_not_counted")},
            rejected_candidates=[RejectedCandidate.from_dict(e) for e in d.get("rejected_candidates") or []])


def dit_verdict(changes: ChangeMaps, lesions: list[Lesion], max_listed: int = 30) -> DitVerdict:
    """The verdict (``met`` or ``not met``), why, and the lesions and candidates behind it, for the report."""
    new = [les for les in lesions if les.extra.get("change") == "new" and les.extra.get("evidence_supported")]
    unsupported = [les for les in lesions
                   if les.extra.get("change") == "new" and not les.extra.get("evidence_supported")]
    counted = [les for les in new if les.volume_ml * 1000 >= MIN_LESION_MM3]
    small = [les for les in new if les.volume_ml * 1000 < MIN_LESION_MM3]
    enlarging = [les for les in lesions if les.extra.get("change") == "enlarging"]
    faint = [c for c in changes.rejected if c.kind in ("new", "enlarging")]
    if counted:
        reason = (f"{len(counted)} new lesion(s) of at least {MIN_LESION_MM3:g} mm^3, each supported by both scans")
    elif faint or small or enlarging or unsupported:
        reason = ("no new lesion supported by both scans: only "
                  + ", ".join(p for p in (f"{len(faint)} faint or unsupported candidate(s)" if faint else "",
                                          f"{len(small)} new lesion(s) under {MIN_LESION_MM3:g} mm^3" if small else "",
                                          f"{len(unsupported)} new call(s) without two-scan evidence "
                                          "(evidence not required)" if unsupported else "",
                                          f"{len(enlarging)} enlarging lesion(s) (not counted)" if enlarging else "")
                                if p))
    else:
        reason = "no new or enlarging lesion found"
    return DitVerdict(
        verdict="met" if counted else "not met",
        reason=reason,
        supporting_lesions=[ChangeCall.of(les) for les in counted],
        enlarging_lesions_not_counted=[ChangeCall.of(les) for les in enlarging],
        rejected_candidates=[RejectedCandidate.of(c) for c in sorted(faint, key=lambda c: -c.change_mm3)[:max_listed]],
        rejected_candidates_total=len(faint),
        rule=f"new lesion supported by both scans and >= {MIN_LESION_MM3:g} mm^3 (3 mm sphere)",
    )
