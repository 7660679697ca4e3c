"""mslesion batch under stress: kill -9 and resume, worker processes, shared inference, Dask."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mslesion.batch import BatchOptions, discover, run_batch
from mslesion.batch.layout import completion_problem, report_path
from mslesion.batch.worker import settings_of
from mslesion.pipeline import AnalyzeOptions

from .factories import make_phantom, save
from .test_batch import BASELINE, quick_location, read_csv  # noqa: F401  (autouse: in-process runs skip the atlas fit)

#: the whole pipeline, as `mslesion batch --model baseline` runs it.  NOTE: the autouse ``quick_location``
#: fixture of test_batch.py replaces the atlas-based lesion location in every in-process run of this
#: module; a test that means the whole pipeline puts the real one back with ``real_location``.
FULL = AnalyzeOptions(model="baseline")


@pytest.fixture()
def real_location(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo ``quick_location``: in-process analyses run the real atlas-based lesion location."""
    from mslesion import location, pipeline
    from mslesion.location.regions import subject_anatomy

    monkeypatch.setattr(pipeline, "locate", location.locate)
    monkeypatch.setattr(pipeline, "subject_anatomy", subject_anatomy)


def make_bids(root: Path, n: int, shape=(40, 40, 30)) -> Path:
    c = np.asarray(shape) // 2
    for i in range(n):
        anat = root / f"sub-{i:02d}" / "anat"
        anat.mkdir(parents=True)
        ph = make_phantom(shape=shape, zooms=(1.0, 1.0, 1.0), seed=i,
                          lesions=((c[0], c[1] + 6, c[2], 3.0), (c[0] - 8, c[1] - 4, c[2], 1.5 + 0.5 * (i % 3))))
        save(ph.flair, anat / f"sub-{i:02d}_FLAIR.nii.gz")
    return root


def masks(deriv: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(deriv.rglob("*_desc-lesions_mask.nii.gz"))}


@pytest.mark.slow
def test_kill9_mid_batch_then_resume(tmp_path: Path) -> None:
    n = 4
    bids = make_bids(tmp_path / "bids", n)
    deriv = tmp_path / "deriv"
    code = ("import sys; from mslesion.batch import run_batch, BatchOptions; from tests.test_batch import BASELINE; "
            "sys.exit(run_batch(sys.argv[1], sys.argv[2], BASELINE, BatchOptions(quiet=True)).exit_code)")
    cmd = [sys.executable, "-c", code, str(bids), str(deriv)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 120
    while not list(deriv.rglob("*_report.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.15)  # land somewhere inside the next subject
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the batch ended before it could be killed"
    jobs = discover(bids)
    settings = settings_of(BASELINE)
    finished = {j.key for j in jobs if completion_problem(deriv, j, settings) is None}
    assert 1 <= len(finished) < n
    # nothing half-written: every visible file parses completely
    for p in deriv.rglob("*"):
        if p.is_file() and not p.name.startswith("."):
            if p.name.endswith(".nii.gz"):
                nib.load(p).get_fdata()
            elif p.suffix == ".json":
                json.loads(p.read_text())
    stamps = {k: report_path(deriv, j).stat().st_mtime_ns for j in jobs if (k := j.key) in finished}
    res = run_batch(bids, deriv, BASELINE, BatchOptions(quiet=True))
    assert res.exit_code == 0 and res.skipped == len(finished) and res.done == n - len(finished)
    assert {j.key: report_path(deriv, j).stat().st_mtime_ns for j in jobs if j.key in finished} == stamps
    assert all(completion_problem(deriv, j, settings) is None for j in jobs)
    assert len(res.rows) == n
    assert not [p for p in deriv.rglob("*") if ".mslesion" in p.name]


@pytest.mark.slow
def test_two_workers_and_shared_inference_match_sequential(tmp_path: Path) -> None:
    bids = make_bids(tmp_path / "bids", 2)
    seq = run_batch(bids, tmp_path / "seq", BASELINE, BatchOptions(quiet=True))
    par = run_batch(bids, tmp_path / "par", BASELINE, BatchOptions(workers=2, quiet=True, shared_inference=False))
    shared = run_batch(bids, tmp_path / "shr", BASELINE, BatchOptions(workers=2, quiet=True, shared_inference=True))
    assert seq.done == par.done == shared.done == 2 and not (seq.failures or par.failures or shared.failures)
    assert shared.extra["inference"]["served"] == 2          # every predict went through the one model
    pids = {json.loads(p.read_text())["batch"]["pid"] for p in (tmp_path / "par").rglob("*_desc-lesions_report.json")}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2   # ran in the worker processes
    ref = masks(tmp_path / "seq")
    for other in ("par", "shr"):
        got = masks(tmp_path / other)
        assert got.keys() == ref.keys() and all(np.array_equal(got[k], ref[k]) for k in ref)
    rows = lambda r: sorted((x["subject"], x["lesion_count"], x["total_volume_ml"]) for x in r.rows)  # noqa: E731
    assert rows(seq) == rows(par) == rows(shared)


@pytest.mark.slow
def test_dask_local_cluster(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")  # optional: the `dask` extra of pyproject
    bids = make_bids(tmp_path / "bids", 2)
    bad = bids / "sub-99" / "anat"
    bad.mkdir(parents=True)
    (bad / "sub-99_FLAIR.nii.gz").write_bytes(b"not an image")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = run_batch(bids, tmp_path / "deriv", BASELINE,
                        BatchOptions(scheduler=cluster.scheduler_address, quiet=True))
    assert res.done == 2 and [f["key"] for f in res.failures] == ["sub-99"] and res.exit_code == 1
    assert len(res.rows) == 2
    pids = {json.loads(p.read_text())["batch"]["pid"] for p in (tmp_path / "deriv").rglob("*_desc-lesions_report.json")}
    assert os.getpid() not in pids                            # the Dask worker did the work
    ref = run_batch(bids, tmp_path / "seq", BASELINE, BatchOptions(quiet=True))
    assert sorted(r["lesion_count"] for r in ref.rows) == sorted(r["lesion_count"] for r in res.rows)


@pytest.mark.slow
def test_longitudinal_consecutive_sessions(tmp_path: Path) -> None:
    bids = tmp_path / "bids"
    for ses, lesions in (("1", ((20, 26, 15, 3.0),)), ("2", ((20, 26, 15, 3.0), (12, 16, 15, 2.5)))):
        anat = bids / "sub-01" / f"ses-{ses}" / "anat"
        anat.mkdir(parents=True)
        ph = make_phantom(shape=(40, 40, 30), zooms=(1.0, 1.0, 1.0), lesions=lesions, seed=int(ses))
        save(ph.flair, anat / f"sub-01_ses-{ses}_FLAIR.nii.gz")
    deriv = tmp_path / "deriv"
    res = run_batch(bids, deriv, BASELINE, BatchOptions(quiet=True, longitudinal=True))
    assert res.failures == [] and len(res.extra["longitudinal"]) == 1
    row = res.extra["longitudinal"][0]
    assert (row["baseline_session"], row["followup_session"]) == ("1", "2")
    assert row["new_count"] >= 1 and row["new_t2_lesion"] is True       # the lesion added in session 2
    report = Path(row["report"])
    assert report.is_file() and report.parent.parent.name == "longitudinal"
    stamp = report.stat().st_mtime_ns
    again = run_batch(bids, deriv, BASELINE, BatchOptions(quiet=True, longitudinal=True))
    assert again.skipped == 2 and report.stat().st_mtime_ns == stamp   # comparison not redone
    assert (deriv / "longitudinal.csv").read_text().count("\n") == 2


@pytest.mark.slow
@pytest.mark.realdata
def test_real_brain_and_spine_subject(tmp_path: Path, shared_data: Path, real_location: None) -> None:
    anat = tmp_path / "bids" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    real = nib.load(shared_data / "brain_ms/isbi2015/training01/flair.nii.gz")
    nib.save(real.slicer[48:208, 40:216, 8:30], anat / "sub-01_FLAIR.nii.gz")  # real scan, cropped for speed
    (anat / "sub-01_acq-cspine_T2w.nii.gz").symlink_to(shared_data / "spine/sct_testing/t2/t2_fake_lesion.nii.gz")
    res = run_batch(tmp_path / "bids", tmp_path / "deriv", FULL, BatchOptions(quiet=True))
    assert res.failures == [] and res.done == 1
    report = json.loads(next((tmp_path / "deriv").rglob("*_desc-lesions_report.json")).read_text())
    assert report["inputs"]["flair"]["shape"] == [160, 176, 22] and report["lesion_count"] > 0
    # the real lesion location ran: every lesion has a McDonald region and an MNI centroid
    from mslesion.location import REGIONS

    assert "unclassified" not in report["regions"]
    assert sum(report["regions"][r]["count"] for r in REGIONS if r != "spinal_cord") == report["lesion_count"]
    rows = read_csv(next((tmp_path / "deriv").rglob("*_desc-lesions_lesions.csv")))
    assert rows and all(r["region"] in REGIONS and r["mni_x"] != "" for r in rows)
    spine = report["spine"][0]
    assert spine["image"].endswith("acq-cspine_T2w.nii.gz") and spine["lesion_count"] >= 1   # the synthetic cord lesion
    combined = report["mcdonald_dis"]  # one verdict over brain and cord
    assert combined["qualifying_lesions_per_area"]["spinal_cord"] >= 1
    assert "spinal_cord" not in combined["areas_not_assessed"]
    assert res.rows[0]["spinal_cord_count"] >= 1


@pytest.mark.slow
@pytest.mark.gpu
def test_shared_gpu_inference_with_trained_model(tmp_path: Path) -> None:
    """On a CUDA machine: CPU workers preprocess, the parent's one model predicts (auto-selected for GPU)."""
    from mslesion.model import resolve_model_folder

    folder = resolve_model_folder("auto", {"flair"})
    assert (folder / "model.json").is_file(), f"the shipped trained model is missing: {folder}"
    bids = make_bids(tmp_path / "bids", 3)
    opts = AnalyzeOptions(model="auto", device="cuda", preprocess=BASELINE.preprocess)
    res = run_batch(bids, tmp_path / "deriv", opts, BatchOptions(workers=2, quiet=True))
    assert res.done == 3 and not res.failures
    assert res.extra["inference"]["served"] == 3
    assert {r["model_kind"] for r in res.rows} == {"trained"}
