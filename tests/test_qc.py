"""QC pictures and HTML pages (no browser needed; see test_browser.py for Chromium)."""
from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mslesion.errors import OutputError
from mslesion.lesions import find_lesions
from mslesion.location import LocationResult
from mslesion.pipeline import AnalysisResult, AnalyzeOptions, Analyzer, write_outputs
from mslesion.preprocess import Preprocessed
from mslesion.qc import (
    compare_figure,
    region_colour,
    sagittal_cord_figure,
    write_batch_index,
    write_report_html,
    write_subject_qc,
)
from mslesion.qc import subject as qc_subject
from mslesion.qc.figures import CORD_COLOUR, NEW_COLOUR, choose_slices, lesion_lut, mosaic
from mslesion.qc.render import Plane, edge_labels, hex_rgb, sample, world_box
from mslesion.volume import Volume

from .factories import make_phantom, save

REGION_CYCLE = ("periventricular", "juxtacortical", "infratentorial", "deep_white_matter")


def synthetic_result(tmp: Path, lesions=((32, 40, 24, 3.0), (20, 28, 24, 2.0)), name: str = "sub-01"):
    """An AnalysisResult built from a phantom's truth (no preprocessing or model), written with
    the pipeline's own ``write_outputs`` (so report.html comes from the real output path)."""
    ph = make_phantom(lesions=lesions)
    flair = ph.flair
    path = save(flair, tmp / f"{name}_flair.nii.gz")
    flair = Volume(flair.data, flair.affine, path)
    mask = ph.lesions.with_data((ph.lesions.data > 0).astype(np.uint8))
    _, found = find_lesions(mask)
    for n, les in enumerate(found):
        les.region = REGION_CYCLE[n % len(REGION_CYCLE)]
    regions = {r: {"count": sum(l.region == r for l in found),
                   "volume_ml": round(sum(l.volume_ml for l in found if l.region == r), 4)}
               for r in sorted({l.region for l in found})}
    dis = {"met": len(regions) >= 2, "areas_involved": len(regions)}
    report = {"lesion_count": len(found), "total_volume_ml": round(sum(l.volume_ml for l in found), 4),
              "regions": regions, "mcdonald_dis": dis,
              "inputs": {"flair": {"path": str(path), "sha256": "0" * 64, "shape": list(flair.shape),
                                   "voxel_size_mm": [round(z, 4) for z in flair.zooms]}},
              "model": {"id": "test-model", "kind": "test", "threshold": 0.5}, "mslesion_version": "test",
              "brain_mask": {"method": "deepbet",
                             "volume_ml": round(float(np.count_nonzero(ph.brain.data)) * ph.brain.voxel_volume_ml, 1)},
              "timings_s": {"preprocess_s": 1.5, "segment_s": 2.25, "location_s": 0.5, "total_s": 4.5}}
    pre = Preprocessed(native=flair, images={"flair": flair}, brain_mask=ph.brain)
    result = AnalysisResult(mask, mask.with_data(mask.data.astype(np.float32)), found,
                            LocationResult(regions=regions, mcdonald_dis=dis), report, pre)
    out = tmp / name
    out.mkdir(parents=True, exist_ok=True)
    write_outputs(result, out)
    return result, out


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    return synthetic_result(tmp_path_factory.mktemp("qc"))


def _has_colour(img: np.ndarray, colour: str) -> np.ndarray:
    return np.all(img[..., :3] == np.asarray(hex_rgb(colour), np.uint8), axis=-1)


def _marker_volume(affine: np.ndarray, shape=(40, 40, 40), marker_vox=(30, 20, 20)) -> Volume:
    data = np.full(shape, 100.0, np.float32)
    i, j, k = marker_vox
    data[i - 1:i + 2, j - 1:j + 2, k - 1:k + 2] = 1000.0
    return Volume(data, affine)


def _img_uris(html: str) -> list[str]:
    return re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)


def test_radiological_puts_patient_right_on_image_left():
    # RAS affine, marker at +x (patient's right), centred in y and z
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = -19.5
    vol = _marker_volume(aff)
    lo, hi = world_box(vol, foreground=False)
    for convention, on_left in (("radiological", True), ("neurological", False)):
        pl = Plane("axial", 0.5, tuple(lo), tuple(hi), 0.5, convention)
        img = sample(vol, pl, order=1)
        cols = np.nonzero(img.max(axis=0) > 500)[0]
        assert cols.size, "marker not rendered"
        assert (cols.mean() < img.shape[1] / 2) == on_left, convention
    assert edge_labels("axial", "radiological") == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert edge_labels("coronal", "neurological")["left"] == "L"
    assert edge_labels("sagittal")["left"] == "A"


def test_voxel_order_does_not_change_the_picture():
    """The same anatomy stored RAS or LPS with swapped axes renders identically (no hidden transposes)."""
    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    aff[:3, 3] = (-19.5, -19.5, -39.0)
    ras = _marker_volume(aff, marker_vox=(30, 12, 25))
    # flip i and j (LPS storage) and swap the first two voxel axes, adjusting the affine to match
    data = ras.data[::-1, ::-1, :].transpose(1, 0, 2)
    flip = np.array([[-1, 0, 0, 39], [0, -1, 0, 39], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    swap = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    lps = Volume(np.ascontiguousarray(data), aff @ flip @ swap)
    lo, hi = world_box(ras, foreground=False)
    for view in ("axial", "coronal", "sagittal"):
        pl = Plane(view, 2.0, tuple(lo), tuple(hi), 0.7)
        np.testing.assert_allclose(sample(ras, pl), sample(lps, pl), atol=1e-3)


def test_one_slice_lesion_on_thick_slices_is_outlined_in_every_view():
    shape, zooms = (48, 48, 12), (1.0, 1.0, 5.0)
    aff = np.diag([*zooms, 1.0])
    aff[:3, 3] = -np.asarray(zooms) * (np.asarray(shape) - 1) / 2
    data = np.zeros(shape, np.float32)
    data[6:42, 6:42, 1:11] = 300.0
    lab = np.zeros(shape, np.int32)
    lab[30:32, 20:22, 7] = 1  # 2 x 2 mm in-plane, one 5 mm slice thick
    data[lab > 0] = 900.0
    image, labels = Volume(data, aff), Volume(lab, aff)
    lut = lesion_lut(1, {1: "#FF4040"})
    for view in ("axial", "coronal", "sagittal"):
        img, planes = mosaic(image, labels, lut, view, n=6)
        assert _has_colour(np.asarray(img), "#FF4040")[30:].sum() > 4, view  # below the title bar
    _, planes = mosaic(image, labels, lut, "axial", n=6)
    z_lesion = (aff @ [30.5, 20.5, 7, 1])[2]
    assert any(abs(p.coord - z_lesion) < 1e-3 for p in planes), "axial slices snap to the acquired lesion slice"


def test_choose_slices_includes_lesion_positions_and_stays_in_range():
    picks = choose_slices(0.0, 100.0, 8, np.array([73.0] * 50 + [12.0] * 10))
    assert len(picks) == 8 and all(0 <= p <= 100 for p in picks)
    assert min(abs(p - 73) for p in picks) < 1.0 and min(abs(p - 12) for p in picks) < 1.0
    assert choose_slices(0.0, 100.0, 4, np.zeros(0)) == [12.5, 37.5, 62.5, 87.5]


def test_subject_report_is_self_contained_and_matches_report(analysed):
    result, out = analysed
    html = (out / "report.html").read_text()
    report = json.loads((out / "report.json").read_text())
    assert report["lesion_count"] == len(result.lesions) >= 1
    uris = _img_uris(html)
    n_gallery = min(len(result.lesions), qc_subject.MAX_GALLERY)
    assert len(uris) == 4 + n_gallery  # 3 mosaics, the brain-mask outline, the gallery
    for uri in uris:
        assert uri.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        assert img.size[0] > 50 and img.size[1] > 50
    assert not re.search(r'(src|href)="(https?:)?//', html), "no network references"
    assert "default-src 'none'" in html
    cells = dict(re.findall(r'data-key="([^"]+)" data-value="([^"]*)"', html))
    for key in ("lesion_count", "total_volume_ml", "model.id", "inputs.flair.path"):
        assert key in cells, key
    import html as _html
    for key, raw in cells.items():
        value = report
        for part in key.split("."):
            value = value[part]
        assert json.loads(_html.unescape(raw)) == value, key
    for png in ("axial", "coronal", "sagittal", "brain_mask", "thumbnail", "lesion_001"):
        assert (out / "qc" / f"{png}.png").is_file()
    # report.json marks completion: it is committed after report.html
    assert (out / "report.html").stat().st_mtime_ns <= (out / "report.json").stat().st_mtime_ns


def test_gallery_is_centred_on_each_lesion(analysed):
    result, out = analysed
    for les in result.lesions:
        img = np.asarray(Image.open(out / "qc" / f"lesion_{les.id:03d}.png").convert("RGB"))
        tile_w = (img.shape[1] - 12) // 3
        tile = img[20:, :tile_w]  # axial close-up under the caption bar
        ys, xs = np.nonzero(_has_colour(tile, region_colour(les.region)))
        assert ys.size > 0, (les.id, les.region)
        h, w = tile.shape[:2]
        assert abs(np.median(xs) - w / 2) < w * 0.2 and abs(np.median(ys) - h / 2) < h * 0.2


def test_no_lesions_and_gallery_cap(tmp_path, monkeypatch):
    result, out = synthetic_result(tmp_path, lesions=(), name="empty")
    html = (out / "report.html").read_text()
    assert result.report["lesion_count"] == 0 and len(_img_uris(html)) == 4
    assert not list((out / "qc").glob("lesion_*.png"))
    assert "None." in html
    result2, out2 = synthetic_result(tmp_path, name="capped")
    monkeypatch.setattr(qc_subject, "MAX_GALLERY", 1)
    write_subject_qc(result2, out2)
    html2 = (out2 / "report.html").read_text()
    assert len(_img_uris(html2)) == 5 and "Gallery shows the 1 largest of 2 lesions" in html2
    assert sorted(p.name for p in (out2 / "qc").glob("lesion_*.png")) == ["lesion_002.png"]


def test_unwritable_output_raises_output_error(analysed, tmp_path):
    result, _ = analysed
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        write_subject_qc(result, blocker)


def test_generic_page_escapes_text(tmp_path):
    img = tmp_path / "qc" / "a.png"
    img.parent.mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(img)
    p = write_report_html(tmp_path, "<script>x</script>", {"n": 1, "note": "<b>"}, [{"a": "<i>", "b": 2.5}],
                          [("caption <1>", img)])
    html = p.read_text()
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html and "&lt;i&gt;" in html
    assert len(_img_uris(html)) == 1
    bad = tmp_path / "qc" / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(OutputError):
        write_report_html(tmp_path, "t", {}, [], [("bad", bad)])


def test_batch_index_links_thumbnails_and_failures(tmp_path):
    r1, o1 = synthetic_result(tmp_path, name="sub-01")
    r2, o2 = synthetic_result(tmp_path, lesions=((32, 40, 24, 3.0),), name="sub-02")
    rows = [{"subject": "sub-01", "out_dir": o1, "lesion_count": r1.report["lesion_count"],
             "total_volume_ml": r1.report["total_volume_ml"], "mcdonald_dis": {"met": False}},
            {"subject": "sub-02", "out_dir": "sub-02", "lesion_count": r2.report["lesion_count"],
             "total_volume_ml": r2.report["total_volume_ml"]}]
    failures = [{"subject": "sub-03", "error": "flair.nii.gz: FLAIR <file> does not exist"}]
    # the batch's BIDS layout: report JSON in anat/, page and PNGs renamed into figures/
    bids = tmp_path / "sub-04"
    (bids / "anat").mkdir(parents=True)
    (bids / "figures" / "qc").mkdir(parents=True)
    (bids / "anat" / "sub-04_desc-lesions_report.json").write_text("{}")
    (bids / "figures" / "sub-04_report.html").write_text((o2 / "report.html").read_text())
    (bids / "figures" / "qc" / "sub-04_thumbnail.png").write_bytes((o2 / "qc" / "thumbnail.png").read_bytes())
    rows.append({"subject": "sub-04", "session": "", "lesion_count": 1,
                 "report": str(bids / "anat" / "sub-04_desc-lesions_report.json")})
    index = write_batch_index(tmp_path, rows, failures)
    html = index.read_text()
    assert index == tmp_path / "index.html"
    hrefs = list(dict.fromkeys(re.findall(r'href="([^"]+)"', html)))
    assert hrefs == ["sub-01/report.html", "sub-02/report.html", "sub-04/figures/sub-04_report.html"]
    assert all((tmp_path / h).is_file() for h in hrefs)
    assert len(_img_uris(html)) == 3
    assert "FLAIR &lt;file&gt; does not exist" in html and "Failures (1)" in html
    assert "mcdonald_dis.met" in html


def test_compare_figure_highlights_new_lesion_on_both_sides(tmp_path):
    base = make_phantom(lesions=((20, 28, 24, 2.0),))
    follow = make_phantom(lesions=((20, 28, 24, 2.0), (40, 36, 24, 2.5)), seed=1)
    new = follow.lesions.with_data((follow.lesions.data > 0) & ~(base.lesions.data > 0))
    png = compare_figure(base.flair, follow.flair, tmp_path / "qc" / "compare.png", new_lesions=new,
                         baseline_lesions=base.lesions, followup_lesions=follow.lesions, n_slices=4)
    img = np.asarray(Image.open(png).convert("RGB"))
    red = _has_colour(img, NEW_COLOUR)[26:-60]  # body only
    half = img.shape[1] // 2
    assert red[:, :half].sum() > 5 and red[:, half:].sum() > 5
    # same place on both sides: the patient's left (x<0) lesion sits right of centre in each panel
    ys, xs = np.nonzero(red[:, half:])
    assert abs(xs.mean() - np.nonzero(red[:, :half])[1].mean()) < 10


def test_sagittal_cord_figure_outlines_cord_and_lesion(tmp_path):
    shape = (30, 40, 60)
    aff = np.diag([0.8, 0.8, 2.0, 1.0])
    data = np.full(shape, 50.0, np.float32)
    cord = np.zeros(shape, np.uint8)
    cord[12:18, 17:23, 5:55] = 1
    data[cord > 0] = 400.0
    les = np.zeros(shape, np.uint8)
    les[14:16, 19:21, 30:33] = 1
    data[les > 0] = 900.0
    png = sagittal_cord_figure(Volume(data, aff), tmp_path / "cord.png", cord_mask=Volume(cord, aff),
                               lesion_mask=Volume(les, aff))
    img = np.asarray(Image.open(png).convert("RGB"))
    assert _has_colour(img, CORD_COLOUR)[26:-50].sum() > 50
    assert _has_colour(img, NEW_COLOUR)[26:-50].sum() > 5


@pytest.mark.slow
def test_analyzer_writes_report_html(tmp_path):
    """End to end through the real pipeline: report.html and qc/ appear beside report.json."""
    ph = make_phantom()
    flair = save(ph.flair, tmp_path / "flair.nii.gz")
    result = Analyzer(AnalyzeOptions(model="baseline")).run({"flair": flair}, tmp_path / "out")
    from .truth import assert_finds_phantom_lesions

    assert_finds_phantom_lesions(result.lesion_mask, ph.lesions)   # the page shows the right answer
    html = (tmp_path / "out" / "report.html").read_text()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert f'data-key="lesion_count" data-value="{report["lesion_count"]}"' in html
    # 3 mosaics + brain-mask outline + tissue classes (issue 18) + gallery
    assert len(_img_uris(html)) == 5 + min(len(result.lesions), qc_subject.MAX_GALLERY)
    assert (tmp_path / "out" / "qc" / "axial.png").is_file() and (tmp_path / "out" / "qc" / "tissue.png").is_file()
    assert 0 < report["timings_s"]["qc_s"] < 60


@pytest.mark.realdata
@pytest.mark.parametrize("rel", ["brain_ms/ljubljana/patient07/flair.nii.gz",   # stored LAS
                                 "spine/sct_testing/t2/t2_fake_lesion.nii.gz"])  # stored PSR (axes permuted)
def test_display_matches_nibabel_reorientation(rel, shared_data):
    """Independent check on real files: our world-space slices equal nibabel's RAS reorientation
    of the array, flipped by hand into the radiological layout."""
    import nibabel as nib
    from nibabel.orientations import apply_orientation, io_orientation

    from mslesion.io import load_volume

    vol = load_volume(shared_data / rel)
    assert np.allclose(np.abs(vol.affine[:3, :3]).max(axis=0), np.linalg.norm(vol.affine[:3, :3], axis=0))
    ras = apply_orientation(vol.data, io_orientation(vol.affine))
    spacing = vol.zooms[0]
    lo, hi = vol.world_bounds()
    expected = {"axial": lambda k: ras[::-1, ::-1, k].T, "coronal": lambda k: ras[::-1, k, ::-1].T,
                "sagittal": lambda k: ras[k, ::-1, ::-1].T}
    for view, normal in (("axial", 2), ("coronal", 1), ("sagittal", 0)):
        k = ras.shape[normal] // 2 + 3
        pl = Plane(view, float(lo[normal] + k * spacing), tuple(lo), tuple(hi), spacing)
        np.testing.assert_array_equal(sample(vol, pl, order=0), expected[view](k), err_msg=view)
    assert nib.aff2axcodes(vol.affine) != ("R", "A", "S")
