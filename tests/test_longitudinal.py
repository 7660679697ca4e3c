"""Longitudinal comparison (issue 8): change detection, transforms, CLI, end-to-end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mslesion.cli import main
from mslesion.errors import InputError
from mslesion.longitudinal import ChangeOptions, detect_changes, read_itk_transform
from mslesion.longitudinal.change import DISAPPEARING, ENLARGING, NEW, difference_z

from .factories import ball, make_phantom, save

SHAPE = (96, 96, 64)
STABLE = (30, 40, 32, 3.0)       # present at both time points
GROWING = (62, 40, 32, 2.5)      # radius 2.5 -> 4.5
VANISHING = (46, 64, 36, 3.0)    # only at baseline
NEW_LES = (46, 28, 28, 3.0)      # only at follow-up


def _pair(seed: int = 0, change: bool = True):
    """Baseline/follow-up phantoms on one grid; the follow-up has another scale, bias and noise."""
    base_lesions = (STABLE, GROWING, VANISHING)
    grown = (GROWING[0], GROWING[1], GROWING[2], 4.5)
    follow_lesions = (STABLE, grown, NEW_LES) if change else base_lesions
    b = make_phantom(SHAPE, zooms=(1.0, 1.0, 1.0), lesions=base_lesions, seed=seed)
    f = make_phantom(SHAPE, zooms=(1.0, 1.0, 1.0), lesions=follow_lesions, seed=seed + 1, scale=1300.0)
    x = np.linspace(-1, 1, SHAPE[0])[:, None, None]
    bias = (1.0 + 0.05 * x).astype(np.float32)  # residual (post-N4) intensity ramp only at follow-up
    f1 = f.flair.data * bias
    return b, f, f1


def _detect(b, f, f1, **kw):
    opts = ChangeOptions(**kw)
    return detect_changes(b.flair.data, f1, b.lesions.data, f.lesions.data, b.brain.data > 0, (1.0, 1.0, 1.0), 0.5,
                          opts)


def _kind_at(changes, centre) -> set[int]:
    region = ball(SHAPE, centre[:3], centre[3] + 2)
    return set(np.unique(changes.kinds[region]).tolist()) - {0}


def test_detects_new_enlarging_and_disappearing_lesions():
    b, f, f1 = _pair()
    ch = _detect(b, f, f1)
    assert _kind_at(ch, NEW_LES) == {NEW}
    assert _kind_at(ch, (*GROWING[:3], 4.5)) == {ENLARGING}
    assert _kind_at(ch, VANISHING) == {DISAPPEARING}
    assert _kind_at(ch, STABLE) == set()
    assert ch.count("new") == 1 and ch.count("enlarging") == 1 and ch.count("disappearing") == 1
    assert ch.count("shrinking") == 0
    # enlarging marks only the grown shell, not the old core
    assert not ch.new_enlarging[GROWING[0], GROWING[1], GROWING[2]]
    grown_shell = ball(SHAPE, GROWING[:3], 4.5) & ~ball(SHAPE, GROWING[:3], 2.5) & (b.brain.data > 0)
    hit = ch.new_enlarging[grown_shell].mean()
    assert hit > 0.5, hit
    new_true = ball(SHAPE, NEW_LES[:3], NEW_LES[3])
    dice = 2 * (ch.kinds[new_true] == NEW).sum() / (new_true.sum() + (ch.kinds == NEW).sum())
    assert dice > 0.6, dice


def test_disappearing_needs_followup_flair_back_to_normal():
    """A baseline lesion the follow-up segmentation misses but whose FLAIR is still bright is not 'gone'."""
    b, f, f1 = _pair()
    faded = ball(SHAPE, VANISHING[:3], VANISHING[3]) & (b.brain.data > 0)
    f1 = f1.copy()
    f1[faded] = 0.85 * 1300.0  # dimmer than at baseline, still far above white matter (0.45)
    ch = _detect(b, f, f1)
    assert _kind_at(ch, VANISHING) == set()
    gone = [c for c in ch.rejected if c.kind == "disappearing"]
    assert gone and "not returned to normal-appearing tissue" in gone[0].evidence["failed"]
    # the other calls keep their evidence
    assert ch.count("new") == 1 and ch.count("enlarging") == 1
    new = next(c for c in ch.table if c.kind == "new")
    assert new.evidence["supported"] and new.evidence["difference"] >= 0.6
    assert new.evidence["other_flair"] <= new.evidence["normal_level"]


def test_segmentation_speck_without_flair_signal_does_not_make_a_new_lesion_enlarging():
    """A baseline 'lesion' that the baseline FLAIR does not show is no evidence that the lesion existed."""
    b, f, f1 = _pair()
    p0 = b.lesions.data.copy()
    speck = ball(SHAPE, NEW_LES[:3], 1.0)
    p0[speck] = 1.0  # the baseline segmenter marks 7 voxels of normal-looking white matter
    ch = detect_changes(b.flair.data, f1, p0, f.lesions.data, b.brain.data > 0, (1.0, 1.0, 1.0), 0.5,
                        ChangeOptions())
    assert _kind_at(ch, NEW_LES) == {NEW}
    assert ch.kinds[NEW_LES[:3]] == NEW  # the speck's voxels belong to the new lesion


def test_lesion_forming_over_a_faint_baseline_focus_is_new_not_enlarging():
    """A baseline focus the segmenter outlines, brighter than white matter but far dimmer than the lesion
    that forms over it, is no lesion 'already there': its own voxels brighten by a clear difference."""
    b, f, f1 = _pair()
    b0 = b.flair.data.copy()
    p0 = b.lesions.data.copy()
    focus = ball(SHAPE, NEW_LES[:3], 1.5) & (b.brain.data > 0)
    b0[focus] = 0.7 * 1000.0  # above grey matter (0.55) and the NAWM p98, below the lesion (1.0)
    p0[focus] = 1.0
    ch = detect_changes(b0, f1, p0, f.lesions.data, b.brain.data > 0, (1.0, 1.0, 1.0), 0.5, ChangeOptions())
    assert _kind_at(ch, NEW_LES) == {NEW}, ch.table
    # a real enlargement (a baseline lesion as bright as at follow-up) stays enlarging
    assert _kind_at(ch, (*GROWING[:3], 4.5)) == {ENLARGING}


def test_lesion_next_to_a_resolving_baseline_lesion_is_new_not_enlarging():
    """A baseline lesion that is back to normal at follow-up did not grow into the new lesion beside it."""
    beside = (46, 59, 36, 3.0)  # overlaps VANISHING's rim (y 61-62); VANISHING itself resolves
    b = make_phantom(SHAPE, zooms=(1.0, 1.0, 1.0), lesions=(STABLE, VANISHING), seed=0)
    f = make_phantom(SHAPE, zooms=(1.0, 1.0, 1.0), lesions=(STABLE, beside), seed=1, scale=1300.0)
    ch = detect_changes(b.flair.data, f.flair.data, b.lesions.data, f.lesions.data, b.brain.data > 0,
                        (1.0, 1.0, 1.0), 0.5, ChangeOptions())
    inside = ball(SHAPE, beside[:3], 2.0)
    assert set(np.unique(ch.kinds[inside]).tolist()) - {0} == {NEW}, ch.table


def test_faint_new_lesion_is_not_called_and_dit_not_met():
    """A new focus the follow-up segmenter calls lesion, but with a faint FLAIR rise, is no DIT evidence."""
    from mslesion.lesions import Lesion
    from mslesion.longitudinal.verdict import dit_verdict

    b, f, f1 = _pair(change=False)
    faint = ball(SHAPE, NEW_LES[:3], NEW_LES[3]) & (b.brain.data > 0)
    f1 = f1.copy()
    f1[faint] += 0.06 * 1300.0  # white matter 0.45 -> 0.51 (noise 0.02 per voxel)
    p1 = f.lesions.data.copy()
    p1[faint] = 1.0  # the follow-up segmentation calls it lesion
    ch = detect_changes(b.flair.data, f1, b.lesions.data, p1, b.brain.data > 0, (1.0, 1.0, 1.0), 0.5,
                        ChangeOptions())
    assert ch.count("new") == 0, ch.table
    faint_calls = [c for c in ch.rejected if c.kind == "new"]
    assert faint_calls and "faint FLAIR difference" in faint_calls[0].evidence["failed"]
    lesions = [Lesion(t.label, t.voxels, t.change_mm3 / 1000, 0.0, 0.0, 0.0,
                      extra={"change": t.kind, "evidence_supported": True})
               for t in ch.table]
    verdict = dit_verdict(ch, lesions)
    assert verdict["verdict"] == "not met" and verdict["supporting_lesions"] == []
    assert verdict["rejected_candidates_total"] >= 1 and "faint" in verdict["reason"]
    # without the evidence requirement the same focus is called new (the issue-8 behaviour)
    loose = ChangeOptions()
    loose.evidence.required = False
    old = detect_changes(b.flair.data, f1, b.lesions.data, p1, b.brain.data > 0, (1.0, 1.0, 1.0), 0.5, loose)
    assert old.count("new") >= 1


def test_quantile_matching_undoes_a_contrast_change_but_keeps_lesion_contrast():
    from mslesion.longitudinal.change import match_quantiles

    rng = np.random.default_rng(1)
    target = rng.normal(0, 1, (30, 30, 30)).astype(np.float32)
    moving = np.tanh(0.5 * target) * 3 + 0.2  # monotone, non-linear: another contrast
    mask = np.ones(target.shape, bool)
    matched = match_quantiles(moving, target, mask, 20)
    inside = (target > np.percentile(target, 2)) & (target < np.percentile(target, 98))
    assert np.abs(matched - target)[inside].max() < 0.15
    assert np.abs(moving - target)[inside].max() > 0.5


def test_grey_matter_contrast_change_is_not_a_lesion_change():
    """Follow-up with brighter grey matter (another FLAIR contrast), lesions unchanged: no candidates."""
    b, f, _ = _pair(change=False)
    gm = (b.flair.data > 0.5 * 1000) & (b.flair.data < 0.7 * 1000) & (b.brain.data > 0)
    f1 = f.flair.data.copy()
    f1[gm] *= 1.25  # grey matter 0.55 -> 0.69 of the lesion level at follow-up only
    loose = ChangeOptions(match_quantiles=0)
    loose.evidence.required = False
    raw = detect_changes(b.flair.data, f1, b.lesions.data, f.lesions.data, b.brain.data > 0, (1.0, 1.0, 1.0),
                         0.5, loose)
    matched = ChangeOptions()
    matched.evidence.required = False
    ch = detect_changes(b.flair.data, f1, b.lesions.data, f.lesions.data, b.brain.data > 0, (1.0, 1.0, 1.0),
                        0.5, matched)
    assert len(raw.table) > 0
    assert ch.table == [], ch.table


def test_no_change_gives_no_findings_despite_scale_bias_and_noise():
    b, f, f1 = _pair(seed=3, change=False)
    ch = _detect(b, f, f1)
    assert ch.table == [], ch.table


def test_growth_limits_are_configurable():
    b, f, f1 = _pair()
    strict = _detect(b, f, f1, rel_growth=10.0)
    assert strict.count("enlarging") == 0 and strict.count("new") == 1
    big = _detect(b, f, f1, abs_growth_mm3=10_000.0, min_new_mm3=10_000.0)
    assert big.count("enlarging") == 0 and big.count("new") == 0


def test_difference_z_is_edge_aware_and_ignores_smooth_bias():
    rng = np.random.default_rng(0)
    f0 = rng.normal(0, 1, (40, 40, 40)).astype(np.float32)
    f1 = f0 + rng.normal(0, 0.1, f0.shape).astype(np.float32)
    f1 += np.linspace(0, 3, 40)[:, None, None].astype(np.float32)  # smooth ramp
    f1[20, 20, 20] += 2.0
    mask = np.ones(f0.shape, bool)
    z, sigma = difference_z(f0, f1, mask, (1.0, 1.0, 1.0), smooth_mm=0.0, bias_mm=5.0)
    assert sigma > 0
    assert z[20, 20, 20] > 5
    assert np.percentile(np.abs(z[5:35, 5:35, 5:35]), 99) < 4


def test_mismatched_grids_are_refused():
    a = np.zeros((10, 10, 10), np.float32)
    with pytest.raises(ValueError, match="one grid"):
        detect_changes(a, np.zeros((10, 10, 9), np.float32), a, a, a > 0, (1, 1, 1))


ITK_TEXT = """#Insight Transform File V1.0
#Transform 0
Transform: MatrixOffsetTransformBase_double_3_3
Parameters: """ + ("0.997801 0.0232712 0.0112899 -0.0239862 1.00232 -0.027004 -0.0115259 0.028399 1.00282 "
                   "-0.573382 0.325033 -5.23643") + """
FixedParameters: 2.42848 9.75986 33.0473
"""


def test_itk_transform_matches_simpleitk(tmp_path: Path):
    import SimpleITK as sitk  # a core dependency: missing, this fails rather than skips
    path = tmp_path / "t.txt"
    path.write_text(ITK_TEXT)
    ras = read_itk_transform(path)
    ref = sitk.ReadTransform(str(path))
    for p_ras in ([0.0, 0.0, 0.0], [40.0, -20.0, 15.0], [-70.0, 55.0, -30.0]):
        p_lps = [-p_ras[0], -p_ras[1], p_ras[2]]
        q = np.array(ref.TransformPoint(p_lps))
        expected = np.array([-q[0], -q[1], q[2]])
        got = (ras @ np.append(p_ras, 1.0))[:3]
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_itk_transform_bad_files(tmp_path: Path):
    bad = tmp_path / "bad.txt"
    bad.write_text("Transform: BSplineTransform_double_3_3\nParameters: 1 2 3\n")
    with pytest.raises(InputError, match="unsupported transform"):
        read_itk_transform(bad)
    short = tmp_path / "short.txt"
    short.write_text("Transform: AffineTransform_double_3_3\nParameters: 1 0 0 0 1 0\nFixedParameters: 0 0 0\n")
    with pytest.raises(InputError, match="12 parameters"):
        read_itk_transform(short)
    with pytest.raises(InputError, match="cannot read"):
        read_itk_transform(tmp_path / "missing.txt")


def test_cli_lists_compare_and_reports_missing_input(tmp_path: Path, capsys):
    assert main(["compare", "--help"]) == 0
    helptext = capsys.readouterr().out
    assert "--followup-flair" in helptext
    assert "--min-significance" in helptext and "--no-evidence" in helptext
    b, _, _ = _pair()
    base = save(b.flair, tmp_path / "b.nii.gz")
    code = main(["compare", "--baseline-flair", str(base), "--followup-flair", str(tmp_path / "nope.nii.gz"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "nope.nii.gz" in err and "does not exist" in err


@pytest.mark.slow
def test_compare_end_to_end_on_shifted_phantom(tmp_path: Path):
    """Follow-up stored with a world shift, another scale and bias: registration + detection + outputs.

    N4 and template brain extraction are switched off (a phantom is no head); the phantom's
    brain mask is given instead, through the same option users have.
    """
    import nibabel as nib

    from mslesion.longitudinal import CompareOptions, compare_scans
    from mslesion.pipeline import AnalyzeOptions
    from mslesion.preprocess import PreprocessOptions

    b, f, f1 = _pair()
    base = save(b.flair, tmp_path / "base.nii.gz")
    brain = save(b.brain, tmp_path / "brain.nii.gz", dtype=np.uint8)
    shift = np.array([4.0, -3.0, 2.0])
    aff = f.flair.affine.copy()
    aff[:3, 3] += shift
    follow = save(f1, tmp_path / "follow.nii.gz", affine=aff)
    pre = PreprocessOptions(bias_correction=False, skull_strip=False)
    opts = CompareOptions(analyze=AnalyzeOptions(model="baseline", device="cpu", preprocess=pre), brain_mask=brain)
    out = tmp_path / "out"
    result = compare_scans({"flair": base}, {"flair": follow}, out, opts)
    report = json.loads((out / "compare_report.json").read_text())
    assert report["changes"]["new"]["count"] == 1, report["changes"]
    assert report["changes"]["enlarging"]["count"] == 1
    assert report["changes"]["disappearing"]["count"] == 1
    assert report["new_lesion_evidence"]["new_t2_lesion"] is True
    dit = report["new_lesion_evidence"]["dissemination_in_time"]
    assert dit["verdict"] == "met"
    new_ids = [les.id for les in result.lesions if les.extra["change"] == "new"]
    assert [e["id"] for e in dit["supporting_lesions"]] == new_ids
    assert dit["supporting_lesions"][0]["evidence"]["flair_difference"] >= 0.6
    calls = {c["change"]: c for c in report["change_calls"]}
    assert set(calls) == {"new", "enlarging", "disappearing"}
    assert calls["disappearing"]["evidence"]["resolved_fraction"] >= 0.5
    assert abs(report["registration"]["translation_mm"] - np.linalg.norm(shift)) < 0.5
    np.testing.assert_allclose(result.transform[:3, 3], shift, atol=0.5)
    on_follow = np.asarray(nib.load(str(out / "new_enlarging_followup.nii.gz")).dataobj)
    on_base = np.asarray(nib.load(str(out / "new_enlarging_baseline.nii.gz")).dataobj)
    # the same voxel indices in both files: the follow-up's shift is in its affine only
    assert on_follow[NEW_LES[:3]] == 1 and on_base[NEW_LES[:3]] == 1
    assert on_base[STABLE[:3]] == 0 and on_follow[STABLE[:3]] == 0
    assert not list(out.rglob("*.mslesion-tmp-*"))
    rows = (out / "changes.csv").read_text().splitlines()
    assert len(rows) - 1 == len(result.lesions) == 3
    assert {r.split(",")[7] for r in rows[1:]} == {"new", "enlarging", "disappearing"}
    ids = np.unique(np.asarray(nib.load(str(out / "change_labels_baseline.nii.gz")).dataobj))
    assert set(ids.tolist()) - {0} == {int(r.split(",")[0]) for r in rows[1:]}
    html = (out / report["qc_html"]).read_text()
    assert "data:image/png;base64," in html and "new_t2_lesion" in html


@pytest.mark.realdata
def test_distributor_transforms_align_patient12(shared_data: Path):
    """The ITK reader gives transforms that bring both studies into the ground truth's common space."""
    import nibabel as nib
    from scipy import ndimage

    from mslesion.io import load_volume

    p12 = shared_data / "brain_ms" / "longitudinal" / "patient12"
    ref = nib.load(str(p12 / "brainmask_common_space.nii.gz"))
    brain = np.asarray(ref.dataobj) > 0
    sample = np.argwhere(brain)[::50]

    def in_common(study: str, transform: np.ndarray) -> np.ndarray:
        vol = load_volume(p12 / f"{study}_flair.nii.gz")
        world = transform @ ref.affine @ np.c_[sample, np.ones(len(sample))].T
        vox = np.linalg.inv(vol.affine) @ world
        return ndimage.map_coordinates(vol.data, vox[:3], order=1)

    t1, t2 = (read_itk_transform(p12 / f"study{i}_flair_to_common_space.txt") for i in (1, 2))
    aligned = np.corrcoef(in_common("study1", t1), in_common("study2", t2))[0, 1]
    raw = np.corrcoef(in_common("study1", np.eye(4)), in_common("study2", np.eye(4)))[0, 1]
    assert aligned > 0.9 > 0.5 > raw, (aligned, raw)


def test_compare_auto_model_is_the_change_detection_default_and_ships():
    """`compare --model auto` segments with DEFAULT_COMPARE_MODEL (measured best for change calls), a named
    model or the baseline is kept, and that model is installed (a model folder whose spec loads)."""
    from mslesion.longitudinal.compare import compare_analyze_options
    from mslesion.model import DEFAULT_COMPARE_MODEL, DEFAULT_FLAIR_MODEL, resolve_model_folder
    from mslesion.model.store import read_any_spec
    from mslesion.pipeline import AnalyzeOptions

    assert compare_analyze_options(AnalyzeOptions()).model == DEFAULT_COMPARE_MODEL
    for named in (DEFAULT_FLAIR_MODEL, "baseline"):
        assert compare_analyze_options(AnalyzeOptions(model=named)).model == named
    spec = read_any_spec(resolve_model_folder(DEFAULT_COMPARE_MODEL, {"flair"}))
    assert spec.model_id == DEFAULT_COMPARE_MODEL and spec.required == {"flair"}
