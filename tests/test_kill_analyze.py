"""Kill `mslesion analyze` at random points: outputs are complete and valid, or absent.

Two different subjects (different grid shapes and lesion counts) are analysed
alternately into the SAME ``--out`` folder, and each run is killed (SIGKILL,
sometimes SIGINT or SIGTERM) after a random delay.  After every trial:

* if ``report.json`` (the completion marker) exists, every output exists,
  loads completely, and all of them come from the run the report describes
  (grid shape of that subject, lesion count = CSV rows = mask components,
  mask voxels above the threshold in the probability map) - never a mix of
  two runs;
* if it does not exist, the folder is incomplete and none of the outputs
  pretends otherwise (counted; a rerun must then complete it).
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mslesion.atomic import TMP_MARK
from mslesion.lesions import find_lesions
from mslesion.pipeline import OUTPUT_FILES
from mslesion.volume import Volume

from .factories import make_phantom, save

TRIALS = 20
CMD = [sys.executable, "-c", "from mslesion.cli import entry_point; entry_point()", "analyze"]


def _subjects(tmp: Path) -> dict[Path, tuple[int, int, int]]:
    # brain-sized heads (the factory's default voxel size) on two different grids
    a = make_phantom(shape=(64, 64, 48), lesions=((32, 40, 24, 2.5),), seed=1).flair
    b = make_phantom(shape=(60, 66, 46), lesions=((30, 42, 23, 3.0), (20, 30, 23, 2.0), (38, 24, 16, 2.0)),
                     seed=2).flair
    return {save(a, tmp / "subA_flair.nii.gz"): a.shape, save(b, tmp / "subB_flair.nii.gz"): b.shape}


def _start(flair: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([*CMD, "--flair", str(flair), "--out", str(out), "--model", "baseline"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _temps(out: Path) -> list[Path]:
    return [p for p in out.rglob(f"*{TMP_MARK}*")] if out.is_dir() else []


def check_outputs(out: Path, shapes: dict[Path, tuple[int, int, int]]) -> str:
    """Return 'complete', 'absent' or 'incomplete'; fail on anything inconsistent."""
    present = [n for n in OUTPUT_FILES if (out / n).exists()]
    if not (out / "report.json").exists():
        return "absent" if not present else "incomplete"
    assert sorted(present) == sorted(OUTPUT_FILES), f"report.json present but only {present}"
    report = json.loads((out / "report.json").read_text())
    flair = Path(report["inputs"]["flair"]["path"])
    shape = shapes[flair]
    imgs = {}
    for name in ("lesions.nii.gz", "lesion_probability.nii.gz"):
        with gzip.open(out / name) as fh:  # the whole gzip stream must be intact
            fh.read()
        img = nib.load(str(out / name))
        assert img.shape == shape, f"{name} has shape {img.shape}, but report.json describes {flair.name} {shape}"
        imgs[name] = np.asarray(img.dataobj)
    with open(out / "lesions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    mask = imgs["lesions.nii.gz"] > 0
    _, lesions = find_lesions(Volume(mask.astype(np.uint8), np.eye(4)))
    assert report["lesion_count"] == len(rows) == len(lesions), (report["lesion_count"], len(rows), len(lesions))
    thr = float(report["model"]["threshold"])
    assert np.all(imgs["lesion_probability.nii.gz"][mask] >= thr - 1e-6), "mask and probability from different runs"
    return "complete"


@pytest.mark.slow
def test_kill_at_random_points_never_leaves_mixed_outputs(tmp_path):
    shapes = _subjects(tmp_path)
    flairs = list(shapes)
    out = tmp_path / "out"
    # time one full run of each subject, to spread the kills over a whole run
    durations = []
    for f in flairs:
        t0 = time.perf_counter()
        proc = _start(f, out)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        durations.append(time.perf_counter() - t0)
        assert check_outputs(out, shapes) == "complete"
    full = max(durations)
    rng = random.Random(20261126)
    states: dict[str, int] = {}
    killed = 0
    in_write_phase = 0
    for trial in range(TRIALS):
        flair = flairs[trial % 2]
        sig = {5: signal.SIGINT, 2: signal.SIGTERM}.get(trial % 6, signal.SIGKILL)
        had_report = (out / "report.json").exists()
        stale = set(_temps(out))  # left by an earlier SIGKILL; the next run that writes removes them
        proc = _start(flair, out)
        if trial % 2 == 0:  # anywhere in the run
            time.sleep(rng.uniform(0, full * 1.02))
        else:  # while writing: once the old report.json is gone or the first temp file appears
            delay = rng.uniform(0, 1.5)
            while proc.poll() is None and not _temps(out) and (not had_report or (out / "report.json").exists()):
                time.sleep(0.005)
            if proc.poll() is None:
                in_write_phase += 1
            time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(sig)
            killed += 1
        _, err = proc.communicate(timeout=120)
        # killed (-9), interrupted (130), terminated (143), or by the signal itself if it came during start-up
        assert proc.returncode in (0, 130, 143, -signal.SIGKILL, -signal.SIGINT, -signal.SIGTERM), (
            proc.returncode, err.decode())
        if proc.returncode in (0, 130, 143):  # a clean exit: no traceback, no temp files of its own left behind
            assert b"Traceback" not in err, err.decode()
            assert set(_temps(out)) <= stale, "temp files left after a clean exit"
        state = check_outputs(out, shapes)
        states[state] = states.get(state, 0) + 1
    print(f"kill trials: {TRIALS}, processes killed: {killed} ({in_write_phase} of them once writing had begun), "
          f"states after the kill: {states}")
    assert killed >= TRIALS // 2, "too few runs were actually interrupted to mean anything"
    # a rerun after all that completes cleanly and leaves no temp files
    for f in flairs:
        proc = _start(f, out)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        assert check_outputs(out, shapes) == "complete"
        assert json.loads((out / "report.json").read_text())["inputs"]["flair"]["path"] == str(f)
    assert not [p for p in out.rglob(f"*{TMP_MARK}*")], "stale temp files left behind"


def test_failed_write_phase_leaves_no_partial_outputs(tmp_path, monkeypatch):
    """An error while writing (disk full, ...) removes the temp files and publishes nothing."""
    from mslesion import pipeline

    shapes = _subjects(tmp_path)
    flair = next(iter(shapes))
    out = tmp_path / "out"
    pipeline.analyze(flair, out_dir=out, options=pipeline.AnalyzeOptions(model="baseline"))
    assert check_outputs(out, shapes) == "complete"

    def boom(path, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline, "write_lesions_csv", boom)
    with pytest.raises(OSError):
        pipeline.analyze(flair, out_dir=out, options=pipeline.AnalyzeOptions(model="baseline"))
    assert check_outputs(out, shapes) == "absent"
    assert not [p for p in out.rglob(f"*{TMP_MARK}*")]
