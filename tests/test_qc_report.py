"""report.html for a researcher (issue 16, item 7): readable summary, model accuracy and limits,
brain mask with its QC picture, timings, and mosaic slices spread over the brain."""
from __future__ import annotations

import html as _html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mslesion.qc.figures import choose_slices
from mslesion.qc.render import hex_rgb
from mslesion.qc.subject import BRAIN_MASK_COLOUR

from .test_qc import synthetic_result

CARD = """# test-model

**Status: early test model. Cross-validated Dice 0.44 / lesion F1 0.34. Use with review.**

## Limitations
- Under-trained: expect missed small lesions
  and false positives.
- Threshold fixed at 0.5.
"""


def _cells(page: str) -> dict[str, object]:
    return {k: json.loads(_html.unescape(v)) for k, v in re.findall(r'data-key="([^"]+)" data-value="([^"]*)"', page)}


def _model_folder(root: Path, validation: dict | None) -> Path:
    folder = root / "test-model"
    folder.mkdir(parents=True)
    spec = {"id": "test-model", "channels": ["flair"]}
    if validation is not None:
        spec["validation"] = validation
    (folder / "model.json").write_text(json.dumps(spec))
    (folder / "model_card.md").write_text(CARD)
    return folder


def _report(tmp_path: Path, name: str = "sub-01") -> tuple[str, Path]:
    result, out = synthetic_result(tmp_path, name=name)
    return (out / "report.html").read_text(), out


def test_readable_summary_brain_mask_and_timings(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLESION_MODELS", str(tmp_path / "no-models"))
    page, out = _report(tmp_path)
    report = json.loads((out / "report.json").read_text())
    cells = _cells(page)
    # every tagged cell is the report's own value
    for key, value in cells.items():
        expected = report
        for part in key.split("."):
            expected = expected[part]
        assert value == expected, key
    # a readable summary: regions in a table with a header, no nested key/value dump
    assert 'colspan=2' not in page
    assert re.search(r'<table id="regions"><thead><tr><th>region</th>', page)
    assert {"lesion_count", "total_volume_ml", "model.id", "brain_mask.method", "brain_mask.volume_ml",
            "timings_s.total_s", "timings_s.segment_s"} <= set(cells)
    assert cells["brain_mask.method"] == "deepbet"
    # the brain-mask QC picture: the mask outlined on the FLAIR
    png = np.asarray(Image.open(out / "qc" / "brain_mask.png").convert("RGB"))
    assert np.all(png == np.asarray(hex_rgb(BRAIN_MASK_COLOUR), np.uint8), axis=-1).sum() > 200
    assert "Brain mask outline" in page


def test_model_validation_block_is_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLESION_MODELS", str(tmp_path / "models"))
    _model_folder(tmp_path / "models", {"dice": 0.61, "lesion_f1": 0.52,
                                         "sensitivity_by_size": {"<10 mm3": 0.2, ">=100 mm3": 0.9},
                                         "per_case": {"case_a": {"dice": 0.8123, "lesion_f1": 0.7}}})
    page, _ = _report(tmp_path)
    table = re.search(r'<table class="summary" id="validation">(.*?)</table>', page).group(1)
    assert "dice" in table and "0.61" in table and "lesion f1" in table and "0.52" in table
    assert "sensitivity by size: &lt;10 mm3" in table and "0.9" in table
    assert "per case: case_a" in table and "dice 0.8123, lesion f1 0.7" in table and "{" not in table
    limits = re.search(r'<ul id="model-limitations">(.*?)</ul>', page).group(1)
    assert "Under-trained: expect missed small lesions and false positives." in limits


def test_model_card_status_without_validation_block(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLESION_MODELS", str(tmp_path / "models"))
    _model_folder(tmp_path / "models", None)
    page, _ = _report(tmp_path)
    status = re.search(r'<p class="warn" id="model-status">(.*?)</p>', page).group(1)
    assert status.startswith("Status: early test model. Cross-validated Dice 0.44")
    assert 'id="validation"' not in page


def test_model_without_card_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLESION_MODELS", str(tmp_path / "empty"))
    page, _ = _report(tmp_path)  # the synthetic report's model is of kind "test", not a trained model
    assert re.search(r'id="model-status">test-model is a test segmenter with no validated accuracy', page)


@pytest.mark.parametrize("clusters", [((0.0, 10.0), (90.0, 100.0)), ((40.0, 60.0),), ((50.0, 100.0),), ((0.0, 40.0),)])
def test_mosaic_slices_cover_the_whole_range(clusters):
    """Lesion-laden places get slices, but no stretch of the brain is left without one and no two
    slices show nearly the same cut (ISBI training01: none between z = 80 and 108 mm, z = 44 twice)."""
    pts = np.concatenate([np.linspace(a, b, 300) for a, b in clusters])
    n = 12
    width = 100.0 / n
    picks = choose_slices(0.0, 100.0, n, pts)
    assert len(picks) == n and all(0.0 <= p <= 100.0 for p in picks)
    assert np.diff([0.0, *picks, 100.0]).max() <= 1.5 * width + 1e-6, picks
    assert np.diff(picks).min() >= 0.5 * width - 1e-6, picks
    # every bin of the range that lies wholly in lesion gets its slice on lesion (at most n // 2 such moves)
    inside = sum(any(a <= k * width and (k + 1) * width <= b for a, b in clusters) for k in range(n))
    assert sum(any(a <= p <= b for a, b in clusters) for p in picks) >= min(inside, n // 2)


def test_mosaics_stay_within_the_brain_not_its_stray_bits(tmp_path, monkeypatch):
    """A brain mask with a stray blob in the neck (as deepbet gave on ISBI training01) must not
    stretch the mosaics' range over the neck."""
    from mslesion.qc import subject as qc_subject

    result, _ = synthetic_result(tmp_path, name="base")
    brain = result.preprocessed.brain_mask
    data = (np.asarray(brain.data) > 0).astype(np.uint8)
    zs = np.flatnonzero(data.any(axis=(0, 1)))
    assert zs[0] >= 6, "the phantom leaves room below the brain"
    data[30:33, 30:33, 0:3] = 1        # stray blob well below the brain
    result.preprocessed.brain_mask = brain.with_data(data)
    boxes = {}
    real_mosaic = qc_subject.mosaic

    def spy(image, labels, lut, view, **kw):
        boxes.setdefault(view, kw["box"])
        return real_mosaic(image, labels, lut, view, **kw)

    monkeypatch.setattr(qc_subject, "mosaic", spy)
    qc_subject.write_subject_qc(result, tmp_path / "stray")
    z_lo = boxes["axial"][0][2]
    brain_bottom = float((brain.affine @ np.array([0, 0, zs[0], 1.0]))[2]) - brain.zooms[2] / 2
    assert z_lo >= brain_bottom - 4.0 - 1e-6, (z_lo, brain_bottom)
