"""``--longitudinal``: compare consecutive sessions of each subject with mslesion.longitudinal.

For every subject with two or more analysed sessions, each consecutive pair
(sessions ordered numerically when all labels are numbers, else by name) is
compared into ``DERIV/sub-X/longitudinal/sub-X_from-ses-A_to-ses-B/``.  The
comparison is written into a staging folder first and the folder is renamed
into place when complete, so a killed run leaves no partial comparison; a
rerun skips pairs whose ``compare_report.json`` was made from the same inputs.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ..longitudinal.report import CompareReport
from ..pipeline import AnalyzeOptions
from ..report import sha256_of
from .inputs import Job
from .layout import WORK_DIR, subject_dir

log = logging.getLogger(__name__)
COLUMNS = ["subject", "baseline_session", "followup_session", "new_count", "enlarging_count",
           "new_or_enlarging_count", "new_or_enlarging_volume_ml", "new_t2_lesion", "report"]


def session_pairs(jobs: list[Job], failed: set[str]) -> list[tuple[Job, Job]]:
    """Consecutive (baseline, follow-up) pairs of each subject's successful sessions."""
    by_subject: dict[str, list[Job]] = {}
    for j in jobs:
        if j.session and not j.problem and j.key not in failed:
            by_subject.setdefault(j.subject, []).append(j)
    pairs = []
    for sessions in by_subject.values():
        numeric = all(s.session.isdigit() for s in sessions)  # type: ignore[union-attr]
        sessions.sort(key=lambda s: (int(s.session) if numeric else 0, s.session))  # type: ignore[arg-type]
        pairs += list(zip(sessions, sessions[1:]))
    return pairs


def pair_dir(deriv: Path, base: Job, follow: Job) -> Path:
    return subject_dir(deriv, Job(base.subject, None)) / "longitudinal" / \
        f"sub-{base.subject}_from-ses-{base.session}_to-ses-{follow.session}"


def compare_sessions(jobs: list[Job], deriv: Path, failures: list[dict], options: AnalyzeOptions) -> list[dict]:
    """Run the comparisons not yet done; append failed ones to ``failures``; return one row per pair."""
    try:
        from ..longitudinal import CompareOptions, compare_scans
    except ImportError:
        log.warning("--longitudinal: mslesion.longitudinal is not available; no comparisons made")
        return []
    pairs = session_pairs(jobs, {f["key"] for f in failures})
    rows: list[dict] = []
    for base, follow in pairs:
        target = pair_dir(deriv, base, follow)
        key = target.name
        # a compare_report.json of an earlier run (read into a CompareReport; an older shape's missing
        # fields read as missing) or this run's CompareReport
        report = _valid_report(target, base, follow)
        if report is None:
            stage = Path(deriv) / WORK_DIR / key
            shutil.rmtree(stage, ignore_errors=True)
            try:
                res = compare_scans(dict(base.inputs), dict(follow.inputs), stage, CompareOptions(analyze=options))
                shutil.rmtree(target, ignore_errors=True)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(stage, target)
                report = res.report
            except Exception as exc:  # one failed comparison does not stop the others
                log.info("%s failed: %s", key, exc, exc_info=True)
                failures.append({"subject": base.subject, "session": f"{base.session}->{follow.session}", "key": key,
                                 "error": type(exc).__name__, "reason": str(exc)[:500], "log": ""})
                shutil.rmtree(stage, ignore_errors=True)
                continue
        rows.append(_row(report, base, follow, target))
    return rows


def _row(report: CompareReport, base: Job, follow: Job, target: Path) -> dict:
    """One longitudinal.csv row (empty cells for what an older report lacks)."""
    new, enlarging = report.changes.get("new"), report.changes.get("enlarging")
    return {"subject": base.subject, "baseline_session": base.session, "followup_session": follow.session,
            "new_count": None if new is None else new.get("count"),
            "enlarging_count": None if enlarging is None else enlarging.get("count"),
            "new_or_enlarging_count": report.get("new_or_enlarging_count"),
            "new_or_enlarging_volume_ml": report.get("new_or_enlarging_volume_ml"),
            "new_t2_lesion": report.new_lesion_evidence.get("new_t2_lesion"),
            "report": str(target / "compare_report.json")}


def _valid_report(target: Path, base: Job, follow: Job) -> CompareReport | None:
    """The compare_report.json of an earlier run, if it parses and was made from these inputs."""
    try:
        report = json.loads((target / "compare_report.json").read_text(encoding="utf-8"))
        recorded = report["inputs"]
        for when, job in (("baseline", base), ("followup", follow)):
            for name, path in job.inputs.items():
                entry = recorded.get(f"{when}_{name}")
                if entry is not None and entry.get("sha256") != sha256_of(path):
                    return None
        return CompareReport.from_dict(report)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
