"""Lesion location: DIS rule, region rule, long axis, coordinate handling, and the report command."""
from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from .factories import make_phantom, save
from mslesion.cli import main
from mslesion.location import MCDONALD_AREAS, REGIONS, LocationOptions, dis_verdict, locate
from mslesion.location.atlas import ATLAS_FILE, LABEL_NAMES, TEMPLATE_FILE, from_sitk, load_atlas, to_sitk
from mslesion.location.regions import classify, long_axis_mm, summarise, verdict_for
from mslesion.lesions import Lesion, find_lesions
from mslesion.volume import Volume


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
        l.extra["long_axis_mm"] = axis
        return l

    opts = LocationOptions()
    small = [les(1, "periventricular", 5.0), les(2, "juxtacortical", 2.9)]
    assert verdict_for(small, opts)["met"] is False
    big = [les(1, "periventricular", 5.0), les(2, "juxtacortical", 3.0)]
    assert verdict_for(big, opts)["met"] is True


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


def test_report_command_refuses_mask_from_elsewhere(tmp_path, capsys):
    ph = make_phantom()
    flair = save(ph.flair, tmp_path / "flair.nii.gz")
    far = ph.lesions.affine.copy()
    far[:3, 3] += 500.0
    mask = save(ph.lesions.data, tmp_path / "mask.nii.gz", affine=far, dtype=np.uint8)
    assert main(["report", "--flair", str(flair), "--lesions", str(mask), "--out", str(tmp_path / "o")]) == 2
    assert "mask.nii.gz" in capsys.readouterr().err
    assert nib.load(str(flair)).shape == ph.flair.shape
