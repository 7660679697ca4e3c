"""Property-based fuzzing of `mslesion analyze` argument handling (hypothesis).

Property: for ANY argument list, :func:`mslesion.cli.main` returns 0 (a
complete analysis) or 2 (one line on stderr saying what is wrong); it never
raises, never returns 1 ("internal error" = a bug), and never writes into a
folder it was not given.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .factories import make_affine, make_phantom, save
from .test_robustness_corpus import main  # restores logging after each call

EXAMPLES = int(os.environ.get("MSLESION_FUZZ_EXAMPLES", "300")) // 2
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
COUNTS: dict[str, int] = {}
RESULTS: dict[int, int] = {}

_TMP = Path(tempfile.mkdtemp(prefix="mslesion-fuzz-cli-"))


def _files() -> dict[str, Path]:
    ph = make_phantom(lesions=((32, 40, 24, 2.5),))  # the factory's brain-sized default
    d = _TMP / "in"
    d.mkdir(exist_ok=True)
    bad = d / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b" + b"\x00" * 50)
    const = save(np.ones((8, 8, 8)), d / "const.nii.gz", np.eye(4))
    far = save(ph.t1.data, d / "far_t1.nii.gz", make_affine((2.5, 2.5, 3.0), origin=(900.0, 0, 0), shape=ph.t1.shape))
    blocker = d / "blocker"
    blocker.write_text("x")
    folder = d / "folder"
    folder.mkdir(exist_ok=True)
    return {"flair": save(ph.flair, d / "flair.nii.gz"), "t1": save(ph.t1, d / "t1.nii.gz"), "bad": bad,
            "const": const, "far": far, "missing": d / "missing.nii.gz", "blocker": blocker, "folder": folder,
            "under_file": blocker / "x.nii.gz"}


FILES = _files()

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
paths = st.one_of(st.sampled_from(sorted(FILES)).map(lambda k: str(FILES[k])), text)
outs = st.one_of(
    st.just("fresh"), st.just("blocker"), st.just("under_file"), st.just("/proc/mslesion-fuzz-out"),
    text.filter(lambda t: t and "/" not in t and t not in (".", "..")),
)
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.sampled_from(
    ["0.5", "0", "1", "-1", "nan", "inf", "1e-9", "0.999", "abc", "", "4G", "1M", "off", "0.1K", "-3G", "1e400G"]))
option = st.one_of(
    st.tuples(st.just("--flair"), paths), st.tuples(st.just("--t1"), paths), st.tuples(st.just("--t2"), paths),
    st.tuples(st.just("--spine"), paths),
    st.tuples(st.just("--threshold"), numbers), st.tuples(st.just("--max-memory"), numbers),
    st.tuples(st.just("--device"), st.sampled_from(["cpu", "auto", "tpu", ""])),
    st.tuples(st.just("--model"), st.sampled_from(["baseline", "flair-threshold-baseline", "no-such-model", ""])),
    st.tuples(st.just("--save-preprocessed")), st.tuples(st.just("-v")),
    st.tuples(text), st.tuples(st.sampled_from(["--out", "--flair", "--", "-", "--unknown"])),
)


def _out_arg(choice: str, run: int) -> tuple[str, Path]:
    if choice == "fresh":
        p = _TMP / "runs" / f"out{run}"
    elif choice in ("blocker", "under_file"):
        p = FILES[choice]
    elif choice.startswith("/proc/"):
        p = Path(choice)
    else:
        p = _TMP / "runs" / choice
    return str(p), p


@pytest.mark.slow  # some examples are complete analyses
@FUZZ
@given(opts=st.lists(option, max_size=6), give_flair=st.booleans(), out_choice=outs, with_out=st.booleans())
def test_fuzz_analyze_arguments(opts, give_flair, out_choice, with_out):
    run = sum(COUNTS.values())
    argv = ["analyze"]
    if give_flair:
        argv += ["--flair", str(FILES["flair"])]
    for o in opts:
        argv += list(o)
    out_str, out_path = _out_arg(out_choice, run)
    if with_out:
        argv += ["--out", out_str]
    if not any(a in ("--model",) for a in argv):
        argv += ["--model", "baseline"]  # keep runs fast: never load a trained model by default
    err = io.StringIO()
    outbuf = io.StringIO()
    cwd = _TMP / "cwd"  # relative paths ('', '.', 'x') resolve here, not in the repository
    cwd.mkdir(exist_ok=True)
    before = sorted(p.name for p in cwd.iterdir())
    with contextlib.chdir(cwd), contextlib.redirect_stderr(err), contextlib.redirect_stdout(outbuf):
        rc = main(argv)
    RESULTS[rc] = RESULTS.get(rc, 0) + 1
    COUNTS["cli_arguments"] = COUNTS.get("cli_arguments", 0) + 1
    msg = err.getvalue()
    assert rc in (0, 2), f"argv={argv!r} rc={rc} stderr={msg!r}"
    assert "Traceback" not in msg
    if rc == 2:
        lines = [ln for ln in msg.splitlines() if ln.strip()]
        assert len(lines) == 1, f"argv={argv!r}: {lines}"
        assert "error" in lines[0]
    elif not outbuf.getvalue().startswith("usage:"):  # --help is a success too
        summary = json.loads(outbuf.getvalue())
        assert (cwd / summary["out"] / "report.json").is_file()
    assert sorted(p.name for p in cwd.iterdir()) == before, "wrote into the working directory"


_row_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
_cells = st.one_of(st.sampled_from([str(FILES[k]) for k in ("flair", "bad", "missing", "folder", "const")]),
                   _row_text)


@settings(max_examples=max(20, EXAMPLES // 3), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=st.one_of(st.just("subject,pred,ref"), _row_text),
       rows=st.lists(st.tuples(_row_text, _cells, _cells), max_size=4), raw=st.binary(max_size=40),
       use_raw=st.booleans())
def test_fuzz_evaluate_pairs_csv(header, rows, raw, use_raw):
    """Any pairs CSV: exit 0 (all scored), 1 (some pairs recorded as failed) or 2 (one line); never a crash."""
    csv_path = _TMP / "pairs.csv"
    if use_raw:
        csv_path.write_bytes(raw)
    else:
        lines = [header] + [",".join('"' + c.replace('"', '""') + '"' for c in row) for row in rows]
        csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err, outbuf = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(outbuf):
        rc = main(["evaluate", "--pairs", str(csv_path)])
    msg = err.getvalue()
    assert rc in (0, 1, 2), f"rc={rc} stderr={msg!r}"
    assert "Traceback" not in msg
    if rc == 2:
        assert len([ln for ln in msg.splitlines() if ln.strip()]) == 1
    else:
        assert json.loads(outbuf.getvalue())["subjects"] >= 0
