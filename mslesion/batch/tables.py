"""Cohort and failures tables, assembled from the per-subject reports."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Mapping

from ..atomic import write_text
from ..report import EnhancementSection, Report, as_report
from ..volumes.outputs import cohort_columns as volume_columns

COHORT_BASE = ["subject", "session", "lesion_count", "total_volume_ml"]
COHORT_TAIL = ["model_id", "model_kind", "seconds", "finished_utc", "report"]
DIS_TEXT = ("rule", "note")  # long constant explanations: in the reports, not in every table row
FAILURE_COLUMNS = ["subject", "session", "key", "error", "reason", "log"]


def cohort_row(report: Report | Mapping[str, Any], report_path: Path | None = None) -> dict:
    """One cohort row from a subject report: counts, volumes, per-region counts/volumes, DIS.

    ``report`` is a :class:`~mslesion.report.Report` or a report.json dict, read with
    :meth:`Report.from_dict` (older shapes too: a region as a bare count or without a volume,
    a verdict lacking fields; what a report does not have gives no column).
    """
    rep = as_report(report)
    batch = rep.batch or {}
    row: dict = {"subject": batch.get("subject"), "session": batch.get("session") or "",
                 "lesion_count": rep.lesion_count, "total_volume_ml": rep.total_volume_ml}
    for region, info in sorted(rep.regions.items()):
        row[f"{region}_count"] = info.get("count")
        if "volume_ml" in info:
            row[f"{region}_volume_ml"] = round(float(info.volume_ml), 4)
    if rep.mcdonald_dis is not None:
        dis = {k: v for k, v in rep.mcdonald_dis.to_dict().items() if k not in DIS_TEXT}
        row.update(_flatten("dis", dis))
    enh = rep.enhancement or EnhancementSection()
    dit = enh.dissemination_in_time
    row.update(enhancing_lesions=enh.get("enhancing_lesions", ""), black_holes=enh.get("black_holes", ""),
               enhancing_foci=len(enh.enhancing_foci_outside_lesions or []) if enh.enhancement_assessed else "",
               dit_single_visit="not assessed" if not dit.assessed else ("met" if dit.met else "not met"),
               dis_and_dit_mri="" if rep.mri_dissemination is None else
               {True: "met", False: "not met", None: "not assessed"}[rep.mri_dissemination.met])
    row.update(volume_columns(rep))
    row.update(model_id=rep.model.id, model_kind=rep.model.kind, seconds=batch.get("seconds"),
               finished_utc=batch.get("finished_utc"), report=str(report_path) if report_path else "")
    return row


def _flatten(prefix: str, value: object) -> dict:
    """Scalars of a nested dict as ``prefix_key`` columns (lists joined with ';')."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict = {}
    for k, v in value.items():
        name = f"{prefix}_{k}"
        if isinstance(v, dict):
            out.update(_flatten(name, v))
        elif isinstance(v, (list, tuple)):
            out[name] = ";".join(str(x) for x in v)
        else:
            out[name] = v
    return out


def table_text(rows: list[dict], first: list[str], last: list[str] | None = None) -> str:
    """CSV text with ``first`` columns, then every other key seen (in order), then ``last``."""
    last = last or []
    middle: list[str] = []
    for r in rows:
        middle += [k for k in r if k not in first and k not in last and k not in middle]
    columns = first + middle + last
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue()


def write_cohort(path: Path, rows: list[dict]) -> Path:
    return write_text(path, table_text(rows, COHORT_BASE, COHORT_TAIL))


def write_failures(path: Path, failures: list[dict]) -> Path:
    return write_text(path, table_text(failures, FAILURE_COLUMNS))
