"""scripts/holdout_eval.py pool: leave-one-subject-out means from several folds' score files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setting(threshold: float, peak: float, cases: dict[str, tuple[float, float]]) -> dict:
    return {"threshold": threshold, "min_peak": peak, "min_mm3": 3.0,
            "cases": [{"case": c, "dice": d, "lesion_f1": f} for c, (d, f) in cases.items()]}


def test_pool_averages_visits_within_a_subject_then_subjects(tmp_path: Path) -> None:
    p14 = {"mslesseg_P14_T1": (0.8, 0.6), "mslesseg_P14_T2": (0.6, 0.4), "mslesseg_P14_T3": (0.7, 0.5)}
    fold_a = {"settings": [_setting(0.4, 0.8, p14), _setting(0.4, 0.6, {k: (d, f + 0.3) for k, (d, f) in p14.items()}),
                           _setting(0.5, 0.9, p14)]}     # 0.5 / 0.9 is missing from fold b: not pooled
    fold_b = {"settings": [_setting(0.4, 0.8, {"isbi_training01": (0.5, 0.3)}),
                           _setting(0.4, 0.6, {"isbi_training01": (0.5, 0.1)})]}
    files = []
    for name, content in (("a", fold_a), ("b", fold_b)):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(content))
    proc = subprocess.run([sys.executable, "scripts/holdout_eval.py", "pool", *map(str, files)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "2 fold file(s), 2 subject(s): isbi_training01, mslesseg_P14"
    rows = [ln.split() for ln in lines[2:]]
    # P14 is one subject (its three visits averaged: Dice 0.7, F1 0.5 at 0.4 / 0.8), so each subject weighs half
    assert rows[0][:4] == ["0.40", "0.60", "0.600", "0.450"]   # F1 (0.8 + 0.1) / 2: best first
    assert rows[1][:4] == ["0.40", "0.80", "0.600", "0.400"]
    assert len(rows) == 2


def test_pool_without_a_common_setting_fails(tmp_path: Path) -> None:
    f = tmp_path / "a.json"
    f.write_text(json.dumps({"settings": []}))
    proc = subprocess.run([sys.executable, "scripts/holdout_eval.py", "pool", str(f)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "no setting" in proc.stdout


def _combine(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "holdout_eval.py"), "combine", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_combine_weighs_the_kept_part_maps(tmp_path: Path) -> None:
    import numpy as np

    preds = tmp_path / ".devdata" / "preds"
    for tag, value in (("fold~a", 0.8), ("fold~b", 0.4)):
        (preds / tag).mkdir(parents=True)
        np.savez_compressed(preds / tag / "case1.npz", prob=np.full((2, 3, 4), value, np.float16))
    proc = _combine(tmp_path, "--tag", "w", "--tags", "fold~a", "fold~b", "--weights", "3", "1")
    assert proc.returncode == 0, proc.stderr
    with np.load(preds / "w" / "case1.npz") as z:
        np.testing.assert_allclose(z["prob"].astype(np.float32), 0.7, atol=1e-3)   # (3 * 0.8 + 0.4) / 4
    proc = _combine(tmp_path, "--tag", "m", "--tags", "fold~a", "fold~b")
    with np.load(preds / "m" / "case1.npz") as z:
        np.testing.assert_allclose(z["prob"].astype(np.float32), 0.6, atol=1e-3)   # equal weights by default
    proc = _combine(tmp_path, "--tag", "bad", "--tags", "fold~a", "fold~b", "--weights", "1")
    assert proc.returncode != 0 and "one non-negative weight per tag" in proc.stderr
