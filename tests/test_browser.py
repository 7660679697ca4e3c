"""The HTML reports in a real browser (headless Chromium, Debian's ``chromium`` package).

Each page is opened twice: once as is for a screenshot (kept under
``test-artifacts/``), once as a copy with a small checker script appended
that runs after the ``load`` event and writes its findings into the DOM,
which ``--dump-dom`` prints.  It checks that every <img> decoded
(``naturalWidth > 0``), that nothing was fetched from outside the page,
reads every summary cell and clicks a table header to test sorting.
"""
from __future__ import annotations

import html as _html
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mslesion.pipeline import AnalyzeOptions, Analyzer
from mslesion.qc import write_batch_index

from .conftest import ROOT, chromium_path
from .test_qc import synthetic_result

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "test-artifacts"

CHECKER = """
<script>
window.addEventListener('load', function () {
  var res = {images: [], keys: {}, resources: [], sorted: null};
  Array.from(document.images).forEach(function (im) {
    res.images.push({alt: im.alt, complete: im.complete, w: im.naturalWidth, h: im.naturalHeight});
  });
  document.querySelectorAll('[data-key]').forEach(function (e) {
    res.keys[e.dataset.key] = {text: e.textContent, value: e.dataset.value === undefined ? null : e.dataset.value};
  });
  performance.getEntriesByType('resource').forEach(function (r) { res.resources.push(r.name); });
  var t = document.querySelector('table.sortable'), col = SORT_COLUMN;
  if (t && t.tBodies[0].rows.length > 1) {
    var th = Array.from(t.tHead.rows[0].cells).findIndex(function (c) { return c.textContent === col; });
    if (th >= 0) {
      var read = function () { return Array.from(t.tBodies[0].rows).map(function (r) {
        return parseFloat(r.cells[th].dataset.sort || r.cells[th].textContent); }); };
      t.tHead.rows[0].cells[th].click(); var up = read();
      t.tHead.rows[0].cells[th].click(); var down = read();
      res.sorted = {column: col, up: up, down: down};
    }
  }
  var pre = document.createElement('pre'); pre.id = 'qc-test-result';
  pre.textContent = JSON.stringify(res); document.body.appendChild(pre);
});
</script>
"""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars"]


def chromium(args: list[str], profile: Path, timeout: float = 90) -> str:
    cmd = [chromium_path(), *FLAGS, f"--user-data-dir={profile}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return proc.stdout


def check_page(page: Path, tmp: Path, sort_column: str = "volume_ml") -> dict:
    """Open a copy of ``page`` with the checker appended; return the checker's findings."""
    text = page.read_text(encoding="utf-8")
    probe = page.with_name(f".probe-{page.name}")
    probe.write_text(text.replace("</body>", CHECKER.replace("SORT_COLUMN", json.dumps(sort_column)) + "</body>"),
                     encoding="utf-8")
    try:
        dom = chromium(["--virtual-time-budget=15000", "--dump-dom", probe.as_uri()], tmp / "profile-dom")
    finally:
        probe.unlink()
    m = re.search(r'<pre id="qc-test-result">(.*?)</pre>', dom, re.S)
    assert m, f"checker produced no result; DOM starts: {dom[:300]!r}"
    return json.loads(_html.unescape(m.group(1)))


def screenshot(page: Path, name: str, tmp: Path, height: int = 2400) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    target.unlink(missing_ok=True)
    chromium([f"--screenshot={target}", f"--window-size=1280,{height}", "--virtual-time-budget=15000",
              page.as_uri()], tmp / "profile-shot")
    assert target.is_file(), "Chromium wrote no screenshot"
    img = np.asarray(Image.open(target).convert("L"), dtype=float)
    assert img.shape[1] == 1280 and img.std() > 10, "screenshot is blank"
    return target


def lookup(report: dict, key: str):
    value = report
    for part in key.split("."):
        value = value[part]
    return value


def assert_summary_matches(found: dict, report: dict) -> None:
    keys = found["keys"]
    for must in ("lesion_count", "total_volume_ml", "model.id"):
        assert must in keys, f"summary lacks {must}"
    for key, cell in keys.items():
        expected = lookup(report, key)
        assert json.loads(cell["value"]) == expected, key
        shown = cell["text"].strip()
        if isinstance(expected, bool) or expected is None:
            continue
        if isinstance(expected, (int, float)):
            assert float(shown) == pytest.approx(expected, rel=1e-3, abs=1e-9), (key, shown, expected)
        elif isinstance(expected, str):
            assert shown == expected, key


def assert_images_loaded(found: dict, expected: int) -> None:
    images = found["images"]
    assert len(images) == expected
    broken = [im["alt"] for im in images if not (im["complete"] and im["w"] > 0 and im["h"] > 0)]
    assert not broken, f"broken images: {broken}"
    assert all(r.startswith("data:") for r in found["resources"]), found["resources"]


def _analyse(tmp: Path, name: str, lesions) -> tuple[Path, dict]:
    tmp.mkdir(parents=True, exist_ok=True)
    result, out = synthetic_result(tmp, lesions=lesions, name=name)
    return out, result.report


def test_subject_report_in_chromium(tmp_path):
    out, report = _analyse(tmp_path, "sub-phantom", ((32, 40, 24, 3.0), (20, 28, 24, 2.0), (44, 30, 20, 2.0)))
    assert report["lesion_count"] >= 2
    found = check_page(out / "report.html", tmp_path)
    assert_images_loaded(found, 4 + report["lesion_count"])  # 3 mosaics + brain-mask outline + gallery
    assert_summary_matches(found, json.loads((out / "report.json").read_text()))
    up, down = found["sorted"]["up"], found["sorted"]["down"]
    assert up == sorted(up) and down == sorted(up, reverse=True) and up != down
    screenshot(out / "report.html", "report_phantom.png", tmp_path)


def test_checker_sees_a_broken_image(tmp_path):
    """Control: the browser check does fail on a page with a corrupt image."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img alt="bad" src="data:image/png;base64,AAAA">'
                    '<img alt="ok" src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAA'
                    'DUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="></body></html>')
    found = check_page(page, tmp_path)
    assert [im["w"] for im in found["images"]] == [0, 1]
    with pytest.raises(AssertionError, match="broken images"):
        assert_images_loaded(found, 2)


def test_batch_index_in_chromium(tmp_path):
    deriv = tmp_path / "derivatives"
    o1, r1 = _analyse(deriv, "sub-01", ((32, 40, 24, 3.0), (20, 28, 24, 2.0)))
    o2, r2 = _analyse(deriv, "sub-02", ((32, 40, 24, 3.0),))
    rows = [{"subject": s, "out_dir": o, "lesion_count": r["lesion_count"], "total_volume_ml": r["total_volume_ml"]}
            for s, o, r in (("sub-01", o1, r1), ("sub-02", o2, r2))]
    index = write_batch_index(deriv, rows, [{"subject": "sub-03", "error": "FLAIR file does not exist"}])
    found = check_page(index, tmp_path, sort_column="lesion_count")
    assert_images_loaded(found, 2)
    up, down = found["sorted"]["up"], found["sorted"]["down"]
    assert up == sorted(up) and down == sorted(up, reverse=True)
    assert sorted(up) == sorted([r1["lesion_count"], r2["lesion_count"]])
    screenshot(index, "batch_index_phantom.png", tmp_path, height=900)


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("case", ["isbi2015/training01", "ljubljana/patient07"])
def test_real_subject_report_in_chromium(case, shared_data, tmp_path):
    out = tmp_path / "out"
    result = Analyzer(AnalyzeOptions(model="baseline")).run({"flair": shared_data / "brain_ms" / case / "flair.nii.gz"},
                                                              out)
    found = check_page(out / "report.html", tmp_path)
    from mslesion.qc.subject import MAX_GALLERY

    # 3 mosaics + brain-mask outline + tissue classes + gallery
    assert result.volumes is not None and result.volumes.labels is not None
    assert_images_loaded(found, 5 + min(result.report["lesion_count"], MAX_GALLERY))
    assert any(im["alt"].startswith("Tissue classes") for im in found["images"])
    assert_summary_matches(found, json.loads((out / "report.json").read_text()))
    screenshot(out / "report.html", f"report_{case.replace('/', '_')}.png", tmp_path)
