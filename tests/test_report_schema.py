"""report.json keeps its keys: the key paths of each kind of report, pinned (issue 19).

Pinned from the code before report.json became the typed :class:`mslesion.report.Report`: the
demo subject with the default model, a phantom with ``--spine`` (baseline model), ``mslesion
report`` on a given mask, and the spinal report.  Region and input names stay in the paths
(the same subject gives the same ones); the model card's validation block, the model's
inference settings and the enhancement rules are pinned one level deep (their content is
the model's or the rules', not the report's).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mslesion.cli import main

from .factories import make_phantom, save
from .test_spine import cord_phantom

ROOT = Path(__file__).resolve().parents[1]
SHALLOW = ("model.validation", "model.inference", "enhancement.rules",
           # compare_report.json: the change options, evidence levels and brain-volume change (their own content)
           "settings.change", "settings.evidence_levels", "volume_change")


def key_paths(value: object, prefix: str = "") -> list[str]:
    """Dotted key paths of a JSON value, in order; list items as ``[]`` (the first item's keys)."""
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            out.append(path)
            if path not in SHALLOW:
                out += key_paths(v, path)
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        out += key_paths(value[0], prefix + "[]")
    return out


DIS = ["mcdonald_dis", "mcdonald_dis.met", "mcdonald_dis.areas_involved", "mcdonald_dis.qualifying_lesions_per_area",
       "mcdonald_dis.qualifying_lesions_per_area.periventricular",
       "mcdonald_dis.qualifying_lesions_per_area.juxtacortical",
       "mcdonald_dis.qualifying_lesions_per_area.infratentorial",
       "mcdonald_dis.qualifying_lesions_per_area.spinal_cord", "mcdonald_dis.areas_not_assessed",
       "mcdonald_dis.min_areas", "mcdonald_dis.min_long_axis_mm", "mcdonald_dis.lesion_size_rule", "mcdonald_dis.rule",
       "mcdonald_dis.note"]


def _input(name: str) -> list[str]:
    return [f"inputs.{name}", f"inputs.{name}.path", f"inputs.{name}.sha256", f"inputs.{name}.shape",
            f"inputs.{name}.voxel_size_mm"]


def _regions(*names: str) -> list[str]:
    return [p for n in names for p in (f"regions.{n}", f"regions.{n}.count", f"regions.{n}.volume_ml")]


REGIONS = ("periventricular", "juxtacortical", "infratentorial", "deep_white_matter")
SETTINGS = ["settings", "settings.min_lesion_mm3", "settings.device", "settings.tta", "settings.fp32"]
ENHANCEMENT_NO_T1 = ["enhancement", "enhancement.rules", "enhancement.t1_hypointensity_assessed",
                     "enhancement.enhancement_assessed", "enhancement.dissemination_in_time",
                     "enhancement.dissemination_in_time.assessed", "enhancement.dissemination_in_time.met",
                     "enhancement.dissemination_in_time.statement", "enhancement.dissemination_in_time.reason"]

MRI_DISSEMINATION = ["mri_dissemination", "mri_dissemination.met", "mri_dissemination.dissemination_in_space",
                     "mri_dissemination.dissemination_in_time", "mri_dissemination.statement"]

VOLUMES = ["volumes", "volumes.icv_ml", "volumes.brain_ml", "volumes.gm_ml", "volumes.wm_ml", "volumes.csf_ml",
           "volumes.lesion_ml", "volumes.bpf", "volumes.lesion_pct_icv", "volumes.method", "volumes.inputs",
           "volumes.icv_source", "volumes.priors", "volumes.caveats", "volumes.seconds", "volumes.labels",
           "volumes.labels.0", "volumes.labels.1", "volumes.labels.2", "volumes.labels.3", "volumes.labels.4"]

DEMO = (["lesion_count", "total_volume_ml", "regions", *_regions(*REGIONS, "spinal_cord"), *DIS, "inputs",
         *_input("flair"), *_input("t1"), "model", "model.id", "model.kind", "model.threshold", "model.min_peak",
         "model.inference", "model.validation", *SETTINGS, "timings_s", "timings_s.preprocess_s", "timings_s.segment_s",
         "timings_s.location_s", "timings_s.enhancement_s", "timings_s.volumes_s", "timings_s.total_s",
         "timings_s.qc_s", "mslesion_version", "brain_mask", "brain_mask.method", "brain_mask.volume_ml",
         "brain_mask.rim_trimmed_ml", "brain_mask.lesions_outside_dropped",
         "enhancement", "enhancement.rules",
         "enhancement.t1_hypointensity_assessed", "enhancement.enhancement_assessed", "enhancement.black_holes",
         "enhancement.reference_t1", "enhancement.reference_t1.nawm", "enhancement.reference_t1.csf",
         "enhancement.dissemination_in_time", "enhancement.dissemination_in_time.assessed",
         "enhancement.dissemination_in_time.met", "enhancement.dissemination_in_time.statement",
         "enhancement.dissemination_in_time.reason", *MRI_DISSEMINATION, *VOLUMES])

# the keys every brain report starts with (analyze, analyze --spine, report --lesions)
BRAIN_HEAD = [
    "lesion_count", "total_volume_ml", "regions", "regions.periventricular", "regions.periventricular.count",
    "regions.periventricular.volume_ml", "regions.juxtacortical", "regions.juxtacortical.count",
    "regions.juxtacortical.volume_ml", "regions.infratentorial", "regions.infratentorial.count",
    "regions.infratentorial.volume_ml", "regions.deep_white_matter", "regions.deep_white_matter.count",
    "regions.deep_white_matter.volume_ml", "regions.spinal_cord", "regions.spinal_cord.count",
    "regions.spinal_cord.volume_ml", "mcdonald_dis", "mcdonald_dis.met", "mcdonald_dis.areas_involved",
    "mcdonald_dis.qualifying_lesions_per_area", "mcdonald_dis.qualifying_lesions_per_area.periventricular",
    "mcdonald_dis.qualifying_lesions_per_area.juxtacortical",
    "mcdonald_dis.qualifying_lesions_per_area.infratentorial",
    "mcdonald_dis.qualifying_lesions_per_area.spinal_cord", "mcdonald_dis.areas_not_assessed",
    "mcdonald_dis.min_areas", "mcdonald_dis.min_long_axis_mm", "mcdonald_dis.lesion_size_rule",
    "mcdonald_dis.rule", "mcdonald_dis.note", "inputs", "inputs.flair", "inputs.flair.path",
    "inputs.flair.sha256", "inputs.flair.shape", "inputs.flair.voxel_size_mm", "model", "model.id", "model.kind",
    "model.threshold"]

PINNED: dict[str, list[str]] = {
    "analyze_spine": [
        *BRAIN_HEAD, "model.min_peak", "model.validation", "settings", "settings.min_lesion_mm3",
        "settings.device",
        "settings.tta", "settings.fp32", "timings_s", "timings_s.preprocess_s", "timings_s.segment_s",
        "timings_s.location_s", "timings_s.enhancement_s", "timings_s.volumes_s", "timings_s.total_s",
        "timings_s.qc_s", "mslesion_version",
        "brain_mask", "brain_mask.method", "brain_mask.volume_ml",
         "brain_mask.rim_trimmed_ml", "brain_mask.lesions_outside_dropped", "enhancement", "enhancement.rules",
        "enhancement.t1_hypointensity_assessed", "enhancement.enhancement_assessed",
        "enhancement.dissemination_in_time", "enhancement.dissemination_in_time.assessed",
        "enhancement.dissemination_in_time.met", "enhancement.dissemination_in_time.statement",
        "enhancement.dissemination_in_time.reason", *MRI_DISSEMINATION, "spine", "spine[].image",
        "spine[].lesion_count",
        "spine[].lesions", "spine[].lesions[].id", "spine[].lesions[].volume_mm3", "spine[].lesions[].length_mm",
        "spine[].lesions[].max_axial_extent_mm", "spine[].lesions[].levels", "spine[].lesions[].centroid_x",
        "spine[].lesions[].centroid_y", "spine[].lesions[].centroid_z", "spine[].lesions[].region",
        "spine[].out_dir", *VOLUMES],
    "report": [
        *BRAIN_HEAD, "model.validation", "settings", "settings.min_lesion_mm3", "settings.device",
        "settings.tta", "settings.fp32", "timings_s", "timings_s.preprocess_s", "timings_s.location_s",
        "timings_s.volumes_s", "timings_s.total_s", "timings_s.qc_s", "mslesion_version", "lesion_mask_input",
        "lesion_mask_input.path",
        "lesion_mask_input.sha256", "lesion_mask_input.resampled", *VOLUMES],
    "spine": [
        "kind", "image", "image.path", "image.contrast", "image.contrast_source", "image.contrast_reason",
        "image.shape", "image.voxel_size_mm", "cord", "cord.volume_mm3", "cord.slices_found", "cord.slices",
        "cord.length_mm", "cord.csa_mm2_per_level", "cord.csa_mm2_per_level.all", "cord.csa_mm2_per_level.all.mean",
        "cord.csa_mm2_per_level.all.sd", "cord.csa_mm2_per_level.all.slices", "cord.csa_mm2_per_level.C1",
        "cord.csa_mm2_per_level.C1.mean", "cord.csa_mm2_per_level.C1.sd", "cord.csa_mm2_per_level.C1.slices",
        "cord.csa_mm2_per_level.C2", "cord.csa_mm2_per_level.C2.mean", "cord.csa_mm2_per_level.C2.sd",
        "cord.csa_mm2_per_level.C2.slices", "cord.csa_mm2_per_level.C3", "cord.csa_mm2_per_level.C3.mean",
        "cord.csa_mm2_per_level.C3.sd", "cord.csa_mm2_per_level.C3.slices", "cord.csa_mm2_per_level.C4",
        "cord.csa_mm2_per_level.C4.mean", "cord.csa_mm2_per_level.C4.sd", "cord.csa_mm2_per_level.C4.slices",
        "cord.plausibility", "cord.plausibility.slices", "cord.plausibility.found_fraction",
        "cord.plausibility.length_mm", "cord.plausibility.tube_fraction", "cord.plausibility.tube_length_mm",
        "cord.plausibility.csa_median_mm2", "cord.plausibility.csa_cv", "cord.plausibility.csf_enclosure",
        "cord.plausibility.sleeve", "cord.plausibility.inner_cv", "cord.plausibility.csf_contrast", "levels",
        "levels.source", "levels.reason", "levels.covered", "levels.discs", "levels.discs[].disc",
        "levels.discs[].between", "levels.discs[].world_mm", "lesion_count", "total_lesion_volume_mm3", "regions",
        "regions.spinal_cord", "regions.spinal_cord.count", "regions.spinal_cord.volume_ml", "mcdonald_dis",
        "mcdonald_dis.met", "mcdonald_dis.areas_involved", "mcdonald_dis.qualifying_lesions_per_area",
        "mcdonald_dis.qualifying_lesions_per_area.periventricular",
        "mcdonald_dis.qualifying_lesions_per_area.juxtacortical",
        "mcdonald_dis.qualifying_lesions_per_area.infratentorial",
        "mcdonald_dis.qualifying_lesions_per_area.spinal_cord", "mcdonald_dis.areas_not_assessed",
        "mcdonald_dis.min_areas", "mcdonald_dis.min_long_axis_mm", "mcdonald_dis.lesion_size_rule",
        "mcdonald_dis.rule", "mcdonald_dis.note", "method", "method.cord", "method.lesions", "mslesion_version",
        "timings_s", "timings_s.total_s"],
}


@pytest.mark.slow
def test_demo_report_keys(tmp_path):
    demo = ROOT / "data_samples" / "demo"
    out = tmp_path / "demo"
    assert main(["analyze", "--flair", str(demo / "flair.nii.gz"), "--t1", str(demo / "t1.nii.gz"),
                 "--out", str(out)]) == 0
    assert key_paths(json.loads((out / "report.json").read_text())) == DEMO


@pytest.fixture(scope="module")
def phantom_reports(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("schema")
    brain = make_phantom()
    cord, _, _ = cord_phantom()
    flair = save(brain.flair, tmp / "flair.nii.gz")
    spine = save(cord, tmp / "spine.nii.gz")
    mask = save(brain.lesions, tmp / "mask.nii.gz")
    assert main(["analyze", "--flair", str(flair), "--spine", str(spine), "--out", str(tmp / "a"),
                 "--model", "baseline"]) == 0
    assert main(["report", "--flair", str(flair), "--lesions", str(mask), "--out", str(tmp / "r")]) == 0
    return {name: json.loads(p.read_text()) for name, p in (("analyze_spine", tmp / "a" / "report.json"),
                                                              ("report", tmp / "r" / "report.json"),
                                                              ("spine", tmp / "a" / "spine" / "0" / "report.json"))}


@pytest.mark.parametrize("name", ["analyze_spine", "report", "spine"])
def test_phantom_report_keys(phantom_reports, name):
    assert key_paths(phantom_reports[name]) == PINNED[name]


def test_report_type_reads_its_own_json(phantom_reports):
    """report.json -> Report -> report.json gives the same keys, order and values."""
    from mslesion.report import Report

    for name in ("analyze_spine", "report"):
        d = phantom_reports[name]
        typed = Report.from_dict(d)
        assert typed.to_dict() == d
        assert list(typed.to_dict()) == list(d)
        assert typed.lesion_count == d["lesion_count"] and typed["lesion_count"] == d["lesion_count"]
    typed = Report.from_dict(phantom_reports["analyze_spine"])
    assert typed.regions["spinal_cord"].count == phantom_reports["analyze_spine"]["regions"]["spinal_cord"]["count"]
    assert typed.spine is not None and typed.spine[0].lesion_count == len(typed.spine[0].lesions)


def test_extra_sections_follow_the_others():
    """A later section (e.g. brain volumes) is written after the built-in ones, in the order added."""
    from mslesion.report import ModelInfo, Report, Settings

    rep = Report(lesion_count=0, total_volume_ml=0.0, regions={}, mcdonald_dis=None, inputs={},
                 model=ModelInfo("m", "trained", 0.5), settings=Settings(3.0, "cpu", None, False), timings_s={},
                 mslesion_version="x")
    rep.sections["volumes"] = {"brain_ml": 1.0}
    d = rep.to_dict()
    assert list(d)[-1] == "volumes" and d["volumes"] == {"brain_ml": 1.0}
    assert "brain_mask" not in d and "model" in d and "inference" not in d["model"]
    assert rep["volumes"] == {"brain_ml": 1.0} and "volumes" in rep
    rep["lesion_count"] = 3  # dict-style writes: a field, or a further section
    rep["other"] = [1]
    assert rep.lesion_count == 3 and list(rep.to_dict())[-2:] == ["volumes", "other"]


# compare_report.json of a shifted phantom pair (baseline model, given brain mask), pinned from the
# code before it became the typed CompareReport
COMPARE = [
    "changes", "changes.new", "changes.new.count", "changes.new.volume_ml", "changes.enlarging",
    "changes.enlarging.count", "changes.enlarging.volume_ml", "changes.shrinking", "changes.shrinking.count",
    "changes.shrinking.volume_ml", "changes.disappearing", "changes.disappearing.count",
    "changes.disappearing.volume_ml", "new_or_enlarging_count", "new_or_enlarging_volume_ml", "regions_by_change",
    "regions_by_change.new", "regions_by_change.new.juxtacortical", "regions_by_change.enlarging",
    "regions_by_change.enlarging.periventricular", "regions_by_change.disappearing",
    "regions_by_change.disappearing.periventricular", "regions", "regions.periventricular",
    "regions.periventricular.count", "regions.periventricular.volume_ml", "regions.juxtacortical",
    "regions.juxtacortical.count", "regions.juxtacortical.volume_ml", "regions.infratentorial",
    "regions.infratentorial.count", "regions.infratentorial.volume_ml", "regions.deep_white_matter",
    "regions.deep_white_matter.count", "regions.deep_white_matter.volume_ml", "regions.spinal_cord",
    "regions.spinal_cord.count", "regions.spinal_cord.volume_ml", "new_lesion_evidence",
    "new_lesion_evidence.new_t2_lesion", "new_lesion_evidence.new_lesions", "new_lesion_evidence.enlarging_lesions",
    "new_lesion_evidence.dissemination_in_time", "new_lesion_evidence.dissemination_in_time.verdict",
    "new_lesion_evidence.dissemination_in_time.reason",
    "new_lesion_evidence.dissemination_in_time.supporting_lesions",
    "new_lesion_evidence.dissemination_in_time.supporting_lesions[].id",
    "new_lesion_evidence.dissemination_in_time.supporting_lesions[].change",
    "new_lesion_evidence.dissemination_in_time.supporting_lesions[].volume_ml",
    "new_lesion_evidence.dissemination_in_time.supporting_lesions[].region",
    "new_lesion_evidence.dissemination_in_time.supporting_lesions[].centroid_mm",
    "new_lesion_evidence.dissemination_in_time.supporting_lesions[].evidence",
    "new_lesion_evidence.dissemination_in_time.supporting_lesions[].evidence.flair_difference",
    "new_lesion_evidence.dissemination_in_time.supporting_lesions[].evidence.difference_significance",
    "new_lesion_evidence.dissemination_in_time.supporting_lesions[].evidence.flair_where_bright",
    "new_lesion_evidence.dissemination_in_time.supporting_lesions[].evidence.flair_where_normal",
    "new_lesion_evidence.dissemination_in_time.supporting_lesions[].evidence.support_mm3",
    "new_lesion_evidence.dissemination_in_time.supporting_lesions[].evidence.resolved_fraction",
    "new_lesion_evidence.dissemination_in_time.supporting_lesions[].evidence.lesion_probability",
    "new_lesion_evidence.dissemination_in_time.enlarging_lesions_not_counted",
    "new_lesion_evidence.dissemination_in_time.enlarging_lesions_not_counted[].id",
    "new_lesion_evidence.dissemination_in_time.enlarging_lesions_not_counted[].change",
    "new_lesion_evidence.dissemination_in_time.enlarging_lesions_not_counted[].volume_ml",
    "new_lesion_evidence.dissemination_in_time.enlarging_lesions_not_counted[].region",
    "new_lesion_evidence.dissemination_in_time.enlarging_lesions_not_counted[].centroid_mm",
    "new_lesion_evidence.dissemination_in_time.enlarging_lesions_not_counted[].evidence",
    "new_lesion_evidence.dissemination_in_time.enlarging_lesions_not_counted[].evidence.flair_difference",
    "new_lesion_evidence.dissemination_in_time.enlarging_lesions_not_counted[].evidence.difference_significance",
    "new_lesion_evidence.dissemination_in_time.enlarging_lesions_not_counted[].evidence.flair_where_bright",
    "new_lesion_evidence.dissemination_in_time.enlarging_lesions_not_counted[].evidence.flair_where_normal",
    "new_lesion_evidence.dissemination_in_time.enlarging_lesions_not_counted[].evidence.support_mm3",
    "new_lesion_evidence.dissemination_in_time.enlarging_lesions_not_counted[].evidence.resolved_fraction",
    "new_lesion_evidence.dissemination_in_time.enlarging_lesions_not_counted[].evidence.lesion_probability",
    "new_lesion_evidence.dissemination_in_time.rejected_candidates",
    "new_lesion_evidence.dissemination_in_time.rejected_candidates_total",
    "new_lesion_evidence.dissemination_in_time.rule", "new_lesion_evidence.meaning", "rejected_candidates",
    "change_calls", "change_calls[].id", "change_calls[].change", "change_calls[].volume_ml",
    "change_calls[].region", "change_calls[].centroid_mm", "change_calls[].evidence",
    "change_calls[].evidence.flair_difference", "change_calls[].evidence.difference_significance",
    "change_calls[].evidence.flair_where_bright", "change_calls[].evidence.flair_where_normal",
    "change_calls[].evidence.support_mm3", "change_calls[].evidence.resolved_fraction",
    "change_calls[].evidence.lesion_probability", "registration", "registration.followup_to_baseline_ras",
    "registration.rotation_deg", "registration.translation_mm", "inputs", "inputs.baseline_flair",
    "inputs.baseline_flair.path", "inputs.baseline_flair.sha256", "inputs.baseline_flair.shape",
    "inputs.baseline_flair.voxel_size_mm", "inputs.followup_flair", "inputs.followup_flair.path",
    "inputs.followup_flair.sha256", "inputs.followup_flair.shape", "inputs.followup_flair.voxel_size_mm", "model",
    "model.id", "model.kind", "model.threshold", "settings", "settings.change", "settings.device",
    "settings.min_lesion_mm3", "settings.noise_sigma", "settings.evidence_levels", "timings_s",
    "timings_s.preprocess_s", "timings_s.register_s", "timings_s.segment_s", "timings_s.volumes_s",
    "timings_s.detect_s", "timings_s.location_s", "timings_s.total_s", "mslesion_version", "volume_change",
    "qc_html"
]


@pytest.mark.slow
def test_compare_report_keys_and_round_trip(tmp_path):
    """compare_report.json keeps its keys; CompareReport reads its own json back unchanged."""
    from mslesion.longitudinal.report import CompareReport

    from .factories import compare_shifted_phantom_pair

    result = compare_shifted_phantom_pair(tmp_path)
    d = json.loads((tmp_path / "out" / "compare_report.json").read_text())
    assert key_paths(d) == COMPARE
    assert isinstance(result.report, CompareReport)
    assert json.loads(json.dumps(result.report.to_dict(), default=float)) == d
    typed = CompareReport.from_dict(d)
    assert typed.to_dict() == d and list(typed.to_dict()) == list(d)
    assert typed.changes["new"].count == d["changes"]["new"]["count"] == result.report["changes"]["new"]["count"]
    assert typed.new_lesion_evidence.new_t2_lesion is d["new_lesion_evidence"]["new_t2_lesion"]


def test_compare_report_entries_read_into_types():
    """compare_report.json's change calls, DIT entries, registration and volume change read back as their types
    (and write the same object, keys in the same order); built ones have the pinned keys."""
    import numpy as np

    from mslesion.lesions import Lesion
    from mslesion.longitudinal.calls import ChangeCall, ChangeEvidence, RejectedCandidate
    from mslesion.longitudinal.change import ChangeComponent
    from mslesion.longitudinal.report import CompareReport, Registration
    from mslesion.report import VolumeChange

    evidence = {"flair_difference": 1.186, "difference_significance": 5.479, "flair_where_bright": 0.811,
                "flair_where_normal": -0.367, "support_mm3": 48.0, "resolved_fraction": None,
                "lesion_probability": 0.103}
    call = {"id": 1, "change": "new", "volume_ml": 0.203, "region": "juxtacortical",
            "centroid_mm": [-36.63, 23.49, 33.35], "evidence": evidence}
    rejected = {"change": "enlarging", "volume_ml": 6.626, "why": ["difference within the local noise"],
                "difference": 1.128, "significance": 3.862}
    numbers = {"icv_ml": 1955.6, "brain_ml": 1561.9, "gm_ml": 896.8, "wm_ml": 638.9, "csf_ml": 393.7,
               "lesion_ml": 26.202, "bpf": 0.7987, "lesion_pct_icv": 1.3399}
    d = {"new_or_enlarging_count": 1,
         "new_lesion_evidence": {
             "new_t2_lesion": True, "new_lesions": 1, "enlarging_lesions": 0,
             "dissemination_in_time": {"verdict": "met", "reason": "1 new lesion", "supporting_lesions": [call],
                                       "enlarging_lesions_not_counted": [], "rejected_candidates": [rejected],
                                       "rejected_candidates_total": 1, "rule": "r"},
             "meaning": "m"},
         "rejected_candidates": {"enlarging": 1}, "change_calls": [call],
         "registration": {"followup_to_baseline_ras": np.eye(4).tolist(), "rotation_deg": 0.864,
                          "translation_mm": 0.153},
         "mslesion_version": "0", "volume_change": {
             "brain_ml_change": -42.5, "brain_pct_change": -2.72, "bpf_change": -0.0218, "icv_ml_change": 0.1,
             "baseline": numbers, "followup": {**numbers, "bpf": 0.7769}, "method": "m", "caveats": ["c"]},
         "qc_html": "compare_report.html"}
    typed = CompareReport.from_dict(d)
    assert json.dumps(typed.to_dict()) == json.dumps(d)
    (typed_call,) = typed.change_calls
    assert isinstance(typed_call, ChangeCall) and isinstance(typed_call.evidence, ChangeEvidence)
    assert typed_call.id == 1 and typed_call.evidence.flair_difference == 1.186
    dit = typed.new_lesion_evidence.dissemination_in_time
    (supporting,), (typed_rejected,) = dit.supporting_lesions, dit.rejected_candidates
    assert isinstance(supporting, ChangeCall) and supporting.region == "juxtacortical"
    assert isinstance(typed_rejected, RejectedCandidate) and typed_rejected.significance == 3.862
    assert isinstance(typed.registration, Registration) and typed.registration.translation_mm == 0.153
    assert isinstance(typed.volume_change, VolumeChange) and typed.volume_change.followup["bpf"] == 0.7769
    typed["volume_change"] = d["volume_change"]
    assert isinstance(typed.volume_change, VolumeChange) and typed.volume_change.bpf_change == -0.0218

    les = Lesion(3, 10, 0.01, 1.0, 2.0, 3.0, region="periventricular",
                 extra={"change": "new", "flair_difference": 0.9})
    built = ChangeCall.of(les).to_dict()
    assert key_paths(built, "change_calls[]") == [p for p in COMPARE if p.startswith("change_calls[].")]
    assert built["evidence"]["flair_difference"] == 0.9 and built["evidence"]["support_mm3"] is None
    cand = ChangeComponent(5, "new", 20, 21.0, 0.0, 21.0, 3.0, 2.5,
                           evidence={"failed": ["faint FLAIR difference"], "difference": 0.2, "significance": 1.0})
    assert list(RejectedCandidate.of(cand).to_dict()) == list(rejected)
    assert key_paths(Registration.of(np.eye(4)).to_dict(), "registration") == [
        p for p in COMPARE if p.startswith("registration.")]


def test_label_volume_resamples_by_nearest_neighbour():
    import numpy as np

    from mslesion.preprocess.registration import resample_moving
    from mslesion.preprocess.resample import resample_to_grid
    from mslesion.volume import LabelVolume, Volume

    labels = np.zeros((8, 8, 8), np.int32)
    labels[2:5, 2:5, 2:5] = 7
    vol = Volume(labels, np.eye(4)).as_labels()
    assert isinstance(vol.with_data(labels), LabelVolume)
    shifted = np.eye(4)
    shifted[:3, 3] = 0.5  # half-voxel shift: linear interpolation would blur the label values
    out = resample_to_grid(vol, (8, 8, 8), shifted)
    assert isinstance(out, LabelVolume) and out.data.dtype == np.int32
    assert set(np.unique(out.data)) <= {0, 7}
    moved = resample_moving(vol, Volume(np.zeros((8, 8, 8), np.float32), shifted), np.eye(4), order=1)
    assert isinstance(moved, LabelVolume) and set(np.unique(moved.data)) <= {0, 7}
    linear = resample_to_grid(vol.as_intensity(), (8, 8, 8), shifted)
    assert len(np.unique(linear.data)) > 2


def test_one_csv_writer_quotes_what_needs_quoting():
    import csv
    import io

    from mslesion.lesions import CORD_COLUMNS, CordLesion
    from mslesion.report import lesions_csv_text

    les = CordLesion(id=1, voxels=10, volume_ml=0.01234, centroid_x=1.0, centroid_y=2.0, centroid_z=3.0,
                     region="spinal_cord", length_mm=4.5, max_axial_extent_mm=3.25, levels="C2,C3")
    text = lesions_csv_text([les])
    assert text.splitlines()[0] == ",".join(CORD_COLUMNS)
    (row,) = csv.DictReader(io.StringIO(text))
    assert row["levels"] == "C2,C3" and float(row["volume_mm3"]) == 12.34 and les["length_mm"] == 4.5
    assert lesions_csv_text([], CORD_COLUMNS) == ",".join(CORD_COLUMNS) + "\n"


def test_typed_sections_read_their_own_json():
    """The enhancement section (assessed, with a focus; and without a post-contrast T1), the volumes section
    and the comparison's DIT verdict: report.json object -> type -> the same object, keys in the same order."""
    from mslesion.longitudinal.verdict import DitVerdict
    from mslesion.report import EnhancementSection, Report, VolumesSection

    assessed = {"rules": {"z_voxel": 3.0}, "t1_hypointensity_assessed": True, "enhancement_assessed": True,
                "black_holes": 1, "reference_t1": {"nawm": 1.02, "csf": 0.21}, "enhancing_lesions": 1,
                "non_enhancing_lesions": 2,
                "enhancing_foci_outside_lesions": [{"centroid_mm": [1.0, -2.5, 30.0], "volume_mm3": 21.0,
                                                    "z_max": 5.1, "elongation": 1.3, "flair_z": None}],
                "dissemination_in_time": {"assessed": True, "met": True, "enhancing_lesions": 1,
                                          "non_enhancing_lesions": 2, "statement": "shown"}}
    no_post = {"rules": {"z_voxel": 3.0}, "t1_hypointensity_assessed": True, "enhancement_assessed": False,
               "black_holes": 0, "reference_t1": {"nawm": 1.0, "csf": 0.2},
               "dissemination_in_time": {"assessed": False, "met": None, "statement": "not assessed",
                                         "reason": "no post-contrast T1 given (--t1post)"}}
    for d in (assessed, no_post):
        typed = EnhancementSection.from_dict(d)
        assert typed.to_dict() == d and list(typed.to_dict()) == list(d)
    typed = EnhancementSection.from_dict(assessed)
    assert typed.dissemination_in_time.met is True and typed.reference_t1 is not None
    assert typed.enhancing_foci_outside_lesions is not None and typed.enhancing_foci_outside_lesions[0].z_max == 5.1
    assert EnhancementSection.from_dict(no_post).enhancing_lesions is None
    volumes = {"icv_ml": 1500.0, "brain_ml": 1200.0, "gm_ml": 650.0, "wm_ml": 540.0, "csf_ml": 300.0,
               "lesion_ml": 10.0, "bpf": 0.8, "lesion_pct_icv": 0.6667, "method": "m", "inputs": ["flair"],
               "icv_source": "deepbet", "priors": "p", "caveats": ["c"], "seconds": 1.5,
               "labels": {"0": "outside ICV", "1": "CSF", "2": "GM", "3": "WM", "4": "lesion"}}
    assert VolumesSection.from_dict(volumes).to_dict() == volumes
    # a batch report has volumes before batch (the runner adds batch last): the order survives a round trip
    batch_report = {"lesion_count": 1, "volumes": volumes, "batch": {"subject": "01"}}
    rep = Report.from_dict(batch_report)
    assert isinstance(rep.volumes, VolumesSection) and rep.volumes.bpf == 0.8
    assert [k for k in rep.to_dict() if k in batch_report] == ["lesion_count", "volumes", "batch"]
    dit = {"verdict": "met", "reason": "1 new lesion", "supporting_lesions": [{"id": 3}],
           "enlarging_lesions_not_counted": [], "rejected_candidates": [], "rejected_candidates_total": 0,
           "rule": "r"}
    typed_dit = DitVerdict.from_dict(dit)
    assert typed_dit.to_dict() == dit and typed_dit.met and typed_dit["supporting_lesions"][0]["id"] == 3
