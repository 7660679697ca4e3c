"""Mutation check: break a core rule, run the fast tests, and list the breaks no test catches.

    python scripts/mutation_check.py                 # the fast subset below, every mutation
    python scripts/mutation_check.py --all-fast      # the whole fast suite (-m "not slow")
    python scripts/mutation_check.py --only dis_always_met --keep
    python scripts/mutation_check.py --root /tmp/old-checkout      # the tests of another checkout

Each mutation patches the source text of one rule in a *temporary copy* of the package (the
working tree is never written, so an interrupted run leaves nothing behind), runs pytest in that
copy with ``-x -q -m "not slow"``, and records whether a test failed.  A control run without any
mutation comes first: the tests must pass on the unbroken copy, or a "caught" would mean nothing.
A mutation whose source text is no longer found is reported as such (update its patch), never
skipped silently.  Exit status: 0 when every mutation is caught, 1 otherwise, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    path: str                              # file under the repository root
    patches: tuple[tuple[str, str], ...]   # (exact old text, new text); each old text must occur exactly once


MUTATIONS = (
    Mutation("baseline_whole_brain", "the baseline segmenter marks the whole (eroded) brain as lesion",
             "mslesion/segment/baseline.py",
             (("prob = 1.0 / (1.0 + np.exp(-(z - self.k) / self.softness))", "prob = np.ones_like(z)"),)),
    Mutation("dis_always_met", "the McDonald DIS verdict is always 'met'",
             "mslesion/location/dis.py",
             (('"met": len(involved) >= min_areas,', '"met": True,'),)),
    Mutation("cord_size_limit_zero", "cord lesions of any size count for DIS (3 mm limit set to 0)",
             "mslesion/spine/analyze.py",
             (("def spinal_dis(lesions: list[CordLesion], contrast: str, min_long_axis_mm: float = 3.0) -> DisVerdict:",
               "def spinal_dis(lesions: list[CordLesion], contrast: str, min_long_axis_mm: float = 0.0) -> DisVerdict:"),)),
    Mutation("region_labels_swapped", "periventricular and juxtacortical lesions swap their region labels",
             "mslesion/location/regions.py",
             (('        return "periventricular"\n', '        return "@@JC@@"\n'),
              ('        return "juxtacortical"\n', '        return "periventricular"\n'),
              ('        return "@@JC@@"\n', '        return "juxtacortical"\n'))),
    Mutation("threshold_zero", "the lesion probability threshold is 0 (every voxel is lesion)",
             "mslesion/pipeline.py",
             (("threshold = opts.threshold if opts.threshold is not None else seg.threshold", "threshold = 0.0"),)),
)

#: test files that check answers end to end (phantoms, demo, cord, location rules, metrics);
#: with -m "not slow" they take a few minutes on one core
FAST_SUBSET = ("tests/test_analyze_spine.py", "tests/test_spine_size_rule.py", "tests/test_pipeline.py",
               "tests/test_cli.py", "tests/test_location.py", "tests/test_spine.py", "tests/test_batch.py",
               "tests/test_metrics.py")

COPIED = ("mslesion", "tests", "pyproject.toml", "data_samples", "models")


class PatchError(Exception):
    """A mutation's source text is not (exactly once) in the file: the code changed, update the patch."""


def apply_patches(text: str, patches: tuple[tuple[str, str], ...], path: str) -> str:
    for old, new in patches:
        n = text.count(old)
        if n != 1:
            raise PatchError(f"{path}: expected the text {old.strip()!r} once, found it {n} times")
        text = text.replace(old, new)
    return text


def make_copy(dest: Path, root: Path = ROOT) -> Path:
    """A copy of ``root``'s package, tests and their data under ``dest/tree``; ../shared is linked, not copied."""
    tree = dest / "tree"
    tree.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, tree / name)
    shared = root.parent / "shared" if (root.parent / "shared").is_dir() else ROOT.parent / "shared"
    if shared.is_dir():  # tests find real data at ROOT/../shared/data
        (dest / "shared").symlink_to(shared, target_is_directory=True)
    return tree


def run_tests(tree: Path, targets: list[str], timeout: float) -> tuple[bool, str, float]:
    """Run pytest in ``tree``; (passed, first failing test or the tail of the output, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p", "no:cacheprovider", "-rf", *targets]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s", time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, flags=re.M)
    if proc.returncode == 0:
        return True, "", seconds
    return False, failed[0] if failed else out.strip().splitlines()[-1] if out.strip() else f"exit {proc.returncode}", \
        seconds


def check_import_location(tree: Path) -> None:
    """The copy, not the installed package, must be what the tests import."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", "import mslesion; print(mslesion.__file__)"], cwd=tree, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    if not Path(out).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"mutation_check: the tests would import {out}, not the copy in {tree}")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--all-fast", action="store_true", help='run the whole fast suite (-m "not slow") per mutation')
    p.add_argument("--only", action="append", choices=[m.name for m in MUTATIONS], help="run only these mutations")
    p.add_argument("--no-control", action="store_true", help="skip the control run on the unbroken copy")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per pytest run (default 1800)")
    p.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    p.add_argument("--root", type=Path, default=ROOT, help="checkout whose package and tests are copied (default: "
                                                          "this one), e.g. an older commit to compare")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    mutations = [m for m in MUTATIONS if not args.only or m.name in args.only]
    targets = ["tests"] if args.all_fast else list(FAST_SUBSET)
    if not (args.root / "mslesion").is_dir():
        print(f"mutation_check: {args.root} holds no mslesion package", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="mslesion-mutation-"))
    results: list[tuple[str, str, str]] = []
    try:
        tree = make_copy(tmp, args.root.resolve())
        targets = [t for t in targets if (tree / t).exists()]   # an older checkout may lack newer test files
        check_import_location(tree)
        originals = {m.path: (tree / m.path).read_text() for m in mutations}
        # every patch must apply before anything runs: a stale patch is an error, not a pass
        for m in mutations:
            try:
                apply_patches(originals[m.path], m.patches, m.path)
            except PatchError as exc:
                results.append((m.name, "NOT APPLIED", str(exc)))
        stale = {name for name, _, _ in results}
        print(f"tests: {' '.join(targets)}  (-x -q -m 'not slow'), copy in {tree}", flush=True)
        if not args.no_control:
            ok, detail, sec = run_tests(tree, targets, args.timeout)
            print(f"control (no mutation): {'passed' if ok else 'FAILED: ' + detail} in {sec:.0f} s", flush=True)
            if not ok:
                print("the tests fail without any mutation: fix that first; no mutation was run")
                return 1
        for m in mutations:
            if m.name in stale:
                continue
            target = tree / m.path
            try:
                target.write_text(apply_patches(originals[m.path], m.patches, m.path))
                ok, detail, sec = run_tests(tree, targets, args.timeout)
            finally:
                target.write_text(originals[m.path])   # the copy is restored before the next mutation
            verdict = "NOT CAUGHT" if ok else "caught"
            results.append((m.name, verdict, f"{detail} ({sec:.0f} s)" if detail else f"all tests passed ({sec:.0f} s)"))
            print(f"{m.name}: {verdict} - {results[-1][2]}", flush=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\nmutation                  result       first failing test")
    for name, verdict, detail in sorted(results, key=lambda r: [m.name for m in MUTATIONS].index(r[0])):
        print(f"{name:<25} {verdict:<12} {detail}")
    missed = [name for name, verdict, _ in results if verdict != "caught"]
    if missed:
        print(f"\nnot caught or not applied: {', '.join(missed)}")
        for m in mutations:
            if m.name in missed:
                print(f"  {m.name}: {m.what}")
        return 1
    print(f"\nall {len(results)} mutations caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
