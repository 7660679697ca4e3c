"""Issue 16, item 9: help texts and messages a first user needs."""
from __future__ import annotations

import argparse
import json

import pytest

from mslesion import pipeline
from mslesion.batch import run_batch
from mslesion.cli import get_parser, main
from mslesion.location import LocationResult
from mslesion.pipeline import AnalyzeOptions
from mslesion.preprocess import PreprocessOptions

from .factories import make_phantom, save


def _help(command: str, capsys) -> str:
    assert main([command, "-h"]) == 0
    return " ".join(capsys.readouterr().out.split())


def _subparser(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in get_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def test_batch_help_says_csv_paths_are_read_from_the_csv_folder(capsys):
    assert "relative paths in the CSV are read from the CSV's own folder" in _help("batch", capsys)


def test_train_help_documents_every_option_and_no_scripts_folder(capsys):
    text = _help("train", capsys)
    assert "scripts/" not in text and "cases.json" in text and ".npz" in text
    undocumented = [a.option_strings for a in _subparser("train")._actions if not a.help]
    assert not undocumented


def test_models_lists_contrasts_in_plain_words(tmp_path, capsys):
    from mslesion.model import DEFAULT_FLAIR_MODEL
    from tests.test_model import make_model_folder

    make_model_folder(tmp_path / "mslesion-flair-t1-t2-v1", ("flair", "t1", "t2"), "mslesion-flair-t1-t2-v1")
    make_model_folder(tmp_path / DEFAULT_FLAIR_MODEL, ("flair",), DEFAULT_FLAIR_MODEL)
    make_model_folder(tmp_path / "other", ("flair",), "other")
    assert main(["models", "--root", str(tmp_path)]) == 0
    lines = {line.split(":")[0].strip(): line for line in capsys.readouterr().out.splitlines()}
    multi = lines["mslesion-flair-t1-t2-v1"]
    assert "needs FLAIR and T1; also uses T2 when given" in multi and "flair+t1" not in multi
    assert "needs FLAIR;" in lines[DEFAULT_FLAIR_MODEL] and "the default (--model auto)" in lines[DEFAULT_FLAIR_MODEL]
    assert "runs only when named: --model other" in lines["other"]


def test_batch_index_is_titled_with_the_dataset_name(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "subject_anatomy", lambda pre, options: None)
    monkeypatch.setattr(pipeline, "locate", lambda labels, lesions, pre, options, anatomy=None:
                        LocationResult(regions={}))
    bids = tmp_path / "derivs-are-elsewhere"
    anat = bids / "sub-01" / "anat"
    anat.mkdir(parents=True)
    save(make_phantom(shape=(40, 40, 30), zooms=(1.0, 1.0, 1.0)).flair, anat / "sub-01_FLAIR.nii.gz")
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "Relapsing MS cohort 2024",
                                                                "BIDSVersion": "1.9.0"}))
    deriv = tmp_path / "out" / "mslesion"
    fast = AnalyzeOptions(model="baseline", preprocess=PreprocessOptions(bias_correction=False, skull_strip=False,
                                                                         coregister=False))
    from mslesion.batch import BatchOptions

    run_batch(bids, deriv, fast, BatchOptions(quiet=True))
    html = (deriv / "index.html").read_text()
    assert "<title>mslesion batch: Relapsing MS cohort 2024</title>" in html


@pytest.mark.parametrize("command", ["analyze", "report", "batch", "compare"])
def test_an_output_path_that_is_a_file_is_refused(tmp_path, capsys, command):
    flair = save(make_phantom(lesions=()).flair, tmp_path / "flair.nii.gz")
    taken = tmp_path / "results.txt"
    taken.write_text("not a folder")
    argv = {"analyze": ["analyze", "--flair", str(flair), "--model", "baseline"],
            "report": ["report", "--flair", str(flair), "--lesions", str(flair)],
            "batch": ["batch", str(tmp_path / "missing-bids")],
            "compare": ["compare", "--baseline-flair", str(flair), "--followup-flair", str(flair),
                        "--model", "baseline"]}[command]
    if command == "batch":
        manifest = tmp_path / "list.csv"
        manifest.write_text("subject,flair\n01,flair.nii.gz\n")
        argv = ["batch", str(manifest)]
    for out in (taken, taken / "sub"):
        assert main([*argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "results.txt: is a file" in err and "Traceback" not in err
    assert taken.read_text() == "not a folder"
