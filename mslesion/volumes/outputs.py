"""Files and table columns of the volumes: volumes.csv, the tissue map (BIDS dseg) and its dseg.tsv,
cohort columns and the change between two scans."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..atomic import write_text
from ..io import save_volume
from ..report import Report, VolumeChange, VolumesSection, as_report
from .stage import TissueModel, TissueVolumes, _num

#: files written beside report.json (and their BIDS suffixes in a batch's anat/ folder)
OUTPUT_FILES = ("volumes.csv", "tissue_dseg.nii.gz", "tissue_dseg.tsv")
#: numeric volumes, in the order of volumes.csv and the cohort table
NUMBERS = ("icv_ml", "brain_ml", "gm_ml", "wm_ml", "csf_ml", "lesion_ml", "bpf", "lesion_pct_icv")
CSV_COLUMNS = (*NUMBERS, "method", "inputs", "icv_source")
#: BIDS dseg.tsv of the tissue map (index, name, abbreviation)
DSEG_ROWS = ((1, "cerebrospinal fluid", "CSF"), (2, "grey matter", "GM"), (3, "white matter", "WM"),
             (4, "MS lesion", "LES"))


def volumes_csv_text(section: VolumesSection | Mapping[str, Any]) -> str:
    """One-row CSV of a report's ``volumes`` section (or its report.json object)."""
    vols = VolumesSection.from_dict(section)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerow({**vols.to_dict(), "inputs": "+".join(vols.inputs)})
    return buf.getvalue()


def dseg_tsv_text() -> str:
    return "index\tname\tabbreviation\n" + "".join(f"{i}\t{n}\t{a}\n" for i, n, a in DSEG_ROWS)


def write_volume_outputs(vols: TissueVolumes, out: Path) -> None:
    """volumes.csv, tissue_dseg.nii.gz (native FLAIR grid, labels as in dseg.tsv) and tissue_dseg.tsv, atomically."""
    out = Path(out)
    write_text(out / "volumes.csv", volumes_csv_text(vols.section()))
    if vols.labels is not None:
        save_volume(vols.labels, out / "tissue_dseg.nii.gz", dtype=np.uint8)
    write_text(out / "tissue_dseg.tsv", dseg_tsv_text())


def cohort_columns(report: Report | Mapping[str, Any]) -> dict:
    """The cohort-table columns of a report (a report.json dict or a Report; empty where it has no volumes)."""
    vols = as_report(report).volumes
    return {name: "" if vols is None else vols.get(name, "") for name in NUMBERS}


def volume_change(baseline: TissueVolumes, followup: TissueVolumes) -> VolumeChange:
    """Change from ``baseline`` to ``followup``: brain volume (ml, %) and BPF (absolute), plus both scans' volumes."""
    b, f = baseline.section(), followup.section()
    return VolumeChange(
        brain_ml_change=_num(followup.brain_ml - baseline.brain_ml, 1),
        brain_pct_change=round(100.0 * (followup.brain_ml - baseline.brain_ml) / baseline.brain_ml, 2)
        if baseline.brain_ml > 0 else None,
        bpf_change=_num(followup.bpf - baseline.bpf, 4),
        icv_ml_change=_num(followup.icv_ml - baseline.icv_ml, 1),
        baseline={k: b[k] for k in NUMBERS}, followup={k: f[k] for k in NUMBERS},
        method=b.method, caveats=b.caveats
        + ["one brain mask for both scans (the baseline's, moved by the registration), so the ICV is shared, and "
           "one tissue mixture fitted on both scans; on the two visits of one patient (longitudinal patient12) "
           "this BPF changed by -0.98 % where SAMSEG's changed by -0.81 % (notes/issue-18.md): "
           "differences of about 0.002 in a BPF change are within what two methods disagree by"],
    )


def compare_volumes(pre0, prob0, pre1, prob1, threshold: float, model: TissueModel | None = None) -> VolumeChange:
    """Volumes of two preprocessed scans (lesions: probability >= ``threshold`` on each working grid) and
    their change (:func:`volume_change`); for ``mslesion compare``. ``model``: the tissue model (None: the
    default)."""
    from .stage import DEFAULT_MODEL, assess_volumes_jointly

    v0, v1 = assess_volumes_jointly([pre0, pre1], [prob0.with_data(prob0.data >= threshold),
                                                   prob1.with_data(prob1.data >= threshold)],
                                    model=model or DEFAULT_MODEL)
    return volume_change(v0, v1)
