"""Brain volumes (issue 18): tissue classes and volumes against phantoms with known truth."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mslesion.preprocess import Preprocessed
from mslesion.volume import Volume
from mslesion.volumes import assess_volumes, tissue
from mslesion.volumes.outputs import CSV_COLUMNS, NUMBERS, cohort_columns, volume_change, volumes_csv_text

from .conftest import ROOT

# phantom intensities (mean, per contrast): FLAIR csf < wm < gm < lesion; T1 csf < gm ~ lesion < wm
FLAIR = {"csf": 0.2, "gm": 1.3, "wm": 1.0, "lesion": 2.4}
T1 = {"csf": 0.3, "gm": 0.65, "wm": 1.0, "lesion": 0.6}
LESIONS = ((20, 32, 32, 3), (44, 32, 32, 4), (32, 20, 30, 3))  # (i, j, k, radius) inside the WM


def phantom(seed: int = 0, gm_outer: float = 24.0, noise: float = 0.07) -> dict:
    """Concentric 1 mm phantom: WM ball r<18, GM shell 18-``gm_outer``, CSF to r 28 (the ICV), lesions in WM."""
    shape = (64, 64, 64)
    g = np.indices(shape).astype(float)
    r = np.sqrt(sum((g[i] - 31.5) ** 2 for i in range(3)))
    icv = r < 28
    wm = r < 18
    gm = (r >= 18) & (r < gm_outer)
    csf = icv & ~wm & ~gm
    les = np.zeros(shape, bool)
    for i, j, k, rad in LESIONS:
        les |= (g[0] - i) ** 2 + (g[1] - j) ** 2 + (g[2] - k) ** 2 <= rad ** 2
    les &= wm
    rng = np.random.default_rng(seed)
    out = {}
    for name, means in (("flair", FLAIR), ("t1", T1)):
        img = np.zeros(shape, np.float32)
        for cls, m in (("csf", csf), ("gm", gm), ("wm", wm & ~les), ("lesion", les)):
            img[m] = means[cls]
        out[name] = img + rng.normal(0, noise, shape).astype(np.float32) * icv
    truth = {"icv": icv, "csf": csf, "gm": gm, "wm": wm & ~les, "lesion": les}
    return {"images": out, "truth": truth}


def as_pre(ph: dict, contrasts=("flair", "t1")) -> Preprocessed:
    aff = np.eye(4)
    images = {c: Volume(ph["images"][c], aff) for c in contrasts}
    brain = Volume(ph["truth"]["icv"].astype(np.uint8), aff, meta={"brain_method": "deepbet"})
    return Preprocessed(native=images["flair"], images=images, brain_mask=brain)


def truth_ml(ph: dict, name: str) -> float:
    return float(ph["truth"][name].sum()) / 1000.0


@pytest.mark.parametrize("contrasts", [("flair", "t1"), ("flair",)])
def test_phantom_volumes_match_the_truth(contrasts):
    ph = phantom()
    pre = as_pre(ph, contrasts)
    les = Volume(ph["truth"]["lesion"].astype(np.uint8), np.eye(4))
    v = assess_volumes(pre, les, use_priors=False)
    assert v.icv_ml == pytest.approx(truth_ml(ph, "icv"), rel=1e-6)
    for name in ("gm", "wm", "csf"):
        assert getattr(v, f"{name}_ml") == pytest.approx(truth_ml(ph, name), rel=0.05), name
    brain = truth_ml(ph, "gm") + truth_ml(ph, "wm") + truth_ml(ph, "lesion")
    assert v.brain_ml == pytest.approx(brain, rel=0.03)
    assert v.bpf == pytest.approx(brain / truth_ml(ph, "icv"), abs=0.02)
    assert v.lesion_ml == pytest.approx(truth_ml(ph, "lesion"), rel=1e-6)
    assert v.lesion_pct_icv == pytest.approx(100 * truth_ml(ph, "lesion") / truth_ml(ph, "icv"), rel=1e-6)
    # hard labels: every class mostly right
    lab = v.labels.data
    for k, name in ((1, "csf"), (2, "gm"), (3, "wm"), (4, "lesion")):
        t = ph["truth"][name]
        assert 2 * np.count_nonzero((lab == k) & t) / (np.count_nonzero(lab == k) + t.sum()) > 0.9, name
    if contrasts == ("flair",):
        assert any("FLAIR only" in c for c in v.caveats)


def test_lesions_are_never_counted_as_grey_matter():
    """The lesions look like GM on T1; labelled apart, they add nothing to GM (and all of them are 'lesion')."""
    ph = phantom()
    pre = as_pre(ph)
    les = ph["truth"]["lesion"]
    with_lesions = assess_volumes(pre, Volume(les.astype(np.uint8), np.eye(4)), use_priors=False)
    assert np.all(with_lesions.labels.data[les] == tissue.LESION_LABEL)
    assert with_lesions.gm_ml == pytest.approx(truth_ml(ph, "gm"), rel=0.05)
    # the same scan without the lesion mask: its lesion voxels are then tissue, and the mixture calls
    # them something other than WM, so the check above is a real one
    blind = assess_volumes(pre, Volume(np.zeros_like(les, np.uint8), np.eye(4)), use_priors=False)
    assert np.mean(blind.labels.data[les] == 3) < 0.5
    assert blind.gm_ml + blind.csf_ml > with_lesions.gm_ml + with_lesions.csf_ml + 0.5 * truth_ml(ph, "lesion")
    # brain volume counts the lesions either way
    assert with_lesions.brain_ml == pytest.approx(blind.brain_ml, rel=0.03)


def test_synthetic_atrophy_changes_brain_volume_by_the_known_volume():
    base, thin = phantom(seed=1), phantom(seed=1, gm_outer=23.0)  # 1 mm of cortex turned to CSF
    known = truth_ml(base, "gm") - truth_ml(thin, "gm")
    les = Volume(base["truth"]["lesion"].astype(np.uint8), np.eye(4))
    v0 = assess_volumes(as_pre(base), les, use_priors=False)
    v1 = assess_volumes(as_pre(thin), les, use_priors=False)
    assert v1.icv_ml == v0.icv_ml
    assert v0.brain_ml - v1.brain_ml == pytest.approx(known, rel=0.10)
    change = volume_change(v0, v1)
    assert change["brain_ml_change"] == pytest.approx(-known, rel=0.10)
    assert change["bpf_change"] < 0 and change["icv_ml_change"] == 0


def test_mixture_without_priors_recovers_class_means():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(m, 0.05, 4000) for m in (0.2, 1.3, 1.0)])[:, None]
    mix = tissue.fit_mixture(x, np.array(tissue.CONTRAST_ORDER["flair"]))
    assert np.allclose(mix.means[:, 0], [0.2, 1.3, 1.0], atol=0.03)


def test_priors_decide_where_intensities_cannot():
    """Two classes with the same intensity: the spatial prior sets which is which."""
    shape = (20, 20, 20)
    icv = np.ones(shape, bool)
    img = np.full(shape, 1.0, np.float32) + np.random.default_rng(0).normal(0, 0.05, shape).astype(np.float32)
    img[:, :, :4] = 0.2  # some CSF
    prior = np.zeros(shape + (3,), np.float32)
    prior[..., 0] = 0.05
    prior[:10, ..., 1], prior[:10, ..., 2] = 0.8, 0.15
    prior[10:, ..., 1], prior[10:, ..., 2] = 0.15, 0.8
    prior[:, :, :4] = (0.9, 0.05, 0.05)
    post = tissue.classify([img], icv, np.zeros(shape, bool), [tissue.CONTRAST_ORDER["flair"]], prior=prior)
    lab = np.argmax(post, axis=-1)
    assert np.mean(lab[:10, :, 4:] == 1) > 0.9 and np.mean(lab[10:, :, 4:] == 2) > 0.9
    assert np.mean(lab[:, :, :4] == 0) > 0.9


def test_partial_volume_voxels_are_split_between_their_two_classes():
    """Voxels mixing CSF and GM (T1-like contrast, fraction uniform on 0..1) count as a fraction of each."""
    rng = np.random.default_rng(0)
    frac = rng.uniform(0, 1, 3000)
    x = np.concatenate([rng.normal(0.3, 0.03, 4000), rng.normal(0.65, 0.03, 4000), rng.normal(1.0, 0.03, 4000),
                        0.3 + 0.35 * frac + rng.normal(0, 0.03, 3000)])[:, None]
    truth_gm = 4000 + frac.sum()
    order = np.array(tissue.CONTRAST_ORDER["t1"])
    pv = tissue.fit_mixture(x, order, pairs=((0, 1),))
    gm_pv = tissue.fold_pv(tissue.posteriors(x, pv), x, pv)[:, 1].sum()
    plain = tissue.fit_mixture(x, order)
    gm_plain = tissue.posteriors(x, plain)[:, 1].sum()
    assert gm_pv == pytest.approx(truth_gm, rel=0.03)
    assert abs(gm_pv - truth_gm) < abs(gm_plain - truth_gm)
    assert np.allclose(pv.means[:, 0], [0.3, 0.65, 1.0], atol=0.03)
    assert tissue.pv_fraction(np.array([[0.475]]), pv, (0, 1))[0] == pytest.approx(0.5, abs=0.05)


def test_joint_mixture_gives_both_scans_one_set_of_class_intensities():
    """compare's joint fit: two scans of one phantom (other noise) get the truth's volumes and near-equal BPF."""
    from mslesion.volumes.stage import assess_volumes_jointly

    a, b = phantom(seed=2), phantom(seed=3)
    les = Volume(a["truth"]["lesion"].astype(np.uint8), np.eye(4))
    v0, v1 = assess_volumes_jointly([as_pre(a), as_pre(b)], [les, les], use_priors=False)
    assert v0.gm_ml == pytest.approx(truth_ml(a, "gm"), rel=0.05)
    assert v1.wm_ml == pytest.approx(truth_ml(b, "wm"), rel=0.05)
    assert abs(v0.bpf - v1.bpf) < 0.005


def test_volume_outputs_text():
    section = {"icv_ml": 1500.0, "brain_ml": 1200.0, "gm_ml": 650.0, "wm_ml": 540.0, "csf_ml": 300.0,
               "lesion_ml": 10.0, "bpf": 0.8, "lesion_pct_icv": 0.6667, "method": "m", "inputs": ["flair", "t1"],
               "icv_source": "deepbet"}
    rows = list(csv.DictReader(volumes_csv_text(section).splitlines()))
    assert list(rows[0]) == list(CSV_COLUMNS) and rows[0]["inputs"] == "flair+t1" and float(rows[0]["bpf"]) == 0.8
    assert cohort_columns({"volumes": section})["bpf"] == 0.8
    assert cohort_columns({}) == {k: "" for k in NUMBERS}


@pytest.mark.slow
def test_analyze_demo_writes_volumes(tmp_path):
    """analyze on the demo subject: report.json volumes section, volumes.csv, the tissue map, HTML numbers."""
    from mslesion.cli import main

    demo = ROOT / "data_samples" / "demo"
    out = tmp_path / "demo"
    assert main(["analyze", "--flair", str(demo / "flair.nii.gz"), "--t1", str(demo / "t1.nii.gz"),
                 "--out", str(out), "--model", "baseline"]) == 0
    report = json.loads((out / "report.json").read_text())
    vols = report["volumes"]
    for key in NUMBERS:
        assert isinstance(vols[key], (int, float)), key
    assert vols["inputs"] == ["flair", "t1"]
    assert vols["brain_ml"] == pytest.approx(vols["gm_ml"] + vols["wm_ml"] + vols["lesion_ml"], abs=2.0)
    assert vols["icv_ml"] == pytest.approx(vols["brain_ml"] + vols["csf_ml"], abs=2.0)
    assert 0.5 < vols["bpf"] < 1.0
    assert vols["lesion_ml"] == pytest.approx(report["total_volume_ml"], abs=1e-3)
    assert "volumes_s" in report["timings_s"]
    rows = list(csv.DictReader((out / "volumes.csv").read_text().splitlines()))
    assert float(rows[0]["icv_ml"]) == vols["icv_ml"]
    import nibabel as nib

    dseg = nib.load(str(out / "tissue_dseg.nii.gz"))
    assert dseg.shape == nib.load(str(demo / "flair.nii.gz")).shape
    assert set(np.unique(np.asarray(dseg.dataobj))) <= {0, 1, 2, 3, 4}
    assert (out / "tissue_dseg.tsv").read_text().startswith("index\tname")
    html = (out / "report.html").read_text()
    assert f'data-key="volumes.bpf" data-value="{vols["bpf"]}"' in html
    assert (out / "qc" / "tissue.png").is_file()


@pytest.mark.slow
def test_compare_reports_brain_volume_and_bpf_change(tmp_path):
    """`compare` on the shifted phantom pair: one brain mask for both scans, so the ICV change is 0."""
    from .factories import compare_shifted_phantom_pair

    compare_shifted_phantom_pair(tmp_path)
    report = json.loads((tmp_path / "out" / "compare_report.json").read_text())
    change = report["volume_change"]
    assert abs(change["icv_ml_change"]) <= 0.01 * change["baseline"]["icv_ml"]
    for key in ("brain_ml_change", "brain_pct_change", "bpf_change"):
        assert isinstance(change[key], (int, float)), key
    assert change["baseline"]["bpf"] > 0 and change["followup"]["bpf"] > 0
