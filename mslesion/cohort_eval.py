"""Scoring a cohort: many (prediction, reference) mask pairs listed in a CSV.

The CSV has a header with columns ``subject,pred,ref``; relative paths are taken
relative to the CSV's folder.  A pair that cannot be scored (missing file, not a
mask, ...) is recorded with its reason and the others are still scored.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import load_mask
from .metrics import SCORE_FIELDS, SIZE_CLASSES, evaluate

log = logging.getLogger(__name__)

PAIR_COLUMNS = ("subject", "pred", "ref")


@dataclass
class CohortScores:
    """Per-subject scores (``rows``), the pairs that failed (``failures``) and the cohort summary."""

    rows: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        """Means over subjects, and lesion-wise figures pooled over all lesions of the cohort."""
        out: dict = {"subjects": len(self.rows), "failed": len(self.failures)}
        if not self.rows:
            return out
        # say it when masks were changed before scoring (see metrics.evaluate)
        out["pred_resampled"] = sum(bool(r.get("pred_resampled")) for r in self.rows)
        out["thresholded"] = sum(bool(r.get("thresholded")) for r in self.rows)
        for key in ("dice", "lesion_sensitivity", "lesion_precision", "lesion_f1", "abs_volume_diff_ml"):
            values = np.array([r[key] for r in self.rows], dtype=float)
            out[f"mean_{key}"] = round(float(values.mean()), 4)
            out[f"sd_{key}"] = round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 4)
        ref = sum(r["ref_lesions"] for r in self.rows)
        det = sum(r["detected_ref_lesions"] for r in self.rows)
        pred = sum(r["pred_lesions"] for r in self.rows)
        tp = sum(r["true_pred_lesions"] for r in self.rows)
        sens = det / ref if ref else 1.0
        prec = tp / pred if pred else (1.0 if ref == 0 else 0.0)
        out["pooled_lesion_sensitivity"] = round(sens, 4)
        out["pooled_lesion_precision"] = round(prec, 4)
        out["pooled_lesion_f1"] = round(0.0 if sens + prec == 0 else 2 * sens * prec / (sens + prec), 4)
        for name, _, _ in SIZE_CLASSES:
            n = sum(r[f"ref_lesions_{name}"] for r in self.rows)
            d = sum(r[f"detected_{name}"] for r in self.rows)
            out[f"pooled_sensitivity_{name}"] = round(d / n, 4) if n else None
            out[f"ref_lesions_{name}"] = n
        return out

    def table(self) -> list[dict]:
        """One row per listed subject (scored or failed), in CSV column order."""
        cols = ["subject", "pred", "ref", *SCORE_FIELDS, "error"]
        rows = [{**r, "error": ""} for r in self.rows] + [{**f} for f in self.failures]
        return [{c: r.get(c, "") for c in cols} for r in rows]


def read_pairs(csv_path: Path) -> list[dict[str, Path | str]]:
    """The (subject, pred, ref) rows of ``csv_path``; paths resolved relative to its folder."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputError(csv_path, "pairs CSV does not exist" if not csv_path.exists() else "pairs CSV is not a file")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in PAIR_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(csv_path, f"pairs CSV needs the columns {', '.join(PAIR_COLUMNS)}; "
                                           f"missing {', '.join(missing)} (header: {reader.fieldnames})")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(csv_path, f"pairs CSV cannot be read ({type(exc).__name__}: {exc})") from exc
    pairs = []
    seen: set[str] = set()
    for n, row in enumerate(rows, start=2):
        subject = (row.get("subject") or "").strip()
        pred, ref = (row.get("pred") or "").strip(), (row.get("ref") or "").strip()
        if not subject or not pred or not ref:
            raise InputError(csv_path, f"line {n}: subject, pred and ref must all be given")
        if subject in seen:
            raise InputError(csv_path, f"line {n}: subject {subject!r} is listed twice")
        seen.add(subject)
        pairs.append({"subject": subject, "pred": csv_path.parent / pred, "ref": csv_path.parent / ref})
    if not pairs:
        raise InputError(csv_path, "pairs CSV lists no subjects")
    return pairs


def evaluate_pairs(pairs: list[dict], connectivity: int = 26, min_lesion_mm3: float = 0.0,
                   threshold: float | None = None) -> CohortScores:
    """Score every pair; a pair with a bad file (or a non-binary mask without ``threshold``) is
    recorded in ``failures`` and skipped."""
    result = CohortScores()
    for pair in pairs:
        base = {"subject": pair["subject"], "pred": str(pair["pred"]), "ref": str(pair["ref"])}
        try:
            scores = evaluate(load_mask(pair["pred"], "prediction"), load_mask(pair["ref"], "reference"),
                              connectivity=connectivity, min_lesion_mm3=min_lesion_mm3, threshold=threshold)
        except InputError as exc:
            log.warning("%s: %s", pair["subject"], exc)
            result.failures.append({**base, "error": str(exc)})
            continue
        result.rows.append({**base, **scores.as_dict()})
    return result
