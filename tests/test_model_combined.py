"""Combined model folders: the mean probability of named sibling models, each pinned by sha256."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mslesion.errors import ModelError
from mslesion.model import CombinedSegmenter, load_model_segmenter
from mslesion.model.store import describe_models, read_spec
from tests.test_model import make_model_folder, phantom_pre


def _combined(root, parts, pins=None, **extra):
    """A combined folder written by hand (to break it on purpose)."""
    folder = root / "combo"
    folder.mkdir()
    pins = pins or {p: [read_spec(root / p).sha256] for p in parts}
    meta = {"id": "combo", "format_version": 1, "channels": ["flair"], "required_contrasts": ["flair"],
            "threshold": 0.5, "min_peak": 0.8, "parts": parts, "parts_sha256": pins, **extra}
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def test_combine_command_writes_a_folder_that_pins_its_parts(tmp_path):
    import subprocess
    import sys

    make_model_folder(tmp_path / "a", model_id="a", seed=0)
    make_model_folder(tmp_path / "b", model_id="b", seed=1)
    done = subprocess.run([sys.executable, "scripts/train.py", "combine", str(tmp_path / "ab"), "ab", "--parts", "a",
                           "b", "--threshold", "0.4", "--min-peak", "0.8", "--part-weights", "2", "1"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    seg = load_model_segmenter(str(tmp_path / "ab"), {"flair"}, "cpu")
    assert (seg.model_id, seg.threshold, seg.min_peak) == ("ab", 0.4, 0.8)
    assert [p.model_id for p in seg.parts] == ["a", "b"]
    meta = json.loads((tmp_path / "ab" / "model.json").read_text())
    assert meta["parts_sha256"] == {"a": [read_spec(tmp_path / "a").sha256], "b": [read_spec(tmp_path / "b").sha256]}
    assert meta["part_weights"] == [2.0, 1.0] and seg.spec.part_weights == pytest.approx([2 / 3, 1 / 3])


def test_combined_model_is_the_mean_of_its_parts(tmp_path):
    make_model_folder(tmp_path / "a", model_id="a", seed=0)
    make_model_folder(tmp_path / "b", model_id="b", seed=1)
    folder = _combined(tmp_path, ["a", "b"], validation={"mean_dice": 0.5})
    seg = load_model_segmenter(str(folder), {"flair"}, "cpu")
    assert isinstance(seg, CombinedSegmenter)
    assert seg.model_id == "combo" and seg.min_peak == 0.8 and seg.validation == {"mean_dice": 0.5}
    settings = seg.inference_settings()
    assert set(settings["parts"]) == {"a", "b"} and settings["device"] == "cpu"
    _, pre = phantom_pre(t1=False)
    parts = [load_model_segmenter(str(tmp_path / p), {"flair"}, "cpu").predict(pre).data for p in "ab"]
    assert not np.allclose(parts[0], parts[1])
    np.testing.assert_allclose(seg.predict(pre).data, (parts[0] + parts[1]) / 2, atol=1e-6)
    rows = {r["id"]: r for r in describe_models(tmp_path, verify=True)}
    assert rows["combo"]["parts"] == ["a", "b"] and rows["combo"]["sha256_ok"] is True
    with pytest.raises(ModelError, match="combined"):
        read_spec(folder)


def test_combined_model_weighs_its_parts_as_model_json_says(tmp_path):
    make_model_folder(tmp_path / "a", model_id="a", seed=0)
    make_model_folder(tmp_path / "b", model_id="b", seed=1)
    folder = _combined(tmp_path, ["a", "b"], part_weights=[3, 1])
    seg = load_model_segmenter(str(folder), {"flair"}, "cpu")
    assert seg.spec.part_weights == [0.75, 0.25]
    assert seg.inference_settings()["part_weights"] == {"a": 0.75, "b": 0.25}
    _, pre = phantom_pre(t1=False)
    parts = [load_model_segmenter(str(tmp_path / p), {"flair"}, "cpu").predict(pre).data for p in "ab"]
    np.testing.assert_allclose(seg.predict(pre).data, 0.75 * parts[0] + 0.25 * parts[1], atol=1e-6)


@pytest.mark.parametrize("bad", [[1.0], [1.0, 0.0], ["x", 1.0], 2.0])
def test_combined_model_refuses_bad_part_weights(tmp_path, bad):
    make_model_folder(tmp_path / "a", model_id="a", seed=0)
    make_model_folder(tmp_path / "b", model_id="b", seed=1)
    folder = _combined(tmp_path, ["a", "b"], part_weights=bad)
    with pytest.raises(ModelError, match="part_weights"):
        load_model_segmenter(str(folder), {"flair"}, "cpu")


def test_combined_model_refuses_parts_whose_weights_changed(tmp_path):
    make_model_folder(tmp_path / "a", model_id="a", seed=0)
    make_model_folder(tmp_path / "b", model_id="b", seed=1)
    folder = _combined(tmp_path, ["a", "b"], pins={"a": [read_spec(tmp_path / "a").sha256], "b": ["0" * 64]})
    with pytest.raises(ModelError, match="pins"):
        load_model_segmenter(str(folder), {"flair"}, "cpu")


def test_combined_model_needs_its_parts(tmp_path):
    make_model_folder(tmp_path / "a", model_id="a", seed=0)
    folder = _combined(tmp_path, ["a", "missing"], pins={"a": [read_spec(tmp_path / "a").sha256], "missing": []})
    with pytest.raises(ModelError, match="missing"):
        load_model_segmenter(str(folder), {"flair"}, "cpu")
    rows = {r["id"]: r for r in describe_models(tmp_path)}
    assert "missing" in rows["combo"]["error"]


def test_models_command_describes_a_combined_model(tmp_path, capsys):
    from mslesion.cli import main

    make_model_folder(tmp_path / "a", model_id="a", seed=0)
    make_model_folder(tmp_path / "b", model_id="b", seed=1)
    _combined(tmp_path, ["a", "b"])
    assert main(["models", "--root", str(tmp_path), "--verify"]) in (0, 1)  # 1 only if deepbet weights are absent
    out = capsys.readouterr().out
    assert "combo: needs FLAIR" in out and "mean probability of the models a, b" in out
