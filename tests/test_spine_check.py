"""`mslesion spine` refuses an image with no spinal cord, settles the contrast (argument, file name
or image), checks the output folder first, and says why levels are missing (issue 16, items 2 and 8)."""
from __future__ import annotations

import html as _html
import json
import re
from pathlib import Path

import pytest

from mslesion.cli import main
from mslesion.errors import InputError
from mslesion.io import _load_nifti
from mslesion.metrics import dice
from mslesion.spine import NoCordError, analyze_spine, analyze_volume
from mslesion.spine.contrast import contrast_from_image, contrast_from_name

from .factories import make_phantom, save
from .test_spine import cord_phantom


@pytest.mark.parametrize("name, contrast", [
    ("sub-unf01_T2w.nii.gz", "t2"), ("sub-unf01_T2star.nii.gz", "t2s"), ("sub-1_acq-spine_T2starw.nii.gz", "t2s"),
    ("sub-unf01_T1w.nii.gz", "t1"), ("t2s.nii.gz", "t2s"), ("t1w.nii.gz", "t1"), ("t2_fake_lesion.nii.gz", "t2"),
    ("t2_lumbar.nii", "t2"), ("sub-1_acq-cord_STIR.nii.gz", "stir"), ("cord_psir.nii.gz", "psir"),
    ("flair.nii.gz", None), ("image.nii.gz", None), ("t1_to_t2.nii.gz", None), ("sub-1_T1w_FLAIR.nii.gz", None)])
def test_contrast_from_name(name, contrast):
    assert contrast_from_name(Path("/data") / name)[0] == contrast


def _features(score_parts: tuple[float, float, float]) -> dict:
    contrast, sleeve, inner_cv = score_parts
    return {"csf_contrast": contrast, "sleeve": sleeve, "inner_cv": inner_cv}


def test_contrast_from_image_needs_a_clear_winner():
    clear = {"t2": _features((0.6, 1.0, 0.2)), "t2s": _features((0.4, 0.9, 0.7)), "t1": _features((0.8, 0.2, 0.3))}
    ok = {"t2": [], "t2s": [], "t1": []}
    assert contrast_from_image(clear, ok, "x")[0] == "t2"
    close = {"t2": _features((0.6, 1.0, 0.2)), "t2s": _features((0.5, 1.0, 0.2)), "t1": _features((0.1, 0.1, 0.5))}
    best, why = contrast_from_image(close, ok, "x")
    assert best is None and "about as well" in why
    # an implausible cord does not compete
    assert contrast_from_image(close, {"t2": [], "t2s": ["no CSF"], "t1": []}, "x")[0] == "t2"
    assert contrast_from_image(close, {c: ["bad"] for c in close}, "x")[0] is None


def test_brain_is_refused_by_the_cli(tmp_path, capsys):
    brain = save(make_phantom().flair, tmp_path / "flair.nii.gz")
    out = tmp_path / "out"
    for extra in (["--contrast", "t2"], ["--contrast", "t1"], []):
        rc = main(["spine", "--image", str(brain), *extra, "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2, (extra, err)
        assert f"no spinal cord found in {brain}" in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists(), "a refused image leaves no output folder"


def test_t1_contrast_read_from_the_image(tmp_path):
    vol, cord, _ = cord_phantom(t1=True, seed=1)
    res = analyze_spine(save(vol, tmp_path / "image.nii.gz"), None, tmp_path / "out")
    image = res.report["image"]
    assert (image["contrast"], image["contrast_source"]) == ("t1", "image")
    assert "brighter than the CSF" in image["contrast_reason"]
    assert dice(res.cord_mask.data > 0, cord) >= 0.85
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["image"]["contrast_source"] == "image"


def test_contrast_from_the_file_name_and_argument(tmp_path):
    vol, _, _ = cord_phantom(lesion=None, seed=3)
    named = analyze_spine(save(vol, tmp_path / "sub-01_T2w.nii.gz"), None, None).report["image"]
    assert (named["contrast"], named["contrast_source"]) == ("t2", "file name")
    given = analyze_spine(save(vol, tmp_path / "sub-01_T2w.nii.gz"), "stir", None).report["image"]
    assert (given["contrast"], given["contrast_source"]) == ("stir", "argument")


def test_ambiguous_contrast_asks_for_it(tmp_path, capsys):
    # on a synthetic T2 cord the T2 and T2* detectors see the same thing: the image cannot tell them apart
    vol, _, _ = cord_phantom(lesion=None, seed=3)
    path = save(vol, tmp_path / "image.nii.gz")
    with pytest.raises(InputError, match="cannot tell the spinal contrast") as info:
        analyze_spine(path, None, None)
    assert not isinstance(info.value, NoCordError)
    rc = main(["spine", "--image", str(path), "--out", str(tmp_path / "out")])
    assert rc == 2 and "pass --contrast" in capsys.readouterr().err


def test_output_folder_checked_before_the_analysis(tmp_path, capsys, monkeypatch):
    import mslesion.spine.analyze as spine_analyze

    def no_analysis(*args, **kwargs):
        raise AssertionError("the analysis ran before the output folder was checked")

    monkeypatch.setattr(spine_analyze, "to_working", no_analysis)
    vol, _, _ = cord_phantom(lesion=None)
    image = save(vol, tmp_path / "t2.nii.gz")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(["spine", "--image", str(image), "--contrast", "t2", "--out", str(blocker / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and str(blocker) in err and len(err.strip().splitlines()) == 1, err


def _cells(page: str) -> dict[str, object]:
    return {k: json.loads(_html.unescape(v)) for k, v in re.findall(r'data-key="([^"]+)" data-value="([^"]*)"', page)}


def _lookup(report: dict, key: str) -> object:
    for part in key.split("."):
        report = report[part]
    return report


def test_thick_slices_say_why_levels_are_missing(tmp_path):
    vol, _, _ = cord_phantom(shape=(40, 40, 12), zooms=(0.7, 0.7, 5.0), lesion=None, seed=4)
    res = analyze_volume(vol, "t2", tmp_path)
    levels = res.report["levels"]
    assert levels["covered"] == [] and "5 mm apart" in levels["reason"] and "--disc-labels" in levels["reason"]
    page = (tmp_path / "report.html").read_text()
    assert "Vertebral levels not determined: slices are 5 mm apart" in page
    no_levels = analyze_volume(cord_phantom(lesion=None, seed=4)[0], "t2", None,
                               spine_options(auto_levels=False)).report["levels"]
    assert "not requested" in no_levels["reason"]


def spine_options(**kw):
    from mslesion.spine import SpineOptions

    return SpineOptions(**kw)


def test_spine_html_shows_cord_volume_area_per_level_and_levels(tmp_path):
    vol, _, _ = cord_phantom()
    res = analyze_volume(vol, "t2", tmp_path)
    page = (tmp_path / "report.html").read_text()
    cells = _cells(page)
    for key in ("cord.volume_mm3", "cord.length_mm", "cord.csa_mm2_per_level.all.mean", "image.contrast",
                "image.contrast_source", "lesion_count"):
        assert key in cells, key
    for key, value in cells.items():
        assert value == _lookup(res.report, key), key
    assert re.search(r'<table id="csa"><thead><tr><th>level</th><th>mean \(mm\u00b2\)</th>', page)
    assert "Vertebral levels" in page


def test_levels_between_discs_that_skip_one():
    """Disc labels 3 (C2/C3) and 5 (C4/C5), as in sct_testing/t2/labels: C3 and C4 lie between them."""
    from mslesion.spine.levels import levels_per_slice

    lev = levels_per_slice([(40.0, 3), (20.0, 5)], 50, 1.0)
    assert set(lev[31:41]) == {3} and set(lev[21:31]) == {4} and set(lev[:21]) >= {5}
    assert set(lev[41:]) == {2}


@pytest.mark.realdata
def test_real_levels_listed_in_the_html(shared_data, tmp_path):
    t2 = shared_data / "spine" / "sct_testing" / "t2"
    res = analyze_spine(t2 / "t2.nii.gz", "t2", tmp_path, spine_options(disc_labels=t2 / "labels.nii.gz"))
    page = (tmp_path / "report.html").read_text()
    covered = res.report["levels"]["covered"]
    assert covered == ["C2", "C3", "C4", "C5"] and _cells(page)["levels.covered"] == covered
    assert len(res.report["cord"]["csa_mm2_per_level"]) == len(covered) + 1   # each level and "all"
    for level in covered:
        assert f"<td>{level}</td>" in page


@pytest.mark.realdata
def test_real_axial_7_5mm_says_why_no_levels(shared_data, tmp_path):
    res = analyze_spine(shared_data / "spine" / "sct_tutorial" / "t2_ms" / "t2.nii.gz", "t2", tmp_path)
    assert res.report["levels"]["covered"] == []
    assert "7.5 mm apart" in res.report["levels"]["reason"]
    assert "Vertebral levels not determined" in (tmp_path / "report.html").read_text()


@pytest.mark.realdata
@pytest.mark.slow
def test_real_t2star_contrast_from_the_file_name(shared_data):
    t2s = shared_data / "spine" / "sct_testing" / "t2s"
    res = analyze_spine(t2s / "t2s.nii.gz", None, None)
    assert (res.report["image"]["contrast"], res.report["image"]["contrast_source"]) == ("t2s", "file name")
    assert dice(res.cord_mask.data > 0, _load_nifti(t2s / "t2s_seg.nii.gz", "mask").data > 0.5) >= 0.9


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("rel, contrast", [("sct_testing/t2s/t2s.nii.gz", "t2s"), ("sct_testing/t1/t1w.nii.gz", "t1"),
                                           ("ivadomed_testing/sub-unf01/sub-unf01_T2w.nii.gz", "t2")])
def test_real_contrast_from_the_image(shared_data, tmp_path, rel, contrast):
    neutral = tmp_path / "image.nii.gz"
    neutral.symlink_to(shared_data / "spine" / rel)
    res = analyze_spine(neutral, None, None)
    assert (res.report["image"]["contrast"], res.report["image"]["contrast_source"]) == (contrast, "image")


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("rel, contrast", [("isbi2015/training01/flair.nii.gz", "t2"),
                                           ("ljubljana/patient07/t2.nii.gz", "t2"),
                                           ("longitudinal/patient12/study1_t1.nii.gz", "t1")])
def test_real_brain_is_refused(shared_data, tmp_path, capsys, rel, contrast):
    image = shared_data / "brain_ms" / rel
    rc = main(["spine", "--image", str(image), "--contrast", contrast, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and f"no spinal cord found in {image}" in err, err
    assert not (tmp_path / "out").exists()
