"""scripts/train_recipe.sh: the resumable whole-recipe command, with a stub trainer in place of Python."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_recipe.sh"

STUB = """#!/usr/bin/env bash
# log the call; a training call completes its run only when STUB_DONE=1
echo "$*" >> "$STUB_LOG"
out=""; prev=""
for a in "$@"; do [ "$prev" = "--out" ] && out=$a; prev=$a; done
case "$2" in package|combine|predict|score) exit 0;; esac
mkdir -p "$out"
if [ "${STUB_DONE:-0}" = 1 ]; then echo '{"complete": true}' > "$out/train_summary.json"
else echo '{"complete": false}' > "$out/train_summary.json"; fi
"""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(tmp_path: Path, done: bool, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    stub = tmp_path / "stubpy"
    stub.write_text(STUB)
    stub.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {**os.environ, "PYTHON": str(stub), "STUB_LOG": str(log), "STUB_DONE": "1" if done else "0"}
    proc = subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True)
    return proc, log.read_text().splitlines() if log.exists() else []


def test_unfinished_run_stops_and_the_same_command_finishes(tmp_path: Path) -> None:
    out = tmp_path / "fold_a"
    proc, calls = _run(tmp_path, False, str(out), "60", "ljubljana_patient07")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("unfinished")
    assert len(calls) == 1 and "--arch 3d" in calls[0]            # the 2.5-D run waits for the 3-D one
    assert "--session-seconds 60" in calls[0] and "--holdout ljubljana_patient07 --no-holdout-predict" in calls[0]

    proc, calls = _run(tmp_path, True, str(out), "60", "ljubljana_patient07")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"complete: {out}/models/fold_a"
    new = calls[1:]
    assert "--arch 3d" in new[0] and "--arch 2.5d" in new[1]
    assert new[2].startswith(f"scripts/train.py package {out}/runs/3d {out}/models/fold_a-3d fold_a-3d")
    assert new[3].startswith(f"scripts/train.py package {out}/runs/2p5d {out}/models/fold_a-2p5d fold_a-2p5d")
    assert new[4] == (f"scripts/train.py combine {out}/models/fold_a fold_a --parts fold_a-3d fold_a-2p5d "
                      "--threshold 0.4 --min-peak 0.8 --no-auto")
    # a fold ends with its own held-out figure: the subject's scans predicted by both parts, then scored
    assert new[5] == (f"scripts/holdout_eval.py predict --tag fold_a --model {out}/models/fold_a-3d "
                      f"{out}/models/fold_a-2p5d --subject ljubljana_patient07 --train-data .devdata/train_v4 "
                      "--keep-parts")
    assert new[6] == (f"scripts/holdout_eval.py score --tag fold_a --thresholds 0.3 0.4 0.5 "
                      f"--min-peak 0.5 0.6 0.7 0.8 0.9 --train-data .devdata/train_v4 --json {out}/holdout_score.json")
    assert len(new) == 7


def test_complete_runs_are_not_trained_again(tmp_path: Path) -> None:
    out = tmp_path / "all"
    _, first = _run(tmp_path, True, str(out))
    assert [("--arch 3d" in c, "--arch 2.5d" in c) for c in first[:2]] == [(True, False), (False, True)]
    proc, calls = _run(tmp_path, True, str(out))
    assert proc.returncode == 0, proc.stderr
    again = calls[len(first):]
    assert len(again) == 3 and not any("--arch" in c for c in again)   # only package, package, combine: no fold
    assert "--session-seconds" not in calls[0] and "--holdout" not in calls[0]


def test_missing_out_is_a_usage_error(tmp_path: Path) -> None:
    proc, _ = _run(tmp_path, True)
    assert proc.returncode != 0 and "usage: train_recipe.sh OUT" in proc.stderr
