"""Readable sections of the subject report.html: summary, regions, model accuracy, brain mask, inputs, timings.

Every value cell carries its dotted report.json key (``data-key``) and value (``data-value``),
so a test or a script can check the page against report.json.
"""
from __future__ import annotations

import json
import logging
import re
from html import escape
from pathlib import Path
from typing import Any, Mapping

from ..report import EnhancementSection, Report, as_report
from .html import facts_table, fmt, grid_table
from .volumes import volumes_section

log = logging.getLogger(__name__)

TIMING_LABELS = {"preprocess_s": "preprocessing", "segment_s": "segmentation", "location_s": "lesion location",
                 "enhancement_s": "enhancement and black holes",
                 "qc_s": "QC pictures and this page", "total_s": "total (analysis)"}
AREA_LABELS = {"periventricular": "periventricular", "juxtacortical": "cortical / juxtacortical",
               "infratentorial": "infratentorial", "spinal_cord": "spinal cord"}


def summary_section(report: Report) -> str:
    dis = report.mcdonald_dis
    brain = report.brain_mask
    model = report.model
    rows: list[tuple[str, str | None, object]] = [
        ("Lesions", "lesion_count", report.lesion_count),
        ("Total lesion volume (mL)", "total_volume_ml", report.total_volume_ml),
    ]
    if dis is not None:
        rows.append(("McDonald 2017 dissemination in space met", "mcdonald_dis.met", dis.met))
        involved = dis.areas_involved or []
        rows.append(("Areas involved", "mcdonald_dis.areas_involved" if involved else None, involved or "none"))
        if dis.areas_not_assessed:
            rows.append(("Areas not assessed", "mcdonald_dis.areas_not_assessed", dis.areas_not_assessed))
    rows.append(("Model", "model.id", model.id))
    if model.threshold is not None:
        rows.append(("Probability threshold", "model.threshold", model.threshold))
    if model.min_peak:
        rows.append(("Lesions kept where peak probability reaches", "model.min_peak", model.min_peak))
    if brain is not None:
        rows.append(("Brain mask method", "brain_mask.method", brain.method))
        rows.append(("Brain mask volume (mL)", "brain_mask.volume_ml", brain.volume_ml))
    flair = report.inputs.get("flair")
    if flair is not None:
        rows.append(("FLAIR", "inputs.flair.path", flair.path))
    mask_input = report.lesion_mask_input
    if mask_input is not None:
        rows.append(("Lesion mask given", "lesion_mask_input.path", mask_input.path))
        if mask_input.resampled:
            rows.append(("Lesion mask resampled", "lesion_mask_input.resampled.note", mask_input.resampled.get("note")))
    if report.mslesion_version is not None:
        rows.append(("mslesion version", "mslesion_version", report.mslesion_version))
    html = facts_table(rows, "summary")
    if dis is not None and dis.rule:
        html += f'<p class="meta">{escape(str(dis.rule))}. {escape(str(dis.note or ""))}</p>'
    return html


def regions_section(report: Report) -> str:
    regions = report.regions
    qualifying = report.mcdonald_dis.qualifying_lesions_per_area if report.mcdonald_dis is not None else {}
    qualifying = qualifying or {}
    names = list(regions) + [a for a in qualifying if a not in regions]
    if not names:
        return "<p>None.</p>"
    rows = []
    for name in names:
        r = regions.get(name)
        rows.append([(None, AREA_LABELS.get(name, name.replace("_", " "))),
                     (f"regions.{name}.count" if r is not None else None, r.count if r is not None else None),
                     (f"regions.{name}.volume_ml" if r is not None else None, r.volume_ml if r is not None else None),
                     (f"mcdonald_dis.qualifying_lesions_per_area.{name}" if name in qualifying else None,
                      qualifying.get(name))])
    return grid_table(["region", "lesions", "volume (mL)", "lesions counting for DIS"], rows, "regions")


def model_section(report: Report) -> str:
    """The model's validated accuracy (model.json ``validation``) or its card's status line, and its limits."""
    model = report.model
    info = model_documents(model.to_dict())
    parts = []
    validation = info.get("validation")
    if isinstance(validation, dict) and validation:
        rows = []
        for key, value in validation.items():
            if isinstance(value, dict):
                rows += [(f"{key.replace('_', ' ')}: {k}", None, v if not isinstance(v, (dict, list)) else fmt(v))
                         for k, v in value.items()]
            else:
                rows.append((key.replace("_", " "), None, value if not isinstance(value, list) else fmt(value)))
        parts.append("<p>Validated accuracy (from the model's model.json):</p>" + facts_table(rows, "validation"))
    elif info.get("status"):
        parts.append(f'<p class="warn" id="model-status">{escape(info["status"])}</p>'
                     f'<p class="meta">model.json has no validation block; the line above is the model card\'s '
                     f'status.</p>')
    elif model.kind and model.kind != "trained":
        parts.append(f'<p class="warn" id="model-status">{escape(str(model.id))} is a {escape(str(model.kind))} '
                     f"segmenter with no validated accuracy.</p>")
    else:
        parts.append(f'<p class="warn" id="model-status">No validation figures found for model '
                     f'{escape(str(model.id))} ({escape(info.get("missing", "model card not found"))}).</p>')
    if info.get("limitations"):
        items = "".join(f"<li>{escape(item)}</li>" for item in info["limitations"])
        parts.append(f'<p>Limitations (model card):</p><ul id="model-limitations">{items}</ul>')
    if info.get("card"):
        parts.append(f'<p class="meta">Model card: {escape(str(info["card"]))}</p>')
    return "".join(parts)


def model_documents(model: dict) -> dict:
    """``validation`` (model.json), ``status`` and ``limitations`` (model_card.md) of the report's model."""
    folder = _model_folder(model)
    if folder is None:
        return {"missing": "model folder not found"}
    out: dict = {}
    spec = folder / "model.json"
    if spec.is_file():
        try:
            out["validation"] = json.loads(spec.read_text(encoding="utf-8")).get("validation")
        except (OSError, ValueError) as exc:
            log.warning("%s cannot be read: %s", spec, exc)
    card = folder / "model_card.md"
    if card.is_file():
        out["card"] = card
        text = card.read_text(encoding="utf-8", errors="replace")
        out["status"] = card_status(text)
        out["limitations"] = card_limitations(text)
    else:
        out["missing"] = f"no model_card.md in {folder}"
    return out


def card_status(text: str) -> str | None:
    """The card's status line ("Status: ..."), markdown emphasis removed."""
    for line in text.splitlines():
        plain = _plain(line)
        if plain.lower().startswith("status"):
            return plain
    return None


def card_limitations(text: str, limit: int = 6) -> list[str]:
    """The bullets of the card's "Limitations" section (continuation lines joined)."""
    m = re.search(r"^#+\s*Limitations\s*$(.*?)(?=^#|\Z)", text, flags=re.MULTILINE | re.DOTALL | re.IGNORECASE)
    if not m:
        return []
    items: list[str] = []
    for line in m.group(1).splitlines():
        if re.match(r"\s*[-*]\s+", line):
            items.append(_plain(re.sub(r"^\s*[-*]\s+", "", line)))
        elif line.strip() and items:
            items[-1] += " " + _plain(line.strip())
    return items[:limit]


def brain_section(report: Report) -> str:
    brain = report.brain_mask
    if brain is None:
        return "<p>No brain mask recorded.</p>"
    rows = [("Method", "brain_mask.method", brain.method),
            ("Volume (mL)", "brain_mask.volume_ml", brain.volume_ml)]
    if brain.rim_trimmed_ml is not None:
        rows.append(("Bright scalp trimmed from it (mL)", "brain_mask.rim_trimmed_ml", brain.rim_trimmed_ml))
    if brain.lesions_outside_dropped is not None:
        rows.append(("Lesion candidates dropped outside it", "brain_mask.lesions_outside_dropped",
                     brain.lesions_outside_dropped))
    return facts_table(rows, "brain-mask") + (
        '<p class="meta">The brain mask sets the intensity normalisation and '
        "where lesions are searched; check its outline in the picture below.</p>")


def inputs_section(report: Report) -> str:
    rows = [[(None, name), (f"inputs.{name}.path", info.path), (f"inputs.{name}.shape", info.shape),
             (f"inputs.{name}.voxel_size_mm", info.voxel_size_mm)] for name, info in report.inputs.items()]
    return grid_table(["image", "file", "shape", "voxel size (mm)"], rows, "inputs") if rows else "<p>None.</p>"


def timings_section(report: Report) -> str:
    rows = [(TIMING_LABELS.get(k, k.replace("_s", "").replace("_", " ")) + " (s)", f"timings_s.{k}", v)
            for k, v in report.timings_s.items()]
    return facts_table(rows, "timings") if rows else "<p>Not recorded.</p>"


def enhancement_section(report: Report) -> str:
    """Gadolinium enhancement, black holes and single-visit dissemination in time (or why not assessed)."""
    enh = report.enhancement or EnhancementSection()
    dit = enh.dissemination_in_time
    rows: list[tuple[str, str | None, object]] = [
        ("Single-visit dissemination in time", "enhancement.dissemination_in_time.statement", dit.get("statement"))]
    if dit.reason:
        rows.append(("Why not assessed", "enhancement.dissemination_in_time.reason", dit.reason))
    if report.mri_dissemination is not None:
        rows.append(("Dissemination in space and time from this MRI", "mri_dissemination.statement",
                     report.mri_dissemination.statement))
    check = enh.post_contrast_check
    for note in [] if check is None else check.notes:
        rows.append(("Post-contrast T1", None, note))
    if enh.enhancement_assessed:
        rows += [("Enhancing lesions", "enhancement.enhancing_lesions", enh.enhancing_lesions),
                 ("Non-enhancing lesions", "enhancement.non_enhancing_lesions", enh.non_enhancing_lesions),
                 ("Enhancing foci outside FLAIR lesions", None, len(enh.enhancing_foci_outside_lesions or []))]
    if enh.t1_hypointensity_assessed:
        rows.append(("T1-hypointense lesions (black holes)", "enhancement.black_holes", enh.black_holes))
    html = facts_table(rows, "enhancement")
    if enh.enhancement_assessed:
        html += ('<p class="meta">Thresholds fixed a priori, not validated against expert enhancement masks; '
                 "foci outside FLAIR lesions are often vessels: review them on the images (lesions.csv, "
                 "report.json enhancement).</p>")
    return html


def subject_sections(report: Report | Mapping[str, Any]) -> list[tuple[str, str]]:
    """(heading, HTML) sections of the subject page (a report.json dict is read as a :class:`Report`)."""
    report = as_report(report)
    enhancement = ([("Enhancement and dissemination in time", enhancement_section(report))]
                   if report.enhancement else [])
    return [("Summary", summary_section(report)),
            ("Lesions by region", regions_section(report)),
            *enhancement,
            *([("Brain volumes", volumes_section(report))] if report.get("volumes") else []),
            ("Model and its validated accuracy", model_section(report)),
            ("Brain mask", brain_section(report)),
            ("Inputs", inputs_section(report)),
            ("Timings", timings_section(report))]


def _model_folder(model: dict) -> Path | None:
    if model.get("folder"):
        folder = Path(str(model["folder"]))
        return folder if folder.is_dir() else None
    model_id = model.get("id")
    if not model_id:
        return None
    try:
        from ..model.store import models_root
    except ImportError:  # no model package (torch missing)
        return None
    folder = models_root() / str(model_id)
    return folder if folder.is_dir() else None


def _plain(text: str) -> str:
    return re.sub(r"[*_`]{1,3}", "", text).strip()
