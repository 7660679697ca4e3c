"""Issue 16, item 1: the default model ships with the package and never vanishes silently."""
from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mslesion.errors import InputError, ModelError
from mslesion.model import DEFAULT_FLAIR_MODEL, load_model_segmenter
from mslesion.model.store import models_root, read_raw, read_spec
from mslesion.pipeline import AnalyzeOptions, Analyzer
from mslesion.preprocess import PreprocessOptions
from mslesion.segment import load_segmenter
from tests.factories import make_phantom, save

ROOT = Path(__file__).resolve().parents[1]


def _model_files() -> set[str]:
    """Every file under the checkout's models/, relative to models/ (the folders the package must ship)."""
    return {p.relative_to(ROOT / "models").as_posix() for p in (ROOT / "models").rglob("*") if p.is_file()}


def _build(kind: str, dest: Path) -> Path:
    """Build a wheel or sdist of the checkout into ``dest``; leave no build/ or egg-info behind."""
    import shutil

    leftovers = [ROOT / "build", ROOT / "mslesion.egg-info"]
    existed = [p.exists() for p in leftovers]
    code = (f"import sys; from setuptools import build_meta as b; "
            f"print(b.build_{kind}(sys.argv[1]))")
    try:
        done = subprocess.run([sys.executable, "-c", code, str(dest)], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
    finally:
        for path, was in zip(leftovers, existed):
            if not was:
                shutil.rmtree(path, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return dest / done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_wheel_and_sdist_ship_every_model_folder(tmp_path):
    wanted = _model_files()
    default = models_root() / DEFAULT_FLAIR_MODEL
    # a combined default needs its parts' folders too
    folders = [default] + [models_root() / part for part in read_raw(default).get("parts", [])]
    needed = {f"{f.name}/model.json" for f in folders}
    needed |= {f"{f.name}/{name}" for f in folders if "parts" not in read_raw(f) for name, _ in read_spec(f).members}
    assert len(needed) >= 2 and needed <= wanted
    wheel = _build("wheel", tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n[len("mslesion/models/"):] for n in zf.namelist() if n.startswith("mslesion/models/")}
    assert wanted <= shipped, sorted(wanted - shipped)
    sdist = _build("sdist", tmp_path / "sdist")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {f"models/{f}" for f in wanted} <= names


def test_models_root_finds_installed_and_checkout_layouts(tmp_path, monkeypatch):
    monkeypatch.delenv("MSLESION_MODELS", raising=False)
    assert (models_root() / DEFAULT_FLAIR_MODEL / "model.json").is_file()  # this checkout
    installed = tmp_path / "site-packages" / "mslesion"
    (installed / "models" / "some-model").mkdir(parents=True)
    assert models_root(installed) == installed / "models"
    checkout = tmp_path / "repo" / "mslesion"
    checkout.mkdir(parents=True)
    assert models_root(checkout) == tmp_path / "repo" / "models"
    monkeypatch.setenv("MSLESION_MODELS", str(tmp_path / "elsewhere"))
    assert models_root() == tmp_path / "elsewhere"


def test_auto_without_default_model_is_an_error_naming_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLESION_MODELS", str(tmp_path))
    with pytest.raises(ModelError, match=DEFAULT_FLAIR_MODEL) as info:
        load_segmenter("auto", {"flair"}, device="cpu")
    assert "baseline" in str(info.value)  # says what to pass instead
    assert load_segmenter("baseline", {"flair"}).kind == "classical-baseline"  # only when asked


def test_auto_with_corrupt_default_model_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLESION_MODELS", str(tmp_path))
    (tmp_path / DEFAULT_FLAIR_MODEL).mkdir()
    (tmp_path / DEFAULT_FLAIR_MODEL / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match=DEFAULT_FLAIR_MODEL):
        load_model_segmenter("auto", {"flair"}, "cpu")


def test_cli_analyze_without_default_model_exits_2(tmp_path, monkeypatch, capsys):
    from mslesion.cli import main

    ph = make_phantom(lesions=())
    flair = save(ph.flair, tmp_path / "flair.nii.gz")
    monkeypatch.setenv("MSLESION_MODELS", str(tmp_path / "no-models"))
    rc = main(["analyze", "--flair", str(flair), "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "no-models" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "report.json").exists()


def test_api_refuses_a_flair_that_is_not_a_brain(tmp_path, monkeypatch):
    """Analyzer.run checks the FLAIR as `mslesion analyze` does (here: a brain mask of ~100 ml)."""
    import mslesion.preprocess.pipeline as prep

    ph = make_phantom(shape=(32, 32, 24), lesions=())
    # the brain mask: everything bright in the (small) head, as a brain extraction might find it
    monkeypatch.setattr(prep, "extract_brain", lambda flair, *a, **k: flair.with_data(
        (flair.data > 0.2 * flair.data.max()).astype(np.uint8)))
    flair = save(ph.flair, tmp_path / "small.nii.gz")
    fast = PreprocessOptions(bias_correction=False, coregister=False)
    with pytest.raises(InputError, match="does not look like a brain"):
        Analyzer(AnalyzeOptions(model="baseline", preprocess=fast)).run({"flair": flair})
    # the check can be turned off explicitly
    res = Analyzer(AnalyzeOptions(model="baseline", preprocess=fast, check_brain=False)).run({"flair": flair})
    assert res.lesion_mask.shape == ph.flair.shape
