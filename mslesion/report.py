"""Tables and JSON report written to the output folder."""
from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

from .atomic import write_json, write_text
from .lesions import Lesion

BASE_COLUMNS = ["id", "voxels", "volume_ml", "centroid_x", "centroid_y", "centroid_z", "region"]


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


def lesions_csv_text(lesions: list[Lesion]) -> str:
    rows = [les.row() for les in lesions]
    columns = list(BASE_COLUMNS)
    for r in rows:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    return buf.getvalue()


def write_lesions_csv(path: str | Path, lesions: list[Lesion]) -> Path:
    return write_text(path, lesions_csv_text(lesions))


def write_report(path: str | Path, report: dict) -> Path:
    return write_json(path, report)
