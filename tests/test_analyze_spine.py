"""`mslesion analyze --spine`: brain and cord in one report and one DIS verdict."""
from __future__ import annotations

import json

import pytest

from mslesion.cli import main
from mslesion.location import LocationOptions
from mslesion.pipeline import merge_spine

from .factories import make_phantom, save
from .test_spine import cord_phantom
from .test_spine_size_rule import spine_result
from .truth import assert_finds_phantom_lesions


def _brain_report(pv: int, jc: int, it: int) -> dict:
    return {"regions": {"periventricular": {"count": pv, "volume_ml": 0.1}},
            "mcdonald_dis": {"met": False, "areas_not_assessed": ["spinal_cord"],
                             "qualifying_lesions_per_area": {"periventricular": pv, "juxtacortical": jc,
                                                             "infratentorial": it, "spinal_cord": 0}}}


@pytest.mark.parametrize("brain, cord_lesions, met, areas", [
    ((1, 0, 0), ["over_along_cord"], True, ["periventricular", "spinal_cord"]),
    ((1, 0, 0), ["under"], False, ["periventricular"]),    # cord lesion below the 3 mm size rule
    ((0, 0, 0), ["over_left_right", "over_along_cord"], False, ["spinal_cord"]),  # one area only
    ((1, 1, 0), [], True, ["periventricular", "juxtacortical"]),
])
def test_merge_spine_combines_areas(brain, cord_lesions, met, areas):
    """Real spinal analyses of painted cord phantoms (tests/test_spine_size_rule.py) merged into a brain report."""
    report = _brain_report(*brain)
    spine, _ = spine_result(*cord_lesions)
    assert len(spine.lesions) == len(cord_lesions)
    merge_spine(report, [spine], LocationOptions())
    assert report["mcdonald_dis"]["met"] is met
    assert report["mcdonald_dis"]["areas_involved"] == areas
    assert report["mcdonald_dis"]["areas_not_assessed"] == []
    assert report["regions"]["spinal_cord"]["count"] == len(cord_lesions)
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
    # the answers against the truth: the brain's two painted lesions, the cord's one
    from mslesion.io import load_volume
    from mslesion.metrics import score_arrays

    assert_finds_phantom_lesions(load_volume(out / "lesions.nii.gz"), brain.lesions)
    assert report["lesion_count"] == 2
    cord_found = load_volume(out / "spine" / "0" / "cord_lesions.nii.gz").data > 0
    cord_scores = score_arrays(cord_found, lesion_truth, 1.0)
    assert cord_scores.lesion_f1 == 1.0 and cord_scores.dice >= 0.5, cord_scores  # test_spine: same phantom
    assert report["regions"]["spinal_cord"]["count"] == 1
    # the cord lesion is 12.5 mm long: it qualifies, and the cord is a McDonald area of the verdict
    assert report["mcdonald_dis"]["qualifying_lesions_per_area"]["spinal_cord"] == 1
    assert "spinal_cord" in report["mcdonald_dis"]["areas_involved"]
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
