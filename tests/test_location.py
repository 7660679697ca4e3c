"""Lesion location: DIS rule, region rule, long axis, coordinate handling, and the report command."""
from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from mslesion.cli import main
from mslesion.lesions import Lesion, find_lesions
from mslesion.location import MCDONALD_AREAS, REGIONS, LocationOptions, dis_verdict, locate
from mslesion.location.atlas import ATLAS_FILE, LABEL_NAMES, TEMPLATE_FILE, from_sitk, load_atlas, to_sitk
from mslesion.location.regions import axial_long_axis_mm, classify, long_axis_mm, summarise, verdict_for
from mslesion.volume import Volume

from .factories import make_phantom, save


# ---------------------------------------------------------------- DIS
@pytest.mark.parametrize("counts, met, areas", [
    ({}, False, []),
    ({"periventricular": 5}, False, ["periventricular"]),
    ({"periventricular": 1, "juxtacortical": 1}, True, ["periventricular", "juxtacortical"]),
    ({"deep_white_matter": 9, "infratentorial": 1}, False, ["infratentorial"]),
    ({"infratentorial": 1, "spinal_cord": 2}, True, ["infratentorial", "spinal_cord"]),
])
def test_dis_verdict_needs_two_mcdonald_areas(counts, met, areas):
    v = dis_verdict(counts, LocationOptions())
    assert v["met"] is met
    assert v["areas_involved"] == areas
    assert set(v["qualifying_lesions_per_area"]) == set(MCDONALD_AREAS)
    assert "not a diagnosis" in v["note"]
    assert "3 mm" in v["rule"]


def test_dis_verdict_options_and_bad_counts():
    opts = LocationOptions(min_areas=3, min_long_axis_mm=5.0)
    v = dis_verdict({"periventricular": 1, "juxtacortical": 1}, opts)
    assert v["met"] is False and v["min_areas"] == 3 and v["min_long_axis_mm"] == 5.0
    assert dis_verdict({"periventricular": 1, "juxtacortical": 1, "infratentorial": 2}, opts)["met"] is True
    assert dis_verdict({"periventricular": 1}, None)["areas_not_assessed"] == ["juxtacortical", "infratentorial",
                                                                              "spinal_cord"]
    with pytest.raises(ValueError):
        dis_verdict({"periventricular": -1})


def test_small_lesions_do_not_count_for_dis():
    def les(i, region, axis):
        l = Lesion(i, 10, 0.01, 0, 0, 0, region=region)
        l.extra["long_axis_mm"] = l.extra["long_axis_axial_mm"] = axis
        return l

    opts = LocationOptions()
    small = [les(1, "periventricular", 5.0), les(2, "juxtacortical", 2.9)]
    assert verdict_for(small, opts)["met"] is False
    big = [les(1, "periventricular", 5.0), les(2, "juxtacortical", 3.0)]
    assert verdict_for(big, opts)["met"] is True


def test_dis_size_is_measured_in_plane():
    """Issue 16: a 1 x 1 x 3 mm speck is 3 mm long in 3-D but 1 mm in the axial plane: it does not count."""
    thick = np.diag([1.0, 1.0, 3.0, 1.0])
    speck = np.zeros((1, 3))
    assert long_axis_mm(speck, thick) == pytest.approx(3.0)
    assert axial_long_axis_mm(speck, thick) == pytest.approx(1.0)
    column = np.array([[0, 0, k] for k in range(4)], float)  # 12 mm tall, one voxel wide
    assert axial_long_axis_mm(column, thick) == pytest.approx(1.0)
    row = np.array([[i, 0, 0] for i in range(3)], float)
    assert axial_long_axis_mm(row, thick) == pytest.approx(3.0)
    # a rotated grid: the voxel's axes project onto x-y by their in-plane components only
    tilt = np.eye(4)
    tilt[:3, :3] = np.array([[0.0, 0.0, 3.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # 3 mm axis along world x
    assert axial_long_axis_mm(speck, tilt) == pytest.approx(3.0)

    def speck_lesion(i, region):
        l = Lesion(i, 1, 0.003, 0, 0, 0, region=region)
        l.extra.update(long_axis_mm=long_axis_mm(speck, thick), long_axis_axial_mm=axial_long_axis_mm(speck, thick))
        return l

    four = [speck_lesion(1, "periventricular"), speck_lesion(2, "periventricular"),
            speck_lesion(3, "juxtacortical"), speck_lesion(4, "infratentorial")]
    verdict = verdict_for(four, LocationOptions())
    assert verdict["met"] is False
    assert sum(verdict["qualifying_lesions_per_area"].values()) == 0
    assert "axial" in verdict["lesion_size_rule"] and "3 mm" in verdict["lesion_size_rule"]


@pytest.mark.slow
def test_report_specks_do_not_decide_dis(tmp_path):
    """End to end: single-voxel specks (2.5 x 2.5 x 3 mm) beside the ventricles and the cortex do not count."""
    ph = make_phantom(lesions=())
    mask = np.zeros(ph.flair.shape, np.uint8)
    for ijk in [(32, 32 + 9, 24), (32, 32 - 9, 24), (32 + 13, 32, 24), (7, 32, 24), (32, 57, 24), (57, 32, 24)]:
        mask[ijk] = 1
    flair = save(ph.flair, tmp_path / "flair.nii.gz")
    lesions = save(mask, tmp_path / "specks.nii.gz", ph.flair.affine, dtype=np.uint8)
    out = tmp_path / "out"
    assert main(["report", "--flair", str(flair), "--lesions", str(lesions), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = list(csv.DictReader((out / "lesions.csv").open()))
    assert len(rows) == 6
    assert all(float(r["long_axis_mm"]) >= 3.0 and float(r["long_axis_axial_mm"]) < 3.0 for r in rows)
    located = {r["region"] for r in rows}
    assert located & {"periventricular", "juxtacortical"}, located  # they lie in McDonald areas...
    dis = report["mcdonald_dis"]
    assert sum(dis["qualifying_lesions_per_area"].values()) == 0  # ...but none is big enough
    assert dis["met"] is False and "axial" in dis["lesion_size_rule"]


# ---------------------------------------------------------------- region rule
def test_classify_precedence_and_thresholds():
    o = LocationOptions(periventricular_mm=3.0, juxtacortical_mm=1.0)
    assert classify({"infratentorial": 0.6}, 0.0, 0.0, o) == "infratentorial"
    assert classify({"infratentorial": 0.4}, 3.0, 0.0, o) == "periventricular"
    assert classify({"infratentorial": 0.0}, 3.01, 1.0, o) == "juxtacortical"
    assert classify({"infratentorial": 0.0}, 3.01, 1.01, o) == "deep_white_matter"
    assert classify({}, 4.5, 9.0, LocationOptions(periventricular_mm=5.0)) == "periventricular"


def test_summarise_lists_every_region():
    lesions = [Lesion(1, 3, 0.5, 0, 0, 0, region="juxtacortical"), Lesion(2, 3, 0.25, 0, 0, 0, region="juxtacortical")]
    s = summarise(lesions)
    assert set(REGIONS) <= set(s)
    assert s["juxtacortical"] == {"count": 2, "volume_ml": 0.75}
    assert s["periventricular"]["count"] == 0


# ---------------------------------------------------------------- long axis
def test_long_axis_mm():
    iso = np.eye(4)
    line = np.array([[i, 0, 0] for i in range(5)], float)
    assert long_axis_mm(line, iso) == pytest.approx(5.0)
    aniso = np.diag([0.8, 0.8, 4.4, 1.0])
    column = np.array([[0, 0, k] for k in range(3)], float)
    assert long_axis_mm(column, aniso) == pytest.approx(3 * 4.4)
    assert long_axis_mm(np.zeros((1, 3)), aniso) == pytest.approx(4.4)
    rng = np.random.default_rng(0)
    blob = np.argwhere(np.ones((12, 12, 12), bool)).astype(float) + rng.normal(0, 1e-3, (1728, 3))
    assert long_axis_mm(blob, iso) == pytest.approx(np.sqrt(3) * 11 + np.sqrt(3), rel=0.02)


# ---------------------------------------------------------------- atlas and coordinates
def test_atlas_files_small_and_labelled():
    assert ATLAS_FILE.stat().st_size + TEMPLATE_FILE.stat().st_size < 5 * 1024 * 1024
    labels, lab_aff, t1, _ = load_atlas()
    present = set(np.unique(labels).tolist())
    assert present == set(LABEL_NAMES)
    # MNI landmarks fall in the right compartments
    def at(xyz):
        return int(labels[tuple(np.rint(np.linalg.inv(lab_aff) @ np.array([*xyz, 1.0]))[:3].astype(int))])
    assert at((0, -25, -30)) == 6          # pons
    assert at((-25, -65, -35)) == 7        # left cerebellar hemisphere
    assert at((-6, 0, 18)) == 2            # left lateral ventricle body
    assert at((-25, -10, 35)) == 4         # centrum semiovale


def test_grey_matter_on_the_ventricle_wall_is_not_cortex():
    """Issue 16, item 6: a periventricular lesion at MNI (-17, -8, 24) (caudate body) was named 'cerebral cortex'
    because the atlas labelled the grey matter lining the lateral ventricles as cortex."""
    from scipy import ndimage

    from mslesion.location import atlas

    labels, lab_aff, _, _ = load_atlas()
    inv = np.linalg.inv(lab_aff)

    def at(xyz):
        return int(labels[tuple(np.rint(inv @ np.array([*xyz, 1.0]))[:3].astype(int))])

    for side in (-1, 1):
        for y in (-12, -8, -4, 0):
            assert at((side * 17, y, 24)) == atlas.DEEP_GM, (side, y)   # caudate body
    # no cortex on the wall of the lateral ventricles' bodies (above the temporal horns)
    near = ndimage.distance_transform_edt(labels != atlas.VENTRICLE) <= 3.0
    z = (np.arange(labels.shape[2]) * lab_aff[2, 2] + lab_aff[2, 3])[None, None, :]
    assert not np.any(near & (labels == atlas.CORTEX) & (z > 0))
    assert at((-40, -20, 50)) == atlas.CORTEX or at((-45, -20, 50)) == atlas.CORTEX  # the cortex is still there


def test_structure_is_the_label_of_most_voxels_not_the_centroid():
    from mslesion.location import atlas
    from mslesion.location.regions import structure_name

    # a crescent: most voxels in white matter, the centroid's voxel in deep grey matter
    vals = np.array([atlas.WM] * 6 + [atlas.DEEP_GM] * 3 + [atlas.CSF] * 5)
    assert structure_name(vals, -17.0) == "left cerebral white matter"
    assert structure_name(np.array([atlas.CSF, atlas.CSF]), 5.0) == "CSF"


def test_sitk_conversion_keeps_world_coordinates():
    aff = np.array([[-0.8, 0.05, 0.1, 90.0], [0.02, 0.9, -0.3, -120.0], [0.01, 0.1, 4.0, -60.0], [0, 0, 0, 1.0]])
    data = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    img = to_sitk(data, aff)
    for ijk in [(0, 0, 0), (4, 5, 6), (2, 1, 3)]:
        lps = np.array(img.TransformIndexToPhysicalPoint(ijk))
        ras = aff @ np.array([*ijk, 1.0])
        assert np.allclose(lps * [-1, -1, 1], ras[:3], atol=1e-4)
        assert img[ijk] == data[ijk]
    assert np.array_equal(from_sitk(img), data)


# ---------------------------------------------------------------- end to end on a phantom
def test_locate_without_lesions_is_instant():
    ph = make_phantom()
    from mslesion.preprocess import preprocess

    pre = preprocess({"flair": ph.flair})
    labels = np.zeros(ph.flair.shape, np.int32)
    res = locate(labels, [], pre, LocationOptions())
    assert all(v["count"] == 0 for v in res.regions.values())
    assert res.mcdonald_dis["met"] is False
    assert "registration_s" not in res.timings


def test_report_command_on_phantom(tmp_path):
    ph = make_phantom()
    flair = save(ph.flair, tmp_path / "flair.nii.gz")
    mask = save(ph.lesions, tmp_path / "mask.nii.gz", dtype=np.uint8)
    out = tmp_path / "out"
    assert main(["report", "--flair", str(flair), "--lesions", str(mask), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = list(csv.DictReader((out / "lesions.csv").open()))
    _, truth = find_lesions(Volume(ph.lesions.data, ph.lesions.affine))
    assert report["lesion_count"] == len(truth) == len(rows)
    assert sum(v["count"] for v in report["regions"].values()) == len(rows)
    assert {"region", "mni_x", "mni_y", "mni_z", "structure", "long_axis_mm"} <= set(rows[0])
    assert all(r["region"] in REGIONS + ("unclassified",) for r in rows)
    assert report["model"]["kind"] == "user-mask"
    assert isinstance(report["mcdonald_dis"]["areas_involved"], list)
    assert "not a diagnosis" in report["mcdonald_dis"]["note"]
    assert report["lesion_mask_input"]["resampled"] is None  # the mask is on the FLAIR's grid
    assert not (out / "lesion_probability.nii.gz").exists()  # a given mask has no probability map


@pytest.mark.slow
def test_report_states_a_mask_resampled_from_another_grid(tmp_path, capsys):
    """Issue 16, item 4: a mask drawn on a finer grid is resampled onto the FLAIR's, and report.json says so."""
    ph = make_phantom()
    flair = save(ph.flair, tmp_path / "flair.nii.gz")
    # the same world box at half the slice thickness (1.5 mm instead of 3 mm): 96 slices
    fine_aff = ph.flair.affine.copy()
    fine_aff[:3, 2] /= 2.0
    fine_aff[:3, 3] -= ph.flair.affine[:3, 2] / 4.0
    fine = np.repeat(ph.lesions.data > 0, 2, axis=2)
    fine[45, 20, 30] = True  # a speck one fine slice thick
    mask = save(fine, tmp_path / "fine_mask.nii.gz", fine_aff, dtype=np.uint8)
    out = tmp_path / "out"
    assert main(["report", "--flair", str(flair), "--lesions", str(mask), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["lesion_mask_resampled"] is True
    assert "not on the FLAIR's grid" in captured.err
    report = json.loads((out / "report.json").read_text())
    resampled = report["lesion_mask_input"]["resampled"]
    assert resampled["from_grid"].startswith("64x64x96") and resampled["to_grid"].startswith("64x64x48")
    assert resampled["lesion_count_on_mask_grid"] == len(ph.lesion_centres_vox) + 1
    assert resampled["lesion_count_on_flair_grid"] == report["lesion_count"]
    assert "nearest neighbour" in resampled["method"]
    assert "not on the FLAIR" in (out / "report.html").read_text()
    assert not (out / "lesion_probability.nii.gz").exists()


def test_report_command_refuses_mask_from_elsewhere(tmp_path, capsys):
    ph = make_phantom()
    flair = save(ph.flair, tmp_path / "flair.nii.gz")
    far = ph.lesions.affine.copy()
    far[:3, 3] += 500.0
    mask = save(ph.lesions.data, tmp_path / "mask.nii.gz", affine=far, dtype=np.uint8)
    assert main(["report", "--flair", str(flair), "--lesions", str(mask), "--out", str(tmp_path / "o")]) == 2
    assert "mask.nii.gz" in capsys.readouterr().err
    assert nib.load(str(flair)).shape == ph.flair.shape
