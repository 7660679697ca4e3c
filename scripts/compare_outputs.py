"""Run ``mslesion analyze`` (or ``compare``) with two checkouts (or take two finished output folders) and diff.

    # diff two finished output folders
    python scripts/compare_outputs.py BEFORE_DIR AFTER_DIR
    # run analyze with each checkout's code first, then diff
    python scripts/compare_outputs.py /tmp/before /tmp/after --before-repo /work/main --after-repo . \
        -- --flair data_samples/demo/flair.nii.gz --t1 data_samples/demo/t1.nii.gz
    # the same for ``mslesion compare``
    python scripts/compare_outputs.py /tmp/before /tmp/after --command compare --after-repo . \
        -- --baseline-flair A.nii.gz --followup-flair B.nii.gz

Compared: every report.json (the subject's and each spine/<n>/'s) and compare_report.json key
by key, with the timings and the output-folder paths left out; lesions.csv, cord_lesions.csv,
changes.csv, volumes.csv and tissue_dseg.tsv text; the lesion, cord, change, enhancement and
tissue maps and the lesion probability voxel by voxel.  Exit status 0:
identical, 1: differences (listed).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

#: keys whose values legitimately differ between two runs
IGNORED_KEYS = {"timings_s", "out_dir", "seconds"}  # seconds: volumes.seconds (issue 18), a timing
REPORTS = ("report.json", "compare_report.json")
TEXT_FILES = ("lesions.csv", "cord_lesions.csv", "changes.csv", "volumes.csv", "tissue_dseg.tsv")
MASKS = ("lesions.nii.gz", "cord.nii.gz", "cord_lesions.nii.gz", "new_enlarging_baseline.nii.gz",
         "new_enlarging_followup.nii.gz", "changes_baseline.nii.gz", "changes_followup.nii.gz",
         "change_labels_baseline.nii.gz", "enhancement.nii.gz", "tissue_dseg.nii.gz", "lesion_probability.nii.gz")


def run_analyze(repo: Path, out: Path, args: list[str], command: str = "analyze") -> None:
    """``mslesion COMMAND ARGS --out OUT`` with the code of ``repo`` (imported from its root)."""
    code = "import sys; from mslesion.cli import entry_point; sys.exit(entry_point())"
    cmd = [sys.executable, "-c", code, command, *args, "--out", str(out)]
    print("running:", " ".join(cmd), f"(in {repo})", flush=True)
    subprocess.run(cmd, cwd=repo, check=True)


def diff_json(a: object, b: object, where: str = "") -> list[str]:
    """Differences between two JSON values, as 'key.path: before != after' lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k in IGNORED_KEYS:
                continue
            path = f"{where}.{k}" if where else str(k)
            if k not in a:
                out.append(f"{path}: only after")
            elif k not in b:
                out.append(f"{path}: only before")
            else:
                out += diff_json(a[k], b[k], path)
        if list(a) != list(b) and set(a) == set(b):
            out.append(f"{where or '<root>'}: key order differs")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff_json(x, y, f"{where}[{i}]")]
    return [] if a == b and type(a) is type(b) else [f"{where}: {a!r} != {b!r}"]


def compare_dirs(before: Path, after: Path) -> list[str]:
    """All differences between two analyze output folders (recursing into spine/<n>/)."""
    diffs: list[str] = []
    for rep in sorted(r for name in REPORTS for r in before.rglob(name)):
        rel = rep.relative_to(before)
        other = after / rel
        if not other.is_file():
            diffs.append(f"{rel}: missing after")
            continue
        diffs += [f"{rel}: {d}" for d in diff_json(json.loads(rep.read_text()), json.loads(other.read_text()))]
    for name in (*TEXT_FILES, *MASKS):
        for f in sorted(before.rglob(name)):
            rel = f.relative_to(before)
            other = after / rel
            if not other.is_file():
                diffs.append(f"{rel}: missing after")
            elif name.endswith(".nii.gz"):
                x, y = np.asanyarray(nib.load(f).dataobj), np.asanyarray(nib.load(other).dataobj)
                if x.shape != y.shape or not np.array_equal(x, y):
                    diffs.append(f"{rel}: voxels differ")
            elif f.read_text() != other.read_text():
                diffs.append(f"{rel}: text differs")
    return diffs


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    analyze_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, analyze_args = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--before-repo", type=Path, help="run analyze with this checkout into BEFORE first")
    p.add_argument("--after-repo", type=Path, help="run analyze with this checkout into AFTER first")
    p.add_argument("--command", default="analyze", choices=("analyze", "compare", "spine"),
                   help="the mslesion command the repos run (default: analyze)")
    a = p.parse_args(argv)
    args = [str(Path(x).resolve()) if Path(x).exists() else x for x in analyze_args]
    for repo, out in ((a.before_repo, a.before), (a.after_repo, a.after)):
        if repo is not None:
            run_analyze(repo.resolve(), out.resolve(), args, a.command)
    diffs = compare_dirs(a.before, a.after)
    for d in diffs:
        print(d)
    n = sum(len(list(a.before.rglob(name))) for name in REPORTS)
    print(f"{'IDENTICAL' if not diffs else f'{len(diffs)} DIFFERENCE(S)'} ({n} report file(s) compared)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
