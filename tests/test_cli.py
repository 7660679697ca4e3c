"""The CLI: main([...]) returns exit codes; user mistakes give one line, exit 2, nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mslesion.cli import get_parser, main
from mslesion.volume import Volume

from .factories import make_affine, make_phantom, save
from .truth import assert_finds_phantom_lesions


@pytest.fixture()
def phantom_files(tmp_path):
    ph = make_phantom(shape=(64, 64, 48))
    return {
        "flair": save(ph.flair, tmp_path / "flair.nii.gz"),
        "t1": save(ph.t1, tmp_path / "t1.nii.gz"),
        "truth": save(ph.lesions, tmp_path / "truth.nii.gz"),
        "phantom": ph,
    }


def test_parser_lists_commands():
    help_text = get_parser().format_help()
    assert "analyze" in help_text and "evaluate" in help_text


def test_no_command_is_usage_error(capsys):
    assert main([]) == 2


def test_unknown_option_is_usage_error(capsys):
    assert main(["analyze", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_analyze_writes_four_outputs_on_flair_grid(tmp_path, phantom_files, capsys):
    out = tmp_path / "out"
    rc = main(["analyze", "--flair", str(phantom_files["flair"]), "--t1", str(phantom_files["t1"]),
               "--out", str(out), "--model", "baseline", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    for expected in ("lesions.nii.gz", "lesion_probability.nii.gz", "lesions.csv", "report.json"):
        assert expected in names
    flair = nib.load(phantom_files["flair"])
    mask = nib.load(out / "lesions.nii.gz")
    assert mask.shape == flair.shape
    np.testing.assert_allclose(mask.affine, flair.affine, atol=1e-4)
    report = json.loads((out / "report.json").read_text())
    assert report["lesion_count"] == len((out / "lesions.csv").read_text().strip().splitlines()) - 1
    assert report["model"]["kind"] == "classical-baseline"
    # the answer, not only its shape: the two painted lesions and nothing else
    from mslesion.io import load_volume

    scores = assert_finds_phantom_lesions(load_volume(out / "lesions.nii.gz"), phantom_files["phantom"].lesions)
    assert report["lesion_count"] == 2
    assert report["total_volume_ml"] == pytest.approx(scores.pred_volume_ml, abs=1e-3)
    assert len(report["inputs"]["flair"]["sha256"]) == 64
    assert set(report["inputs"]) == {"flair", "t1"}
    assert not [p for p in out.rglob("*mslesion-tmp*")]


def _bad_flair_cases(tmp_path, good_flair):
    ph = make_phantom(lesions=())
    rng = np.random.default_rng(1)
    other = Volume(ph.flair.data, make_affine(origin=(900.0, 0, 0), shape=ph.flair.shape))
    return {
        "missing": ([str(tmp_path / "nope.nii.gz")], "does not exist"),
        "not_nifti": ([str(_write_bytes(tmp_path / "bad.nii.gz", b"\x1f\x8bgarbage"))], "FLAIR"),
        "4d": ([str(save(rng.random((8, 8, 8, 2)), tmp_path / "4d.nii.gz", np.eye(4)))], "volumes"),
        "2d": ([str(save(rng.random((8, 8)), tmp_path / "2d.nii.gz", np.eye(4)))], "2-D"),
        "nan": ([str(save(np.full((8, 8, 8), np.nan), tmp_path / "nan.nii.gz", np.eye(4)))], "NaN"),
        "zeros": ([str(save(np.zeros((8, 8, 8)), tmp_path / "z.nii.gz", np.eye(4)))], "all zeros"),
        "other_subject": ([str(good_flair), "--t1", str(save(other, tmp_path / "t1_far.nii.gz"))], "world space"),
    }


def _write_bytes(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", ["missing", "not_nifti", "4d", "2d", "nan", "zeros", "other_subject"])
def test_bad_input_exit_2_one_line_nothing_written(tmp_path, phantom_files, capsys, case):
    args, fragment = _bad_flair_cases(tmp_path, phantom_files["flair"])[case]
    out = tmp_path / "out"
    rc = main(["analyze", "--flair", *args, "--out", str(out), "--model", "baseline"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert fragment.lower() in err.lower()
    assert not out.exists() or not any(out.iterdir())


def test_evaluate_prints_json(tmp_path, phantom_files, capsys):
    rc = main(["evaluate", "--pred", str(phantom_files["truth"]), "--ref", str(phantom_files["truth"])])
    assert rc == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["dice"] == 1.0 and scores["lesion_f1"] == 1.0
    assert scores["ref_lesions"] == len(phantom_files["phantom"].lesion_centres_vox)


def test_evaluate_cohort_from_pairs_csv(tmp_path, phantom_files, capsys):
    import csv

    ref = nib.load(phantom_files["truth"])
    save(np.zeros(ref.shape), tmp_path / "empty.nii.gz", ref.affine)
    truth = Path(phantom_files["truth"])
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("subject,pred,ref\n"
                     f"sub-01,{truth},{truth}\n"
                     f"sub-02,empty.nii.gz,{truth}\n"          # relative to the CSV's folder
                     f"sub-03,missing.nii.gz,{truth}\n")
    out = tmp_path / "scores.csv"
    assert main(["evaluate", "--pairs", str(pairs), "--out", str(out)]) == 1   # one pair failed
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    n = len(phantom_files["phantom"].lesion_centres_vox)
    assert summary["subjects"] == 2 and summary["failed"] == 1
    assert summary["mean_dice"] == 0.5 and summary["mean_lesion_sensitivity"] == 0.5
    assert summary["pooled_lesion_sensitivity"] == 0.5 and summary["pooled_lesion_precision"] == 1.0
    assert "sub-03 not scored" in captured.err and "does not exist" in captured.err
    rows = list(csv.DictReader(out.open()))
    assert [r["subject"] for r in rows] == ["sub-01", "sub-02", "sub-03"]
    assert rows[0]["ref_lesions"] == str(n) and rows[1]["dice"] == "0.0" and "missing.nii.gz" in rows[2]["error"]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,prediction\nx,y\n")
    assert main(["evaluate", "--pairs", str(bad)]) == 2
    assert "missing subject, pred, ref" in capsys.readouterr().err
    assert main(["evaluate", "--pairs", str(pairs), "--pred", str(truth)]) == 2


def test_evaluate_accepts_empty_prediction(tmp_path, phantom_files, capsys):
    ref = nib.load(phantom_files["truth"])
    empty = save(np.zeros(ref.shape), tmp_path / "empty.nii.gz", ref.affine)
    assert main(["evaluate", "--pred", str(empty), "--ref", str(phantom_files["truth"])]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["dice"] == 0.0 and scores["lesion_sensitivity"] == 0.0


def test_brain_extraction_option_reaches_preprocessing(tmp_path):
    from mslesion.cli.analyze import options_from_args

    for command in (["analyze", "--flair", "f.nii.gz", "--out", str(tmp_path)],
                    ["batch", str(tmp_path), "--out", str(tmp_path / "d")]):
        default = options_from_args(get_parser().parse_args(command))
        chosen = options_from_args(get_parser().parse_args(command + ["--brain-extraction", "template"]))
        assert (default.preprocess.brain_extraction, chosen.preprocess.brain_extraction) == ("deepbet", "template")
    assert main(["analyze", "--flair", "f", "--out", str(tmp_path / "o"), "--brain-extraction", "bet"]) == 2
