"""Files written by ``mslesion compare`` (all atomic; the report is written last)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..io import save_volume
from ..report import to_plain, write_lesions_csv, write_report
from .result import CompareResult

if TYPE_CHECKING:
    from ..preprocess import Preprocessed
    from ..volume import Volume

log = logging.getLogger(__name__)


def write_compare_outputs(result: "CompareResult", out: Path, pre0: "Preprocessed", follow: "Volume") -> None:
    """Masks on both native grids, the change table, QC page (when available) and compare_report.json.

    ``follow`` is the follow-up FLAIR registered onto ``pre0``'s working grid (for the QC figure).
    """
    save_volume(result.new_enlarging_baseline, out / "new_enlarging_baseline.nii.gz", dtype=np.uint8)
    save_volume(result.new_enlarging_followup, out / "new_enlarging_followup.nii.gz", dtype=np.uint8)
    save_volume(result.kinds_baseline, out / "changes_baseline.nii.gz", dtype=np.uint8)
    save_volume(result.kinds_followup, out / "changes_followup.nii.gz", dtype=np.uint8)
    if result.labels_baseline is not None:
        save_volume(result.labels_baseline, out / "change_labels_baseline.nii.gz", dtype=np.int16)
    write_lesions_csv(out / "changes.csv", result.lesions)
    try:
        result.report.qc_html = write_qc(result, out, pre0, follow).name
    except ImportError:
        log.info("QC page skipped: mslesion.qc.write_report_html is not available")
    write_report(out / "compare_report.json", result.report)


def write_qc(result: "CompareResult", out: Path, pre0: "Preprocessed", follow: "Volume") -> Path:
    """``compare_report.html``: baseline vs registered follow-up with new/enlarging lesions outlined."""
    from ..qc import compare_figure, write_report_html  # ImportError until the QC module exists

    kinds = result.changes.kinds
    new = pre0.flair.with_data(np.isin(kinds, (1, 2)).astype(np.uint8))
    gone = pre0.flair.with_data(np.isin(kinds, (3, 4)).astype(np.uint8))
    png = compare_figure(pre0.flair, follow, out / "qc" / "compare.png", new_lesions=new, baseline_lesions=gone,
                         title="Baseline vs follow-up (registered to baseline)")
    rows = [les.row() for les in result.lesions]
    rep = result.report
    evidence = rep.new_lesion_evidence
    dit = evidence.dissemination_in_time
    summary = {"changes": to_plain(rep.changes),
               "new_lesion_evidence": {"new_t2_lesion": evidence.new_t2_lesion,
                                       "dissemination_in_time": dit.verdict, "why": dit.reason,
                                       "supporting_lesion_ids": [e.id for e in dit.supporting_lesions]},
               "rejected_candidates": rep.rejected_candidates,
               "registration": {"rotation_deg": rep.registration.rotation_deg,
                                "translation_mm": rep.registration.translation_mm},
               "model": rep.model.to_dict()}
    return write_report_html(out, "mslesion compare", summary, rows,
                             [("red: new or enlarging; existing-lesion colour: shrinking or disappearing", png)],
                             filename="compare_report.html", note=evidence.meaning)
