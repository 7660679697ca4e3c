"""The spine report.html: what was found (contrast, cord, area per level, levels) and the lesions."""
from __future__ import annotations

from html import escape
from pathlib import Path

from ..lesions import CordLesion
from ..qc.html import facts_table, grid_table
from ..report import SpineReport

FEATURE_LABELS = {"length_mm": "cord traced over (mm)", "tube_fraction": "slices with a cord tube (fraction)",
                  "csa_median_mm2": "median cross-sectional area (mm\u00b2)", "csa_cv": "area variation (std/mean)",
                  "csf_enclosure": "border with CSF around (fraction)", "sleeve": "thin CSF sleeve (fraction)"}


def spine_sections(report: SpineReport) -> list[tuple[str, str]]:
    """(heading, HTML) sections of the spine page, every value tagged with its report.json key."""
    image = report.image
    cord = report.cord
    levels = report.levels
    qualifying = report.mcdonald_dis.qualifying_lesions_per_area.get("spinal_cord")
    facts = [("Image", "image.path", image.get("path")),
             ("Contrast", "image.contrast", image.get("contrast")),
             ("Contrast from", "image.contrast_source", image.get("contrast_source")),
             ("Why", "image.contrast_reason", image.get("contrast_reason")),
             ("Cord lesions", "lesion_count", report.lesion_count),
             ("Total cord-lesion volume (mm\u00b3)", "total_lesion_volume_mm3", report.total_lesion_volume_mm3),
             ("Lesions counting for McDonald DIS (spinal cord)", "mcdonald_dis.qualifying_lesions_per_area.spinal_cord",
              qualifying),
             ("Cord volume (mm\u00b3)", "cord.volume_mm3", cord.get("volume_mm3")),
             ("Cord length (mm)", "cord.length_mm", cord.get("length_mm")),
             ("Slices with cord", None, f"{cord.get('slices_found')} of {cord.get('slices')}"),
             ("mslesion version", "mslesion_version", report.mslesion_version)]
    sections = [("Summary", facts_table(facts, "summary"))]
    covered = levels.get("covered") or []
    if covered:
        lv = facts_table([("Levels covered", "levels.covered", covered), ("Levels from", "levels.source",
                                                                           levels.get("source"))], "levels")
    else:
        lv = (f'<p class="warn" data-key="levels.reason">Vertebral levels not determined: '
              f'{escape(str(levels.get("reason") or "unknown reason"))}</p>')
    sections.append(("Vertebral levels", lv))
    csa = cord.get("csa_mm2_per_level") or {}
    rows = [[(None, name), (f"cord.csa_mm2_per_level.{name}.mean", v.get("mean")),
             (f"cord.csa_mm2_per_level.{name}.sd", v.get("sd")),
             (f"cord.csa_mm2_per_level.{name}.slices", v.get("slices"))]
            for name, v in csa.items()]
    sections.append(("Cord cross-sectional area per level (tilt-corrected)",
                     grid_table(["level", "mean (mm\u00b2)", "sd (mm\u00b2)", "slices"], rows, "csa")
                     if rows else "<p>None.</p>"))
    feats = cord.get("plausibility") or {}
    if feats:
        sections.append(("Cord check (is the traced structure a spinal cord?)",
                         facts_table([(label, f"cord.plausibility.{k}", feats.get(k))
                                      for k, label in FEATURE_LABELS.items() if k in feats], "cord-check")))
    return sections


def write_spine_html(out: Path, report: SpineReport, lesions: list[CordLesion]) -> Path:
    """Self-contained report.html: summary, levels, area per level, sagittal QC view and the lesion table."""
    from ..qc.html import write_report_html

    name = Path(str(report.image.get("path") or "image")).name
    key = {"lesion_count": ("cord lesions", report.lesion_count),
           "cord.volume_mm3": ("cord volume (mm\u00b3)", report.cord.get("volume_mm3"))}
    return write_report_html(out, f"mslesion spine report: {name}", None, [les.row() for les in lesions],
                             [("Spinal cord: sagittal cut along the cord and axial crops (cord green, lesions red)",
                               out / "qc_sagittal.png")], sections=spine_sections(report), key_figures=key,
                             table_title="Cord lesions")
