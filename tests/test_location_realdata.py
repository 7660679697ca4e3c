"""Region labelling of synthetic lesions placed at known sites in the shared real scans, and expert masks."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mslesion.cli import main
from mslesion.io import load_volume
from mslesion.location import LocationOptions, locate
from mslesion.location.synthetic import EXPECTED_REGION, SHARED_DATA_SITES, lesion_list, place_lesions
from mslesion.preprocess import preprocess

pytestmark = pytest.mark.realdata


def label_sites(shared_data, case: str, seed: int = 0) -> list[tuple[str, str, str]]:
    """(site kind, expected region, given region) for every lesion placed on ``case``."""
    flair = load_volume(shared_data / "brain_ms" / case / "flair.nii.gz", role="FLAIR")
    burnt, labels, kinds = place_lesions(flair, SHARED_DATA_SITES[case], seed=seed)
    lesions = lesion_list(labels)
    assert len(lesions) == len(kinds)
    locate(labels.data, lesions, preprocess({"flair": burnt}), LocationOptions())
    return [(k, EXPECTED_REGION[k], les.region) for k, les in zip(kinds, lesions)]


def test_sites_on_one_mni_space_scan(shared_data):
    rows = label_sites(shared_data, "ljubljana/patient26")
    assert len(rows) >= 15
    assert {k for k, _, _ in rows} == set(EXPECTED_REGION)  # every kind of site was placed
    accuracy = np.mean([e == g for _, e, g in rows])
    assert accuracy >= 0.95, [r for r in rows if r[1] != r[2]]


def test_lesions_on_the_ventricle_wall_are_not_named_cortex(shared_data):
    """Issue 16, item 6: the structure column agrees with the region for periventricular lesions (the atlas
    labelled the grey matter on the ventricle wall, e.g. the caudate body, as cerebral cortex)."""
    flair = load_volume(shared_data / "brain_ms" / "ljubljana/patient26" / "flair.nii.gz", role="FLAIR")
    burnt, labels, kinds = place_lesions(flair, SHARED_DATA_SITES["ljubljana/patient26"], seed=0)
    lesions = lesion_list(labels)
    locate(labels.data, lesions, preprocess({"flair": burnt}), LocationOptions())
    wall = [(les.region, les.extra["structure"]) for k, les in zip(kinds, lesions) if k == "ventricle"]
    assert len(wall) >= 4
    assert not [w for w in wall if "cortex" in w[1]], wall


@pytest.mark.slow
def test_sites_on_all_shared_scans(shared_data):
    rows = []
    for case in SHARED_DATA_SITES:
        rows += label_sites(shared_data, case)
    assert len(rows) >= 40
    assert sum(1 for k, _, _ in rows if k in ("ventricle", "juxtacortical")) >= 20
    accuracy = np.mean([e == g for _, e, g in rows])
    assert accuracy >= 0.95, [r for r in rows if r[1] != r[2]]


@pytest.mark.slow
def test_report_expert_mask(shared_data, tmp_path):
    case = shared_data / "brain_ms" / "ljubljana" / "patient07"
    out = tmp_path / "p07"
    assert main(["report", "--flair", str(case / "flair.nii.gz"), "--t1", str(case / "t1.nii.gz"),
                 "--lesions", str(case / "lesions.nii.gz"), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = list(csv.DictReader((out / "lesions.csv").open()))
    assert report["lesion_count"] == len(rows) >= 25
    assert sum(v["count"] for v in report["regions"].values()) == len(rows)
    # checked by eye on qc/axial.png: brainstem lesions and lesions on the lateral ventricles
    assert report["regions"]["infratentorial"]["count"] >= 2
    assert report["regions"]["periventricular"]["count"] >= 1
    assert report["mcdonald_dis"]["met"] is True
    brainstem = [r for r in rows if r["region"] == "infratentorial"]
    assert all(abs(float(r["mni_x"])) < 25 and float(r["mni_z"]) < 0 for r in brainstem)
    assert (out / "qc" / "axial.png").is_file()


@pytest.mark.slow
def test_sites_placed_without_a_template_fit(shared_data):
    """MNI anchors used as they are on an MNI-space scan (world = MNI; no fit proposes the sites).

    MSLesSeg P14_T1: measured 20/20 correct for seeds 0 and 1 (issue 20; the method's atlas fit is within
    1.5-2.1 mm of the identity there).  The Ljubljana scans are not used: there the fit is 9-10 mm from
    the identity and 5 of 88 deep white matter sites are called juxtacortical (notes/issue-20.md).
    """
    from mslesion.location.mni_sites import mni_anchor_sites

    flair = load_volume(shared_data / "brain_ms" / "mslesseg" / "P14_T1" / "flair.nii.gz", role="FLAIR")
    burnt, labels, kinds = place_lesions(flair, mni_anchor_sites(), seed=0)
    lesions = lesion_list(labels)
    locate(labels.data, lesions, preprocess({"flair": burnt}), LocationOptions())
    rows = [(k, EXPECTED_REGION[k], les.region) for k, les in zip(kinds, lesions)]
    assert len(rows) >= 15 and {k for k, _, _ in rows} == set(EXPECTED_REGION)
    accuracy = np.mean([e == g for _, e, g in rows])
    assert accuracy >= 0.95, [r for r in rows if r[1] != r[2]]
