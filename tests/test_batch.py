"""mslesion batch: discovery, BIDS-derivatives outputs, tables, failure isolation, resume."""
from __future__ import annotations

import csv
import json
import os
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mslesion import pipeline
from mslesion.batch import BatchOptions, discover, run_batch
from mslesion.batch.inputs import check_label
from mslesion.batch.runner import LOCK_NAME
from mslesion.cli import main
from mslesion.errors import InputError, OutputError
from mslesion.lesions import find_lesions
from mslesion.location import LocationResult
from mslesion.metrics import evaluate
from mslesion.pipeline import AnalyzeOptions
from mslesion.preprocess import PreprocessOptions
from mslesion.volume import Volume

from .factories import make_phantom, save

#: baseline segmenter, no N4 / skull strip / co-registration: these tests are about the batch machinery
#: (the full pipeline runs in the slow and realdata tests of test_batch_parallel.py)
FAST_PRE = PreprocessOptions(bias_correction=False, skull_strip=False, coregister=False)
BASELINE = AnalyzeOptions(model="baseline", preprocess=FAST_PRE)
SHAPE = (40, 40, 30)


def _quick_locate(labels, lesions, pre, options, anatomy=None) -> LocationResult:
    for les in lesions:
        les.region = "unclassified"
    return LocationResult(regions={"unclassified": {"count": len(lesions),
                                                    "volume_ml": sum(les.volume_ml for les in lesions)}})


@pytest.fixture(autouse=True)
def quick_location(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process analyses skip the atlas registration of the location step (seconds per subject): both the
    fit that :meth:`Analyzer.run` starts beside the segmentation and the location that would use it."""
    monkeypatch.setattr(pipeline, "subject_anatomy", lambda pre, options: None)
    monkeypatch.setattr(pipeline, "locate", _quick_locate)


def phantom(seed: int, lesions=((20, 26, 15, 3.0), (12, 16, 15, 2.0))):
    return make_phantom(shape=SHAPE, zooms=(1.0, 1.0, 1.0), lesions=lesions, seed=seed)


def add_subject(root: Path, sub: str, ses: str | None = None, seed: int = 0, t1: bool = True, **kw) -> Path:
    anat = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    key = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
    ph = phantom(seed, **kw)
    save(ph.flair, anat / f"{key}_FLAIR.nii.gz")
    if t1:
        save(ph.t1, anat / f"{key}_T1w.nii.gz")
    return anat


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


#: (subject, session) -> phantom of the ``bids`` fixture, to check the batch's answers against
TRUTH = {("01", ""): dict(seed=1), ("02", ""): dict(seed=2, lesions=((20, 26, 15, 3.0),)),
         ("03", "a"): dict(seed=3), ("03", "b"): dict(seed=4)}


def check_against_truth(mask: Volume, truth_of: dict) -> None:
    """The batch's mask against the painted lesions.

    These phantoms are tiny (40 x 40 x 30 mm) and FAST_PRE skips N4 and skull stripping, so the
    baseline also flags bright grey-matter rim voxels: measured for issue 20 on the four subjects,
    every painted lesion found, Dice 0.44-0.52, 2.8-3.5x the painted volume.  Floors: all lesions
    found, Dice >= 0.35 and at most 5x the painted volume.  A whole-brain mask: Dice ~0.03.
    """
    truth = phantom(**truth_of).lesions
    scores = evaluate(mask, truth)
    assert scores.lesion_sensitivity == 1.0, scores
    assert scores.dice >= 0.35, scores
    assert scores.pred_volume_ml <= 5 * scores.ref_volume_ml, scores


@pytest.fixture()
def bids(tmp_path: Path) -> Path:
    root = tmp_path / "bids"
    add_subject(root, "01", seed=1)
    add_subject(root, "02", seed=2, t1=False, lesions=((20, 26, 15, 3.0),))
    add_subject(root, "03", "a", seed=3)
    add_subject(root, "03", "b", seed=4)
    bad = root / "sub-04" / "anat"
    bad.mkdir(parents=True)
    (bad / "sub-04_FLAIR.nii.gz").write_bytes(b"\x1f\x8b\x08\x00 truncated")
    (root / "sub-05" / "anat").mkdir(parents=True)          # incomplete: no FLAIR
    (root / "derivatives").mkdir()                          # must be ignored
    return root


def test_discover_bids_layout(bids: Path) -> None:
    spine = bids / "sub-01" / "anat" / "sub-01_acq-cspine_T2w.nii.gz"
    spine.write_bytes(b"")
    jobs = {j.key: j for j in discover(bids)}
    assert sorted(jobs) == ["sub-01", "sub-02", "sub-03_ses-a", "sub-03_ses-b", "sub-04", "sub-05"]
    assert set(jobs["sub-01"].inputs) == {"flair", "t1"} and jobs["sub-01"].spine == [spine]
    assert set(jobs["sub-02"].inputs) == {"flair"}
    assert jobs["sub-03_ses-b"].rel_dir == Path("sub-03/ses-b")
    assert jobs["sub-05"].problem and "FLAIR" in jobs["sub-05"].problem
    assert jobs["sub-01"].problem is None


@pytest.mark.parametrize("bad", ["../evil", "sub-../x", "a/b", "01_x", "", "sub-", ".."])
def test_unsafe_labels_refused(bad: str) -> None:
    with pytest.raises(InputError, match="refused"):
        check_label(bad, "subject")


def test_label_prefix_stripped() -> None:
    assert check_label("sub-01A", "subject") == "01A" and check_label("7", "subject") == "7"


def test_batch_outputs_tables_and_failures(bids: Path, tmp_path: Path) -> None:
    deriv = tmp_path / "deriv"
    res = run_batch(bids, deriv, BASELINE, BatchOptions(quiet=True))
    assert res.exit_code == 1 and res.done == 4 and res.skipped == 0
    desc = json.loads((deriv / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "mslesion"
    cohort = {(r["subject"], r["session"]): r for r in read_csv(deriv / "cohort.csv")}
    assert set(cohort) == {("01", ""), ("02", ""), ("03", "a"), ("03", "b")}
    for (sub, ses), row in cohort.items():
        key = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
        anat = deriv / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "anat"
        mask_img = nib.load(anat / f"{key}_desc-lesions_mask.nii.gz")
        prob = np.asarray(nib.load(anat / f"{key}_desc-lesions_probseg.nii.gz").dataobj)
        assert 0.0 <= prob.min() and prob.max() <= 1.0
        _, found = find_lesions(Volume(np.asarray(mask_img.dataobj), mask_img.affine))
        table = read_csv(anat / f"{key}_desc-lesions_lesions.csv")
        assert int(row["lesion_count"]) == len(found) == len(table) > 0
        check_against_truth(Volume(np.asarray(mask_img.dataobj), mask_img.affine), TRUTH[(sub, ses)])
        assert float(row["total_volume_ml"]) == pytest.approx(sum(l.volume_ml for l in found), abs=1e-3)
        report = json.loads((anat / f"{key}_desc-lesions_report.json").read_text())
        assert report["batch"]["subject"] == sub and report["lesion_count"] == len(found)
        log_dir = deriv / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "log"
        log_text = (log_dir / f"{key}_desc-mslesion_log.txt").read_text()
        assert key in log_text and "done" in log_text
    failures = {r["key"]: r for r in read_csv(deriv / "failures.csv")}
    assert set(failures) == {"sub-04", "sub-05"}
    assert "sub-04_FLAIR.nii.gz" in failures["sub-04"]["reason"] and "FLAIR" in failures["sub-05"]["reason"]
    assert "Traceback" in Path(failures["sub-04"]["log"]).read_text()
    assert not (deriv / "sub-05").exists()
    leftovers = [p for p in deriv.rglob("*") if ".mslesion" in p.name]
    assert leftovers == []


def test_resume_skips_complete_and_redoes_invalid(bids: Path, tmp_path: Path) -> None:
    deriv = tmp_path / "deriv"
    run_batch(bids, deriv, BASELINE, BatchOptions(quiet=True))
    rep1 = deriv / "sub-01" / "anat" / "sub-01_desc-lesions_report.json"
    stamp = rep1.stat().st_mtime_ns
    again = run_batch(bids, deriv, BASELINE, BatchOptions(quiet=True))
    assert again.done == 0 and again.skipped == 4 and len(again.failures) == 2
    assert rep1.stat().st_mtime_ns == stamp and len(again.rows) == 4
    # damage sub-01 (truncated mask), change sub-02's FLAIR, corrupt sub-03 a's report: exactly these are redone
    mask = deriv / "sub-01" / "anat" / "sub-01_desc-lesions_mask.nii.gz"
    mask.write_bytes(mask.read_bytes()[:50])
    save(phantom(9).flair, bids / "sub-02" / "anat" / "sub-02_FLAIR.nii.gz")
    rep3 = deriv / "sub-03" / "ses-a" / "anat" / "sub-03_ses-a_desc-lesions_report.json"
    rep3.write_text(rep3.read_text()[:100])
    third = run_batch(bids, deriv, BASELINE, BatchOptions(quiet=True))
    assert third.done == 3 and third.skipped == 1
    assert {o["key"] for o in third.outcomes if o["status"] == "done"} == {"sub-01", "sub-02", "sub-03_ses-a"}
    assert nib.load(mask).get_fdata().shape == SHAPE
    # other settings -> everything redone
    fourth = run_batch(bids, deriv, AnalyzeOptions(model="baseline", preprocess=FAST_PRE, min_lesion_mm3=5.0),
                       BatchOptions(quiet=True))
    assert fourth.done == 4 and fourth.skipped == 0


def test_manifest_and_escaping_subject(tmp_path: Path) -> None:
    src = tmp_path / "scans"
    src.mkdir()
    save(phantom(1).flair, src / "a_flair.nii.gz")
    save(phantom(1).t1, src / "a_t1.nii.gz")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("subject,session,flair,t1\n"
                        "P01,1,scans/a_flair.nii.gz,scans/a_t1.nii.gz\n"
                        "../../escape,,scans/a_flair.nii.gz,\n"
                        "P02,,scans/missing.nii.gz,\n")
    deriv = tmp_path / "out" / "deriv"
    res = run_batch(manifest, deriv, BASELINE, BatchOptions(quiet=True))
    assert res.done == 1 and res.exit_code == 1
    assert (deriv / "sub-P01" / "ses-1" / "anat" / "sub-P01_ses-1_desc-lesions_mask.nii.gz").is_file()
    reasons = {r["key"]: r["reason"] for r in res.failures}
    assert any("refused" in r for r in reasons.values())
    assert "does not exist" in reasons["sub-P02"]
    written = {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*")}
    assert written == {"scans", "manifest.csv", "out"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["deriv"]


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bids = tmp_path / "bids"
    good = bids / "sub-01" / "anat"
    good.mkdir(parents=True)
    # a brain-sized phantom: the batch checks that each FLAIR holds a brain, as `analyze` does
    save(make_phantom(seed=1).flair, good / "sub-01_FLAIR.nii.gz")
    bad = bids / "sub-02" / "anat"
    bad.mkdir(parents=True)
    (bad / "sub-02_FLAIR.nii.gz").write_bytes(b"\x1f\x8b\x08\x00 truncated")
    deriv = tmp_path / "deriv"
    assert main(["batch", str(bids), "--out", str(deriv), "--model", "baseline", "--quiet"]) == 1
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["done"] == 1 and summary["failed"] == 1 and "sub-02 failed" in err
    (bad / "sub-02_FLAIR.nii.gz").unlink()
    bad.rmdir()
    (bids / "sub-02").rmdir()
    assert main(["batch", str(bids), "--out", str(deriv), "--model", "baseline", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["skipped"] == 1
    assert main(["batch", str(tmp_path / "nope"), "--out", str(deriv), "--quiet"]) == 2
    assert main(["batch", str(bids), "--out", str(deriv), "--workers", "0"]) == 2


def test_second_batch_on_same_folder_refused(tmp_path: Path) -> None:
    bids = tmp_path / "bids"
    add_subject(bids, "01", seed=1, t1=False)
    deriv = tmp_path / "deriv"
    deriv.mkdir()
    (deriv / LOCK_NAME).write_text(f"{socket.gethostname()} {os.getpid()}\n")
    with pytest.raises(OutputError, match="another mslesion batch"):
        run_batch(bids, deriv, BASELINE, BatchOptions(quiet=True))
    assert not (deriv / "sub-01").exists()
    (deriv / LOCK_NAME).write_text(f"{socket.gethostname()} 999999999\n")  # holder is dead: lock taken over
    assert run_batch(bids, deriv, BASELINE, BatchOptions(quiet=True)).done == 1
    assert not (deriv / LOCK_NAME).exists()


@pytest.mark.parametrize("name,contrast", [("sub-1_acq-cspine_T2w.nii.gz", "t2"),
                                           ("sub-1_acq-spine_T2starw.nii.gz", "t2s"),
                                           ("sub-1_bp-spine_T1w.nii", "t1"), ("sub-1_acq-cord_STIR.nii.gz", "stir")])
def test_spine_contrast_from_bids_suffix(name: str, contrast: str) -> None:
    from mslesion.batch.worker import spine_contrast

    assert spine_contrast(name) == contrast


def test_cohort_row_flattens_regions_and_dis() -> None:
    from mslesion.batch.tables import cohort_row, table_text

    rep = {"lesion_count": 3, "total_volume_ml": 1.5, "batch": {"subject": "01", "session": "a", "seconds": 2.0},
           "regions": {"periventricular": {"count": 2, "volume_ml": 1.0}, "juxtacortical": {"count": 1}},
           "mcdonald_dis": {"met": False, "areas_involved": ["periventricular"], "rule": "long text",
                            "qualifying_lesions_per_area": {"periventricular": 2}},
           "model": {"id": "m", "kind": "k"}}
    row = cohort_row(rep)
    assert row["periventricular_count"] == 2 and row["periventricular_volume_ml"] == 1.0
    assert row["dis_met"] is False and row["dis_areas_involved"] == "periventricular"
    assert row["dis_qualifying_lesions_per_area_periventricular"] == 2 and "dis_rule" not in row
    text = table_text([row, {**row, "extra": 1}], ["subject"], ["report"])
    header = text.splitlines()[0].split(",")
    assert header[0] == "subject" and header[-1] == "report" and "extra" in header


def test_bids_contrast_enhanced_t1_is_the_post_contrast_input_never_the_t1(tmp_path):
    """sub-01_ce-gadolinium_T1w sorts after sub-01_T1w: it must become t1post, not replace the T1."""
    from mslesion.batch.inputs import discover_bids, read_manifest

    anat = tmp_path / "bids" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    for name in ("sub-01_FLAIR.nii.gz", "sub-01_T1w.nii.gz", "sub-01_ce-gadolinium_T1w.nii.gz"):
        (anat / name).write_bytes(b"")
    (job,) = discover_bids(tmp_path / "bids")
    assert job.inputs["t1"].name == "sub-01_T1w.nii.gz"
    assert job.inputs["t1post"].name == "sub-01_ce-gadolinium_T1w.nii.gz"
    manifest = tmp_path / "m.csv"
    manifest.write_text("subject,flair,t1,t1post\ns1,f.nii.gz,t1.nii.gz,gd.nii.gz\n")
    (row,) = read_manifest(manifest)
    assert row.inputs["t1post"] == tmp_path / "gd.nii.gz"


def test_cohort_row_states_single_visit_dit():
    from mslesion.batch.tables import cohort_row

    assessed = {"enhancement": {"enhancement_assessed": True, "enhancing_lesions": 2, "black_holes": 1,
                                "enhancing_foci_outside_lesions": [{}],
                                "dissemination_in_time": {"assessed": True, "met": True}}}
    row = cohort_row(assessed)
    assert (row["enhancing_lesions"], row["black_holes"], row["enhancing_foci"], row["dit_single_visit"]) == \
        (2, 1, 1, "met")
    missing = cohort_row({"enhancement": {"dissemination_in_time": {"assessed": False, "met": None}}})
    assert missing["dit_single_visit"] == "not assessed" and missing["enhancing_lesions"] == ""
    both = cohort_row({**assessed, "mri_dissemination": {"met": True, "statement": "x"}})
    assert both["dis_and_dit_mri"] == "met" and row["dis_and_dit_mri"] == ""
    assert cohort_row({"mri_dissemination": {"met": None}})["dis_and_dit_mri"] == "not assessed"


def test_enhancement_map_lands_in_anat_as_a_bids_dseg(tmp_path):
    from mslesion.batch.inputs import Job
    from mslesion.batch.layout import finalize

    staging = tmp_path / "stage"
    (staging / "qc").mkdir(parents=True)
    for name in ("lesions.nii.gz", "enhancement.nii.gz", "qc/enhancing_01.png"):
        (staging / name).write_bytes(b"x" * 7)
    job = Job("01", None, {"flair": tmp_path / "f.nii.gz"})
    report = finalize(tmp_path / "deriv", job, staging, {"lesion_count": 0}, {})
    outputs = json.loads(report.read_text())["batch"]["outputs"]
    assert "anat/sub-01_desc-enhancement_dseg.nii.gz" in outputs
    assert "figures/qc/sub-01_enhancing_01.png" in outputs


def test_cohort_row_reads_older_report_shapes_through_the_typed_report() -> None:
    """Bare region counts, regions without volume and verdicts lacking fields give no invented columns."""
    from mslesion.batch.tables import cohort_row
    from mslesion.report import Report

    old = {"lesion_count": 2, "regions": {"periventricular": 2, "juxtacortical": {"count": 0}},
           "mcdonald_dis": {"met": True, "areas_involved": ["periventricular", "juxtacortical"]},
           "batch": {"subject": "02"}}
    row = cohort_row(old)
    assert row["periventricular_count"] == 2 and row["juxtacortical_count"] == 0
    assert "periventricular_volume_ml" not in row and "juxtacortical_volume_ml" not in row
    assert row["dis_met"] is True and row["dis_areas_involved"] == "periventricular;juxtacortical"
    assert not {"dis_min_areas", "dis_areas_not_assessed", "dis_lesion_size_rule"} & set(row)
    assert row["model_id"] is None and row["total_volume_ml"] is None and row["session"] == ""
    assert cohort_row(Report.from_dict(old)) == row
    assert Report.from_dict(old).to_dict()["mcdonald_dis"] == old["mcdonald_dis"]
