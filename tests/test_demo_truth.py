"""The shipped demo subject checked against its truth: painted lesions and their expected McDonald regions.

``data_samples/demo`` holds a synthetic FLAIR/T1 made from the MNI152 template with six painted
lesions (``lesions_truth.nii.gz``) at known MNI sites whose expected region is listed in
``lesion_sites.json`` (see ``scripts/make_demo_subject.py``).  These tests run the real pipeline
(deepbet brain extraction, N4, atlas registration) and compare the answer with that truth.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from mslesion import AnalyzeOptions, analyze
from mslesion.io import load_volume
from mslesion.location.from_mask import report_mask
from mslesion.metrics import evaluate

from .conftest import ROOT

pytestmark = pytest.mark.slow  # one analysis is ~15 s on a free CPU core (deepbet, N4, atlas fit)

DEMO = ROOT / "data_samples" / "demo"
#: a detected lesion belongs to the site whose MNI centre is nearest, if within this distance (mm).
#: Measured: the baseline's lesion centroids lie 0.1-0.6 mm from the painted MNI centres; a whole
#: lesion radius (3-4 mm) plus registration error (~2 mm) is the most a correct site can be off.
SITE_MATCH_MM = 6.0


def demo_sites() -> list[dict]:
    return json.loads((DEMO / "lesion_sites.json").read_text())


def located(lesions) -> list[tuple[str, tuple[float, float, float]]]:
    """(region, MNI centroid) of located lesions: ``Lesion`` objects or rows of ``lesions.csv``."""
    out = []
    for les in lesions:
        row = les if isinstance(les, dict) else {"region": les.region, **les.extra}
        out.append((str(row["region"]), tuple(float(row[k]) for k in ("mni_x", "mni_y", "mni_z"))))
    return out


def regions_by_site(lesions, sites: list[dict]) -> dict[str, list[str]]:
    """Site name -> regions of the lesions found there (a site may be split, or missed: []).

    A lesion belongs to the site whose MNI centre is nearest, if within SITE_MATCH_MM.
    """
    out: dict[str, list[str]] = {s["name"]: [] for s in sites}
    centres = np.array([s["mni_xyz"] for s in sites], float)
    for region, xyz in located(lesions):
        dist = np.linalg.norm(centres - np.asarray(xyz), axis=1)
        i = int(np.argmin(dist))
        if dist[i] <= SITE_MATCH_MM:
            out[sites[i]["name"]].append(region)
    return out


@pytest.fixture(scope="module")
def baseline_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_baseline")
    return analyze(DEMO / "flair.nii.gz", t1=DEMO / "t1.nii.gz", out_dir=out, options=AnalyzeOptions(model="baseline"))


def test_demo_truth_files_agree():
    """The two truth files describe the same six lesions (guards the tests below against a stale file)."""
    sites = demo_sites()
    truth = load_volume(DEMO / "lesions_truth.nii.gz")
    from mslesion.lesions import find_lesions

    _, lesions = find_lesions(truth)
    assert len(lesions) == len(sites) == 6
    assert {s["expected_region"] for s in sites} == {"periventricular", "deep_white_matter", "juxtacortical",
                                                     "infratentorial"}


def test_baseline_on_demo_matches_truth(baseline_result):
    """FLAIR-threshold baseline, full preprocessing: measured Dice 0.78-0.80 (with/without N4, deepbet or
    template brain extraction), all 6 lesions found and no false positive.  Floor 0.70: a margin of 0.08."""
    scores = evaluate(baseline_result.lesion_mask, load_volume(DEMO / "lesions_truth.nii.gz"))
    assert scores.lesion_sensitivity == 1.0, scores
    assert scores.lesion_precision == 1.0, scores
    assert scores.dice >= 0.70, scores
    assert baseline_result.report["lesion_count"] == 6


def test_baseline_on_demo_puts_each_lesion_in_its_region(baseline_result):
    sites = demo_sites()
    found = regions_by_site(baseline_result.lesions, sites)
    expected = {s["name"]: [s["expected_region"]] for s in sites}
    assert found == expected
    dis = baseline_result.report["mcdonald_dis"]
    assert dis["met"] is True
    assert dis["areas_involved"] == ["periventricular", "juxtacortical", "infratentorial"]
    regions = baseline_result.report["regions"]
    for region in ("periventricular", "infratentorial"):
        assert regions[region]["count"] == 2
    assert regions["juxtacortical"]["count"] == regions["deep_white_matter"]["count"] == 1


def test_report_command_on_demo_truth_gives_expected_regions(tmp_path):
    """The location step alone, on the true lesion mask: every site in its expected region."""
    res = report_mask(DEMO / "flair.nii.gz", DEMO / "lesions_truth.nii.gz", tmp_path / "out", t1=DEMO / "t1.nii.gz")
    sites = demo_sites()
    assert regions_by_site(res.lesions, sites) == {s["name"]: [s["expected_region"]] for s in sites}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["mcdonald_dis"]["met"] is True
    assert report["lesion_count"] == 6
