"""What a batch has to do: one :class:`Job` per subject/session.

Jobs come from a BIDS dataset (``sub-*/[ses-*/]anat/*_FLAIR.nii.gz`` with
optional ``*_T1w`` / ``*_T2w``, and spinal images tagged ``acq-*spine*`` or
``bp-spine``) or from a CSV manifest with one row per subject/session.
Subject and session labels must be BIDS labels (letters and digits): anything
else - ``../x``, ``a/b`` - could escape the output folder and is refused.
"""
from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

log = logging.getLogger(__name__)

LABEL_RE = re.compile(r"^[A-Za-z0-9]+$")
NIFTI_EXT = (".nii.gz", ".nii")
#: BIDS suffix -> mslesion contrast name
BIDS_SUFFIXES = {"FLAIR": "flair", "T1w": "t1", "T2w": "t2"}
#: manifest column (lower case) -> contrast name
MANIFEST_COLUMNS = {"flair": "flair", "t1": "t1", "t1w": "t1", "t2": "t2", "t2w": "t2", "spine": "spine",
                    "t1post": "t1post", "t1ce": "t1post", "t1gd": "t1post"}
#: a BIDS contrast-enhancement entity (``ce-gadolinium``, ``ce-Gd``...) marks a post-contrast image
CE_RE = re.compile(r"(^|_)ce-[A-Za-z0-9]+(_|$)")
SPINE_RE = re.compile(r"(_acq-[A-Za-z0-9]*(spine|cord)[A-Za-z0-9]*_|_bp-spine_)", re.IGNORECASE)


@dataclass
class Job:
    """One subject/session to analyse."""

    subject: str
    session: str | None
    inputs: dict[str, Path] = field(default_factory=dict)   # 'flair' (required), 't1', 't2', 't1post'
    spine: list[Path] = field(default_factory=list)         # spinal images, analysed if mslesion.spine exists
    problem: str | None = None                              # set when the subject is unusable as found

    @property
    def key(self) -> str:
        """BIDS prefix: ``sub-X`` or ``sub-X_ses-Y``."""
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")

    @property
    def rel_dir(self) -> Path:
        """Folder of this job below the derivatives root: ``sub-X[/ses-Y]``."""
        p = Path(f"sub-{self.subject}")
        return p / f"ses-{self.session}" if self.session else p


def check_label(value: str, what: str, where: Path | None = None) -> str:
    """Return ``value`` without its ``sub-``/``ses-`` prefix if it is a safe BIDS label, else raise."""
    raw = str(value).strip()
    label = raw[4:] if raw[:4].lower() in ("sub-", "ses-") else raw
    if not LABEL_RE.match(label):
        raise InputError(where, f"{what} {raw!r} is refused: BIDS labels are letters and digits only "
                                "(anything else, such as '../', could escape the output folder)")
    return label


def discover(source: str | Path) -> list[Job]:
    """Jobs from a BIDS folder or a ``.csv`` manifest, sorted by key."""
    source = Path(source)
    if not source.exists():
        raise InputError(source, "batch input does not exist (give a BIDS folder or a CSV manifest)")
    jobs = read_manifest(source) if source.is_file() else discover_bids(source)
    seen: dict[str, Job] = {}
    for job in jobs:
        if job.key in seen and job.problem is None:
            raise InputError(source, f"{job.key} appears twice")
        seen[job.key] = job
    return sorted(jobs, key=lambda j: j.key)


def discover_bids(root: Path) -> list[Job]:
    """One job per ``sub-*`` or ``sub-*/ses-*`` folder of a BIDS dataset."""
    subs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("sub-"))
    if not subs:
        raise InputError(root, "no sub-* folders: not a BIDS dataset (or give a CSV manifest)")
    jobs: list[Job] = []
    for sub in subs:
        sessions = sorted(p for p in sub.iterdir() if p.is_dir() and p.name.startswith("ses-"))
        for folder in sessions or [sub]:
            ses_name = folder.name if folder is not sub else None
            try:
                subject = check_label(sub.name, "subject", sub)
                session = check_label(ses_name, "session", folder) if ses_name else None
            except InputError as exc:
                jobs.append(Job(_safe(sub.name), _safe(ses_name) if ses_name else None, problem=str(exc)))
                continue
            jobs.append(_bids_job(folder, subject, session))
    return jobs


def _bids_job(folder: Path, subject: str, session: str | None) -> Job:
    job = Job(subject, session)
    anat = folder / "anat"
    files = sorted(p for p in anat.iterdir() if p.is_file() and p.name.endswith(NIFTI_EXT)) if anat.is_dir() else []
    found: dict[str, list[Path]] = {}
    for f in files:
        stem = _strip_ext(f.name)
        if SPINE_RE.search(stem + "_"):
            job.spine.append(f)
            continue
        suffix = stem.rsplit("_", 1)[-1]
        if suffix in BIDS_SUFFIXES:
            contrast = BIDS_SUFFIXES[suffix]
            if CE_RE.search(stem):  # sub-01_ce-gadolinium_T1w: post-contrast, never taken as the plain T1
                if contrast != "t1":
                    log.warning("%s: %s is contrast-enhanced but not a T1w; not used", job.key, f.name)
                    continue
                contrast = "t1post"
            found.setdefault(contrast, []).append(f)
    for contrast, paths in found.items():
        if len(paths) > 1:
            log.warning("%s: %d %s images, using the last by name: %s", job.key, len(paths), contrast, paths[-1].name)
        job.inputs[contrast] = paths[-1]
    if "flair" not in job.inputs:
        job.problem = f"no *_FLAIR image in {anat}" + ("" if anat.is_dir() else " (no anat folder)")
    return job


def read_manifest(path: Path) -> list[Job]:
    """Jobs from a CSV with columns subject, [session], flair, [t1], [t2], [t1post], [spine].

    Paths are relative to the CSV.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read the manifest ({exc})") from exc
    reader = csv.DictReader(text.splitlines())
    cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
    subj_col = cols.get("subject") or cols.get("participant_id") or cols.get("sub")
    if subj_col is None or "flair" not in cols:
        raise InputError(path, f"manifest needs columns 'subject' and 'flair'; found {reader.fieldnames}")
    ses_col = cols.get("session") or cols.get("session_id") or cols.get("ses")
    jobs: list[Job] = []
    for lineno, row in enumerate(reader, start=2):
        raw_sub, raw_ses = (row.get(subj_col) or "").strip(), (row.get(ses_col) or "").strip() if ses_col else ""
        try:
            subject = check_label(raw_sub, "subject", path)
            session = check_label(raw_ses, "session", path) if raw_ses else None
        except InputError as exc:
            jobs.append(Job(_safe(raw_sub) or f"line{lineno}", _safe(raw_ses) or None, problem=f"line {lineno}: {exc}"))
            continue
        job = Job(subject, session)
        for low, col in cols.items():
            contrast = MANIFEST_COLUMNS.get(low)
            value = (row.get(col) or "").strip()
            if contrast is None or not value:
                continue
            p = Path(value).expanduser()
            p = p if p.is_absolute() else path.parent / p
            if contrast == "spine":
                job.spine.append(p)
            else:
                job.inputs[contrast] = p
        if "flair" not in job.inputs:
            job.problem = f"line {lineno}: no FLAIR path"
        jobs.append(job)
    if not jobs:
        raise InputError(path, "manifest has no rows")
    return jobs


def _strip_ext(name: str) -> str:
    for ext in NIFTI_EXT:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _safe(label: str | None) -> str:
    """A printable stand-in for a refused label (never used as a path)."""
    return re.sub(r"[^A-Za-z0-9]", "_", str(label or ""))[:40] or "invalid"
