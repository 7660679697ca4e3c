"""`mslesion analyze --spine`: brain and cord in one report and one DIS verdict."""
from __future__ import annotations

import json

import pytest

from mslesion.cli import main
from mslesion.location import LocationOptions
from mslesion.pipeline import merge_spine

from .factories import make_phantom, save
from .test_spine import cord_phantom


class _FakeSpine:
    def __init__(self, lengths):
        self.lesions = [{"id": i + 1, "volume_mm3": 50.0, "length_mm": L} for i, L in enumerate(lengths)]
        self.report = {"image": {"path": "spine.nii.gz"},
                       "mcdonald_dis": {"qualifying_lesions_per_area": {"spinal_cord": sum(L >= 3 for L in lengths)}}}
        self.out_dir = None


def _brain_report(pv: int, jc: int, it: int) -> dict:
    return {"regions": {"periventricular": {"count": pv, "volume_ml": 0.1}},
            "mcdonald_dis": {"met": False, "areas_not_assessed": ["spinal_cord"],
                             "qualifying_lesions_per_area": {"periventricular": pv, "juxtacortical": jc,
                                                             "infratentorial": it, "spinal_cord": 0}}}


@pytest.mark.parametrize("brain, cord_lengths, met, areas", [
    ((1, 0, 0), [8.0], True, ["periventricular", "spinal_cord"]),
    ((1, 0, 0), [2.0], False, ["periventricular"]),        # cord lesion below the size rule
    ((0, 0, 0), [8.0, 9.0], False, ["spinal_cord"]),       # one area only
    ((1, 1, 0), [], True, ["periventricular", "juxtacortical"]),
])
def test_merge_spine_combines_areas(brain, cord_lengths, met, areas):
    report = _brain_report(*brain)
    merge_spine(report, [_FakeSpine(cord_lengths)], LocationOptions())
    assert report["mcdonald_dis"]["met"] is met
    assert report["mcdonald_dis"]["areas_involved"] == areas
    assert report["mcdonald_dis"]["areas_not_assessed"] == []
    assert report["regions"]["spinal_cord"]["count"] == len(cord_lengths)
    assert report["regions"]["periventricular"]["count"] == brain[0]


def test_analyze_with_spine_phantom(tmp_path, capsys):
    brain = make_phantom()
    cord, _, lesion_truth = cord_phantom()
    flair = save(brain.flair, tmp_path / "flair.nii.gz")
    spine = save(cord, tmp_path / "spine.nii.gz")
    out = tmp_path / "out"
    rc = main(["analyze", "--flair", str(flair), "--spine", str(spine), "--out", str(out), "--model", "baseline"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["regions"]["spinal_cord"]["count"] >= 1
    assert "spinal_cord" in report["mcdonald_dis"]["qualifying_lesions_per_area"]
    assert "spinal_cord" not in report["mcdonald_dis"]["areas_not_assessed"]
    assert (out / "spine" / "0" / "cord.nii.gz").is_file()
    html = (out / "report.html").read_text()
    assert "Spinal cord 0: spine.nii.gz" in html
    spine_html = (out / "spine" / "0" / "report.html").read_text()
    assert "mslesion spine report: spine.nii.gz" in spine_html and "data:image/png;base64," in spine_html


def test_bad_spine_refused_before_writing(tmp_path, capsys):
    brain = make_phantom()
    flair = save(brain.flair, tmp_path / "flair.nii.gz")
    out = tmp_path / "out"
    rc = main(["analyze", "--flair", str(flair), "--spine", str(tmp_path / "missing.nii.gz"), "--out", str(out),
               "--model", "baseline"])
    err = capsys.readouterr().err
    assert rc == 2 and "missing.nii.gz" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
