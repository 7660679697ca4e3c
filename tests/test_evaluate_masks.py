"""Issue 16, item 3: `mslesion evaluate` refuses probability maps unless thresholded, and says when it resamples."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mslesion.cli import main
from mslesion.errors import InputError
from mslesion.metrics import evaluate
from mslesion.volume import Volume

from .factories import ball, make_affine, save

SHAPE = (40, 40, 40)


def _probability_map() -> tuple[np.ndarray, np.ndarray]:
    """(truth mask, probability map): 0.9 inside the lesion, a low 0.05-0.2 haze over the whole 'brain'."""
    truth = ball(SHAPE, (20, 20, 20), 5)
    rng = np.random.default_rng(0)
    prob = np.where(ball(SHAPE, (20, 20, 20), 18), rng.uniform(0.05, 0.2, SHAPE), 0.0).astype(np.float32)
    prob[truth] = 0.9
    return truth, prob


def test_library_refuses_a_probability_map_without_threshold():
    truth, prob = _probability_map()
    aff = make_affine(shape=SHAPE)
    with pytest.raises(InputError, match="not a binary mask.*--threshold"):
        evaluate(Volume(prob, aff), Volume(truth.astype(np.uint8), aff))
    with pytest.raises(InputError, match="reference is not a binary mask"):
        evaluate(Volume(truth.astype(np.uint8), aff), Volume(prob, aff))
    s = evaluate(Volume(prob, aff), Volume(truth.astype(np.uint8), aff), threshold=0.5)
    assert s.dice == 1.0 and s.thresholded == "pred" and s.threshold == 0.5 and not s.pred_resampled
    # binary masks of any value are used as they are; the threshold leaves them alone
    s = evaluate(Volume(truth * np.float32(255), aff), Volume(truth.astype(np.uint8), aff), threshold=0.5)
    assert s.dice == 1.0 and s.thresholded == "" and s.threshold is None


def test_cli_refuses_probability_map_exit_2_and_accepts_threshold(tmp_path, capsys):
    truth, prob = _probability_map()
    aff = make_affine(shape=SHAPE)
    ref = save(truth, tmp_path / "truth.nii.gz", aff, dtype=np.uint8)
    pred = save(prob, tmp_path / "lesion_probability.nii.gz", aff)
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref)]) == 2
    err = capsys.readouterr().err
    assert "lesion_probability.nii.gz" in err and "not a binary mask" in err and "--threshold" in err
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--threshold", "0.5"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["dice"] == 1.0 and scores["thresholded"] == "pred" and scores["threshold"] == 0.5
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--threshold", "0"]) == 2


def test_cli_says_when_the_prediction_was_resampled(tmp_path, capsys):
    truth = ball(SHAPE, (20, 20, 20), 6)
    ref_aff = make_affine(shape=SHAPE)
    coarse = (20, 20, 20)
    caff = make_affine((2.0, 2.0, 2.0), origin=ref_aff[:3, 3] + 0.5, shape=coarse)
    world = np.indices(coarse).reshape(3, -1).T * 2.0 + caff[:3, 3]
    pred = (np.linalg.norm(world - (ref_aff[:3, 3] + 20), axis=1) <= 6).reshape(coarse)
    ref_path = save(truth, tmp_path / "ref.nii.gz", ref_aff, dtype=np.uint8)
    pred_path = save(pred, tmp_path / "pred.nii.gz", caff, dtype=np.uint8)
    same = save(truth, tmp_path / "same.nii.gz", ref_aff, dtype=np.uint8)
    assert main(["evaluate", "--pred", str(pred_path), "--ref", str(ref_path)]) == 0
    assert json.loads(capsys.readouterr().out)["pred_resampled"] is True
    assert main(["evaluate", "--pred", str(same), "--ref", str(ref_path)]) == 0
    assert json.loads(capsys.readouterr().out)["pred_resampled"] is False


def test_pairs_refuse_probability_maps_and_report_resampling(tmp_path, capsys):
    truth, prob = _probability_map()
    aff = make_affine(shape=SHAPE)
    save(truth, tmp_path / "ref.nii.gz", aff, dtype=np.uint8)
    save(prob, tmp_path / "prob.nii.gz", aff)
    save(truth, tmp_path / "mask.nii.gz", aff, dtype=np.uint8)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("subject,pred,ref\nsub-01,mask.nii.gz,ref.nii.gz\nsub-02,prob.nii.gz,ref.nii.gz\n")
    out = tmp_path / "scores.csv"
    assert main(["evaluate", "--pairs", str(pairs), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["failed"] == 1
    assert "sub-02 not scored" in captured.err and "not a binary mask" in captured.err
    assert main(["evaluate", "--pairs", str(pairs), "--out", str(out), "--threshold", "0.5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["subjects"] == 2 and summary["mean_dice"] == 1.0 and summary["thresholded"] == 1
    rows = list(csv.DictReader(out.open()))
    assert [r["thresholded"] for r in rows] == ["", "pred"] and {r["pred_resampled"] for r in rows} == {"False"}


def test_evaluate_help_gives_connectivity_default(capsys):
    assert main(["evaluate", "-h"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "default: 26" in text and "--threshold" in text
