"""Run the hostile-input corpus, the fuzzers and (optionally) the kill trials; print the counts.

    .venv/bin/python scripts/robustness_report.py                    # corpus + fuzzing, 300 examples per property
    .venv/bin/python scripts/robustness_report.py --examples 1000 --kill

Uses the very cases and properties of tests/test_robustness_corpus.py,
tests/test_fuzz_*.py and tests/test_kill_analyze.py, so the figures are
those of the test suite.  A "crash" is any outcome other than the expected
one (exit 2 with one line naming the file, or for the fuzzers a usable
Volume / InputError / exit 0 or 2).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_corpus() -> tuple[int, int, int]:
    import pytest

    from tests.test_robustness_corpus import CASES, check_refusal, main

    ok = failed = skipped = 0
    for build in CASES:
        with tempfile.TemporaryDirectory(prefix="mslesion-corpus-") as tmp:
            try:
                case = build(Path(tmp))
            except pytest.skip.Exception as exc:
                skipped += 1
                print(f"  skipped {build.__name__}: {exc}")
                continue
            out = case.out or Path(tmp) / "out"
            before = sorted(out.rglob("*")) if out.is_dir() else []
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = main(["analyze", *case.args, "--out", str(out), "--model", "baseline"])
            try:
                check_refusal(case, out, rc, err.getvalue(), before)
                ok += 1
                print(f"  ok      {build.__name__:28s} {err.getvalue().strip()[:150]}")
            except AssertionError as exc:
                failed += 1
                print(f"  FAILED  {build.__name__}: {exc}")
    return ok, failed, skipped


def run_property(module: str, name: str) -> tuple[bool, str]:
    mod = __import__(f"tests.{module}", fromlist=[name])
    t0 = time.perf_counter()
    try:
        getattr(mod, name)()
        return True, f"{time.perf_counter() - t0:.0f}s"
    except Exception:  # noqa: BLE001 - report any falsifying example
        return False, traceback.format_exc(limit=3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=300, help="hypothesis examples per property")
    ap.add_argument("--kill", action="store_true", help="also run the kill trials (slow)")
    ap.add_argument("--no-cli-fuzz", action="store_true", help="skip the (slow) analyze-argument fuzzer")
    ap.add_argument("--no-corpus", action="store_true", help="skip the hostile-input corpus")
    args = ap.parse_args()
    os.environ["MSLESION_FUZZ_EXAMPLES"] = str(args.examples)

    failed = 0
    if not args.no_corpus:
        print("== hostile-input corpus (mslesion analyze) ==")
        ok, failed, skipped = run_corpus()
        print(f"corpus: {ok + failed} bad inputs tried, {ok} refused correctly, {failed} failures, {skipped} skipped")

    print("== property-based fuzzing ==")
    props = [("test_fuzz_nifti", "test_fuzz_header_fields"), ("test_fuzz_nifti", "test_fuzz_byte_flips"),
             ("test_fuzz_nifti", "test_fuzz_nifti2_dimensions")]
    if not args.no_cli_fuzz:
        props.append(("test_fuzz_cli", "test_fuzz_analyze_arguments"))
    try:
        import mslesion.dicom  # noqa: F401

        props.append(("test_fuzz_dicom", "test_fuzz_dicom_series"))
    except ImportError:
        print("  DICOM fuzzing skipped: mslesion.dicom not available")
    bad = 0
    counts: dict[str, int] = {}
    for module, name in props:
        passed, info = run_property(module, name)
        bad += not passed
        print(f"  {'ok' if passed else 'FAILED':6s} {module}.{name} ({info if passed else ''})")
        if not passed:
            print(info)
        mod = sys.modules[f"tests.{module}"]
        counts.update(getattr(mod, "COUNTS", {}))
    for module in ("test_fuzz_nifti", "test_fuzz_dicom"):
        mod = sys.modules.get(f"tests.{module}")
        if mod is not None:
            print(f"  {module} outcomes: {mod.OUTCOMES}")
    if "tests.test_fuzz_cli" in sys.modules:
        print(f"  test_fuzz_cli exit codes: {sys.modules['tests.test_fuzz_cli'].RESULTS}")
    total = sum(counts.values())
    print(f"fuzz: {total} examples run {counts}, {bad} properties falsified")

    if args.kill:
        print("== kill trials ==")
        from tests.test_kill_analyze import test_kill_at_random_points_never_leaves_mixed_outputs

        with tempfile.TemporaryDirectory(prefix="mslesion-kill-") as tmp:
            try:
                test_kill_at_random_points_never_leaves_mixed_outputs(Path(tmp))
                print("kill trials: passed")
            except AssertionError as exc:
                bad += 1
                print(f"kill trials: FAILED {exc}")
    return 1 if failed or bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
