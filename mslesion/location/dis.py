"""Dissemination in space (DIS) per the MRI part of the McDonald 2017 criteria.

:func:`dis_verdict` only combines counts, so the brain, spinal-cord and
batch/longitudinal code can all use it (e.g. add ``"spinal_cord": 1`` to the
brain's counts).  It is an automated MRI research measure: it is not a
diagnosis, which needs clinical assessment and the full criteria.
"""
from __future__ import annotations

from typing import Any

#: the four CNS areas McDonald 2017 counts for DIS (deep white matter is not one of them).
MCDONALD_AREAS = ("periventricular", "juxtacortical", "infratentorial", "spinal_cord")

DISCLAIMER = ("Automated MRI research measure from lesion locations; not a diagnosis. The McDonald criteria "
              "apply to patients with a typical clinical syndrome and need clinical assessment.")


def lesion_size_rule(min_long_axis_mm: float) -> str:
    """How a lesion's size is judged for DIS (recorded in report.json)."""
    return (f"a brain lesion counts for DIS when its long axis measured in the axial plane (world x-y, the "
            f"column long_axis_axial_mm of lesions.csv) is >= {min_long_axis_mm:g} mm (McDonald convention); "
            f"with axial slices the slice thickness does not count, so a single 1 x 1 x 3 mm voxel does not "
            f"qualify (a tilted voxel counts by its shadow on the axial plane). Spinal cord "
            f"lesions are judged by the spinal analysis. Lesions below the analysis' min_lesion_mm3 "
            f"(report settings) are removed before")


def dis_verdict(area_lesion_counts: dict[str, int], options: Any = None) -> dict:
    """DIS is met when at least ``min_areas`` (default 2) McDonald areas hold >= 1 qualifying lesion.

    ``area_lesion_counts`` maps area name to the number of lesions there that
    already meet the size rule (long axis >= ``options.min_long_axis_mm``).
    Unknown area names (e.g. ``deep_white_matter``) are ignored; missing areas
    count 0 and are listed in ``areas_not_assessed``.
    """
    min_long = float(getattr(options, "min_long_axis_mm", 3.0))
    min_areas = int(getattr(options, "min_areas", 2))
    pv_mm = getattr(options, "periventricular_mm", None)
    counts = {a: int(area_lesion_counts.get(a, 0)) for a in MCDONALD_AREAS}
    if any(v < 0 for v in counts.values()):
        raise ValueError(f"lesion counts must be >= 0, got {area_lesion_counts}")
    involved = [a for a in MCDONALD_AREAS if counts[a] > 0]
    rule = (f"McDonald 2017 dissemination in space (MRI): >= 1 T2-hyperintense lesion in >= {min_areas} of the "
            f"{len(MCDONALD_AREAS)} areas periventricular, cortical/juxtacortical, infratentorial, spinal cord; "
            f"only lesions with an in-plane (axial) long axis >= {min_long:g} mm count")
    if pv_mm is not None:
        rule += f"; periventricular = within {float(pv_mm):g} mm of a lateral ventricle"
    return {
        "met": len(involved) >= min_areas,
        "areas_involved": involved,
        "qualifying_lesions_per_area": counts,
        "areas_not_assessed": [a for a in MCDONALD_AREAS if a not in area_lesion_counts],
        "min_areas": min_areas,
        "min_long_axis_mm": min_long,
        "lesion_size_rule": lesion_size_rule(min_long),
        "rule": rule,
        "note": DISCLAIMER,
    }
