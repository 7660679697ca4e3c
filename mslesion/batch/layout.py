"""BIDS-derivatives layout of a batch output folder, and how completion is proven.

    DERIV/dataset_description.json
    DERIV/sub-X/[ses-Y/]anat/sub-X[_ses-Y]_desc-lesions_{mask.nii.gz,probseg.nii.gz,lesions.csv,report.json}
    DERIV/sub-X/[ses-Y/]anat/sub-X[_ses-Y]_desc-tissue_{dseg.nii.gz,dseg.tsv,volumes.csv}
    DERIV/sub-X/[ses-Y/]anat/sub-X[_ses-Y]_desc-enhancement_dseg.nii.gz   (with a post-contrast T1: 1 enhancing
        lesion voxels, 2 enhancing foci outside lesions)
    DERIV/sub-X/[ses-Y/]figures/...          PNGs / HTML written by the pipeline
    DERIV/sub-X/[ses-Y/]log/sub-X[_ses-Y]_desc-mslesion_log.txt
    DERIV/cohort.csv, DERIV/failures.csv

The pipeline writes into a hidden staging folder; the files are then renamed
into place (atomic on one file system) and the report JSON is written last.
The report lists every output with its size, so a subject counts as complete
only if its report parses, every listed file is there with that size, and it
was made from the same inputs (sha256) and settings.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from .. import __version__
from ..atomic import TMP_MARK, remove_stale_temps, write_json
from ..errors import OutputError
from ..report import sha256_of
from .inputs import Job

log = logging.getLogger(__name__)

WORK_DIR = ".mslesion-work"
#: file written by Analyzer.write_outputs -> BIDS suffix in anat/
CORE_OUTPUTS = {
    "lesions.nii.gz": "desc-lesions_mask.nii.gz",
    "lesion_probability.nii.gz": "desc-lesions_probseg.nii.gz",
    "lesions.csv": "desc-lesions_lesions.csv",
    "volumes.csv": "desc-tissue_volumes.csv",
    "tissue_dseg.nii.gz": "desc-tissue_dseg.nii.gz",
    "tissue_dseg.tsv": "desc-tissue_dseg.tsv",
    "enhancement.nii.gz": "desc-enhancement_dseg.nii.gz",
}
REPORT_SUFFIX = "desc-lesions_report.json"
LOG_SUFFIX = "desc-mslesion_log.txt"


def subject_dir(deriv: Path, job: Job) -> Path:
    """``DERIV/sub-X[/ses-Y]``, refusing anything that would resolve outside ``deriv``."""
    root = Path(deriv).resolve()
    out = (root / job.rel_dir).resolve()
    if root not in out.parents:
        raise OutputError(out, f"{job.key} would be written outside the output folder {root}")
    return out


def report_path(deriv: Path, job: Job) -> Path:
    return subject_dir(deriv, job) / "anat" / f"{job.key}_{REPORT_SUFFIX}"


def log_path(deriv: Path, job: Job) -> Path:
    return subject_dir(deriv, job) / "log" / f"{job.key}_{LOG_SUFFIX}"


def staging_dir(deriv: Path, job: Job) -> Path:
    return Path(deriv).resolve() / WORK_DIR / job.key


def write_dataset_description(deriv: Path, source: Path) -> Path:
    """``dataset_description.json`` of the derivative dataset (rewritten each run)."""
    desc = {
        "Name": "mslesion lesion segmentation",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "mslesion", "Version": __version__,
                         "Description": "MS lesion mask, probability map, per-lesion table and report"}],
        "SourceDatasets": [{"URL": Path(source).resolve().as_uri()}],
    }
    return write_json(Path(deriv) / "dataset_description.json", desc)


def dataset_name(source: Path) -> str:
    """The source dataset's name: ``Name`` of its BIDS ``dataset_description.json``, else the folder's
    (or the CSV manifest's) name."""
    source = Path(source)
    desc = source / "dataset_description.json"
    if source.is_dir() and desc.is_file():
        try:
            name = json.loads(desc.read_text(encoding="utf-8")).get("Name")
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("%s cannot be read (%s); the dataset is named after its folder", desc, exc)
            name = None
        if isinstance(name, str) and name.strip():
            return name.strip()
    return source.resolve().name if source.is_dir() else source.name


def clean_leftovers(deriv: Path) -> int:
    """Remove what a killed run left: staging folders and temp files. Returns how many were removed."""
    deriv = Path(deriv)
    n = 0
    work = deriv / WORK_DIR
    if work.is_dir():
        n += sum(1 for _ in work.iterdir())
        shutil.rmtree(work, ignore_errors=True)
    n += remove_stale_temps(deriv)
    if n:
        log.info("removed %d leftovers of an interrupted run in %s", n, deriv)
    return n


def finalize(deriv: Path, job: Job, staging: Path, report: dict, batch_info: dict) -> Path:
    """Move staged outputs into the BIDS layout, then write the report (the completion mark) last."""
    sub_dir = subject_dir(deriv, job)
    final_report = report_path(deriv, job)
    final_report.unlink(missing_ok=True)  # from here on the subject is incomplete until the new report lands
    outputs: dict[str, dict] = {}
    for src in sorted(p for p in staging.rglob("*") if p.is_file()):
        rel = src.relative_to(staging)
        own_report = rel.name == "report.json" and len(rel.parts) == 1
        if own_report or TMP_MARK in rel.name or rel.name.startswith(".mslesion"):
            continue
        if len(rel.parts) == 1 and rel.name in CORE_OUTPUTS:
            dst = sub_dir / "anat" / f"{job.key}_{CORE_OUTPUTS[rel.name]}"
        else:
            name = rel.name if rel.name.startswith("sub-") else f"{job.key}_{rel.name}"
            dst = sub_dir / "figures" / rel.parent / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        outputs[dst.relative_to(sub_dir).as_posix()] = {"bytes": dst.stat().st_size}
    full = dict(report)
    full["batch"] = {**batch_info, "subject": job.subject, "session": job.session, "outputs": outputs}
    write_json(final_report, full)
    return final_report


def read_report(deriv: Path, job: Job) -> dict | None:
    """The subject's report if it exists and parses, else None."""
    try:
        return json.loads(report_path(deriv, job).read_text(encoding="utf-8"))
    except (OSError, ValueError, OutputError):
        return None


def completion_problem(deriv: Path, job: Job, settings: dict, check_inputs: bool = True) -> str | None:
    """None if the subject's outputs are complete and valid for these inputs and settings, else why not."""
    rep = read_report(deriv, job)
    if rep is None:
        return "no valid report"
    batch = rep.get("batch") or {}
    if batch.get("settings") != settings:
        return "made with other settings"
    sub_dir = subject_dir(deriv, job)
    for rel, info in (batch.get("outputs") or {}).items():
        p = sub_dir / rel
        if not p.is_file() or p.stat().st_size != info.get("bytes"):
            return f"output {rel} missing or changed"
    if not any(rel.endswith(CORE_OUTPUTS["lesions.nii.gz"]) for rel in batch.get("outputs") or {}):
        return "lesion mask not listed"
    if check_inputs:
        recorded = rep.get("inputs") or {}
        if set(recorded) != set(job.inputs):
            return "other contrasts than last time"
        for name, path in job.inputs.items():
            try:
                if sha256_of(path) != recorded[name].get("sha256"):
                    return f"{name} input changed"
            except OSError:
                return f"{name} input unreadable"
    return None
