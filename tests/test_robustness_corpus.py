"""Hostile-input corpus: every bad input gives exit 2, one line naming the file and the problem.

Each case is GENERATED here (never stored), passed to ``mslesion analyze``
through :func:`mslesion.cli.main`, and must give exit code 2, exactly one
line on stderr that names the culprit file and matches the problem, no
traceback, and nothing in ``--out``.  ``test_corpus_size`` keeps the corpus
at 25 cases or more; a few cases also run as real subprocesses.
"""
from __future__ import annotations

import gzip
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pytest

from mslesion.cli import main as _cli_main

from .factories import make_phantom, save


def main(argv: list[str]) -> int:
    """mslesion.cli.main, then the logging set-up it made (pointing at captured stderr) undone."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return _cli_main(argv)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)


@dataclass
class Case:
    args: list[str]          # extra analyze arguments (--flair, --t1, ...)
    culprit: str             # text the error line must contain (the bad file's path)
    problem: str             # regex (case-insensitive) the error line must match
    out: Path | None = None  # --out to use (default tmp/out)


def _phantom_file(tmp: Path, name: str = "flair.nii.gz", **kw) -> Path:
    # the factory's default size: a brain-sized head, so the preprocessing's not-a-brain check passes
    return save(make_phantom(lesions=((32, 40, 24, 2.5),), **kw).flair, tmp / name)


def _raw_nifti(path: Path, data: np.ndarray, mutate: Callable[[nib.Nifti1Header], None] | None = None,
               header_cls: type = nib.Nifti1Header, affine: np.ndarray | None = None, cut: int = 0) -> Path:
    """Write header + data bytes by hand, so fields nibabel would repair stay as hostile as we set them."""
    hdr = header_cls()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(data.dtype)
    aff = np.eye(4) if affine is None else affine
    hdr.set_qform(aff, code=1)
    hdr.set_sform(aff, code=1)
    if mutate is not None:
        mutate(hdr)
    offset = int(hdr["vox_offset"]) if int(hdr["vox_offset"]) > 0 else len(hdr.binaryblock) + 4
    hdr["vox_offset"] = offset
    blob = hdr.binaryblock + b"\x00" * (offset - len(hdr.binaryblock)) + data.tobytes(order="F")
    if cut:
        blob = blob[:-cut]
    path.write_bytes(gzip.compress(blob) if path.name.endswith(".gz") else blob)
    return path


def _rand(shape=(20, 20, 20), dtype=np.float32) -> np.ndarray:
    return (np.random.default_rng(0).random(shape) * 100 + 1).astype(dtype)


def _set(field: str, index, value) -> Callable[[nib.Nifti1Header], None]:
    def mutate(h: nib.Nifti1Header) -> None:
        if index is None:
            h[field] = value
        else:
            h[field][index] = value
    return mutate


# --- case builders: tmp folder -> Case -------------------------------------------------------------

def truncated_gzip(tmp):
    p = _phantom_file(tmp)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return Case(["--flair", str(p)], str(p), "corrupt or truncated")


def truncated_gzip_in_header(tmp):
    p = _phantom_file(tmp)
    p.write_bytes(p.read_bytes()[:60])
    return Case(["--flair", str(p)], str(p), "corrupt|truncated|not a NIfTI")


def corrupt_deflate_stream(tmp):
    p = _phantom_file(tmp)
    raw = bytearray(p.read_bytes())
    for i in range(200, len(raw) - 8, 97):
        raw[i] ^= 0x5A
    p.write_bytes(bytes(raw))
    return Case(["--flair", str(p)], str(p), "corrupt|truncated|not a NIfTI|cannot be parsed")


def wrong_magic(tmp):
    p = _raw_nifti(tmp / "magic.nii", _rand(), _set("magic", None, b"xx1"))
    return Case(["--flair", str(p)], str(p), "not a NIfTI|cannot be parsed")


def random_bytes(tmp):
    p = tmp / "noise.nii.gz"
    p.write_bytes(np.random.default_rng(1).bytes(5000))
    return Case(["--flair", str(p)], str(p), "not a NIfTI|corrupt|cannot be parsed")


def text_file(tmp):
    p = tmp / "notes.nii"
    p.write_text("patient notes, definitely not an image\n" * 20)
    return Case(["--flair", str(p)], str(p), "not a NIfTI|cannot be parsed|corrupt")


def empty_file(tmp):
    p = tmp / "empty.nii.gz"
    p.write_bytes(b"")
    return Case(["--flair", str(p)], str(p), "empty")


def more_data_declared_plain(tmp):
    p = _raw_nifti(tmp / "short.nii", _rand(), cut=4000)
    return Case(["--flair", str(p)], str(p), "declares \\d+ bytes .* holds only")


def more_data_declared_gzip(tmp):
    p = _raw_nifti(tmp / "short.nii.gz", _rand(), cut=4000)  # valid gzip, short payload
    return Case(["--flair", str(p)], str(p), "declares \\d+ bytes .* holds only")


def huge_dims_nifti2(tmp):
    p = _raw_nifti(tmp / "huge2.nii", _rand((2, 2, 2)), _set("dim", slice(1, 4), 100_000), nib.Nifti2Header, cut=0)
    return Case(["--flair", str(p)], str(p), "dimensions")


def huge_dims_nifti1(tmp):
    p = _raw_nifti(tmp / "huge1.nii.gz", _rand((2, 2, 2)), _set("dim", slice(1, 4), 32767))
    return Case(["--flair", str(p)], str(p), "dimensions")


def two_d(tmp):
    p = save(_rand((64, 64)), tmp / "slice2d.nii.gz", np.eye(4))
    return Case(["--flair", str(p)], str(p), "2-D|3-D volume is needed")


def single_slice(tmp):
    p = save(_rand((64, 64, 1)), tmp / "slice3d.nii.gz", np.eye(4))
    return Case(["--flair", str(p)], str(p), "single slice")


def five_d(tmp):
    p = save(_rand((10, 10, 10, 2, 2)), tmp / "five.nii.gz", np.eye(4))
    return Case(["--flair", str(p)], str(p), "5-D")


def four_d_series(tmp):
    p = save(_rand((16, 16, 16, 3)), tmp / "bold.nii.gz", np.eye(4))
    return Case(["--flair", str(p)], str(p), "4-D with 3 volumes")


def zero_dim(tmp):
    p = _raw_nifti(tmp / "zerodim.nii", _rand((4, 4, 4)), _set("dim", 2, 0))
    return Case(["--flair", str(p)], str(p), "empty|negative dimension|single slice")


def nan_voxels(tmp):
    d = _rand()
    d[3, 4, 5] = np.nan
    return Case(["--flair", str(save(d, tmp / "nan.nii.gz", np.eye(4)))], "nan.nii.gz", "1 NaN or infinite")


def inf_voxels(tmp):
    d = _rand()
    d[1, 1, 1] = np.inf
    d[2, 2, 2] = -np.inf
    return Case(["--flair", str(save(d, tmp / "inf.nii.gz", np.eye(4)))], "inf.nii.gz", "2 NaN or infinite")


def overflowing_scale_factor(tmp):
    p = _raw_nifti(tmp / "slope.nii", _rand(dtype=np.int16), _set("scl_slope", None, 1e38))  # beyond float32
    return Case(["--flair", str(p)], str(p), "NaN or infinite")


def all_zero(tmp):
    p = save(np.zeros((20, 20, 20)), tmp / "zeros.nii.gz", np.eye(4))
    return Case(["--flair", str(p)], str(p), "all zeros")


def constant(tmp):
    p = save(np.full((20, 20, 20), 7.0), tmp / "const.nii.gz", np.eye(4))
    return Case(["--flair", str(p)], str(p), "constant")


def zero_voxel_size(tmp):
    p = _raw_nifti(tmp / "zerovox.nii", _rand(), _set("pixdim", 2, 0.0))
    return Case(["--flair", str(p)], str(p), "voxel size|singular")


def negative_voxel_size(tmp):
    p = _raw_nifti(tmp / "negvox.nii", _rand(), _set("pixdim", 3, -1.5))
    return Case(["--flair", str(p)], str(p), "voxel size")


def nan_voxel_size(tmp):
    p = _raw_nifti(tmp / "nanvox.nii", _rand(), _set("pixdim", 1, np.nan))
    return Case(["--flair", str(p)], str(p), "voxel size|non-finite")


def singular_affine(tmp):
    aff = np.eye(4)
    aff[:3, 2] = aff[:3, 0]  # two axes point the same way
    p = _raw_nifti(tmp / "singular.nii", _rand(), affine=aff, mutate=_set("qform_code", None, 0))
    return Case(["--flair", str(p)], str(p), "singular")


def nan_affine(tmp):
    def mutate(h):
        h["qform_code"] = 0
        h["srow_x"][3] = np.nan
    p = _raw_nifti(tmp / "nanaff.nii", _rand(), mutate)
    return Case(["--flair", str(p)], str(p), "non-finite affine|cannot be parsed|singular")


def complex_voxels(tmp):
    p = _raw_nifti(tmp / "complex.nii", (_rand() + 1j).astype(np.complex64))
    return Case(["--flair", str(p)], str(p), "voxel type")


def rgb_voxels(tmp):
    rgb = np.zeros((20, 20, 20), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    p = _raw_nifti(tmp / "rgb.nii", rgb)
    return Case(["--flair", str(p)], str(p), "voxel type|cannot be parsed")


def other_subject_t1(tmp):
    f = _phantom_file(tmp)
    ph = make_phantom(lesions=())
    t1 = save(ph.t1.data, tmp / "t1_other.nii.gz", ph.t1.affine @ np.array(
        [[1, 0, 0, 200], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float))  # 500 mm away: another subject
    return Case(["--flair", str(f), "--t1", str(t1)], str(t1), "same part of world space")


def missing_t2(tmp):
    f = _phantom_file(tmp)
    return Case(["--flair", str(f), "--t2", str(tmp / "nope_T2.nii.gz")], "nope_T2.nii.gz", "does not exist")


def folder_without_dicom(tmp):
    d = tmp / "not_a_series.nii.gz"  # a folder named like a file
    d.mkdir()
    (d / "readme.txt").write_text("no DICOM here")
    return Case(["--flair", str(d)], str(d), "DICOM|no .*series|no .*image|folder")


def _dicom_series(tmp: Path, name: str, n: int = 4, mutate=None) -> Path:
    from pydicom.uid import generate_uid

    from .test_fuzz_dicom import make_slice  # skips the case if mslesion.dicom is missing

    folder = tmp / name
    folder.mkdir()
    uids = {"study": generate_uid(), "series": generate_uid(), "frame": generate_uid()}
    for i in range(n):
        ds = make_slice(i, uids)
        if mutate is not None:
            mutate(i, ds)
        ds.save_as(folder / f"IM{i:04d}.dcm", enforce_file_format=True)
    return folder


def dicom_missing_geometry(tmp):
    d = _dicom_series(tmp, "dicom_nogeom", mutate=lambda i, ds: delattr(ds, "ImagePositionPatient"))
    return Case(["--flair", str(d)], str(d), "ImagePositionPatient|position|geometry")


def dicom_two_series(tmp):
    def mutate(i, ds):
        if i % 2:
            ds.SeriesInstanceUID = "1.2.3.4.5"
    d = _dicom_series(tmp, "dicom_mixed", mutate=mutate)
    return Case(["--flair", str(d)], str(d), "series")


def dicom_corrupt_files(tmp):
    d = _dicom_series(tmp, "dicom_corrupt")
    for f in sorted(d.iterdir()):
        raw = bytearray(f.read_bytes())
        for pos in range(140, len(raw), 37):
            raw[pos] ^= 0x5A
        f.write_bytes(bytes(raw[: len(raw) // 2]))
    return Case(["--flair", str(d)], str(d), "DICOM|series|cannot|corrupt|unreadable|no ")


def fifo_input(tmp):
    p = tmp / "pipe.nii"
    os.mkfifo(p)
    return Case(["--flair", str(p)], str(p), "not a regular file")


def dangling_symlink(tmp):
    p = tmp / "link.nii.gz"
    p.symlink_to(tmp / "gone.nii.gz")
    return Case(["--flair", str(p)], str(p), "does not exist")


def hdr_without_img(tmp):
    p = tmp / "pair.hdr"
    nib.save(nib.Nifti1Pair(_rand(), np.eye(4)), str(p))
    (tmp / "pair.img").unlink()
    return Case(["--flair", str(p)], "pair", "corrupt|truncated|cannot|not exist|No such file|not a NIfTI")


def newline_in_name(tmp):
    p = tmp / "evil\nname.nii.gz"
    p.write_bytes(b"junk" * 10)
    return Case(["--flair", str(p)], "evil\\nname.nii.gz", "not a NIfTI|corrupt|cannot be parsed")


def unreadable_file(tmp):
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading (covered by fifo/folder cases)")
    p = _phantom_file(tmp)
    p.chmod(0)
    return Case(["--flair", str(p)], str(p), "cannot read|Permission denied")


def out_is_a_file(tmp):
    f = _phantom_file(tmp)
    out = tmp / "out_file"
    out.write_text("keep me")
    return Case(["--flair", str(f)], str(out), "is a file, not a folder", out=out)


def out_under_a_file(tmp):
    f = _phantom_file(tmp)
    blocker = tmp / "blocker"
    blocker.write_text("x")
    return Case(["--flair", str(f)], str(blocker), "is a file, not a folder", out=blocker / "sub")


def out_on_readonly_fs(tmp):
    f = _phantom_file(tmp)
    out = Path("/proc/mslesion-robustness-out")  # unwritable even for root
    return Case(["--flair", str(f)], str(out), "cannot be written|cannot write", out=out)


def out_readonly_dir(tmp):
    if os.geteuid() == 0:
        pytest.skip("running as root: a 0555 folder is still writable (covered by /proc and file cases)")
    f = _phantom_file(tmp)
    out = tmp / "ro"
    out.mkdir()
    out.chmod(0o555)
    return Case(["--flair", str(f)], str(out), "cannot be written|Permission denied", out=out)


def memory_limit_exceeded(tmp):
    f = _phantom_file(tmp)
    return Case(["--flair", str(f), "--max-memory", "1M"], str(f), "need about .* more than the limit")


CASES: list[Callable[[Path], Case]] = [
    truncated_gzip, truncated_gzip_in_header, corrupt_deflate_stream, wrong_magic, random_bytes, text_file,
    empty_file, more_data_declared_plain, more_data_declared_gzip, huge_dims_nifti2, huge_dims_nifti1, two_d,
    single_slice, five_d, four_d_series, zero_dim, nan_voxels, inf_voxels, overflowing_scale_factor, all_zero,
    constant, zero_voxel_size, negative_voxel_size, nan_voxel_size, singular_affine, nan_affine, complex_voxels,
    rgb_voxels, other_subject_t1, missing_t2, folder_without_dicom, dicom_missing_geometry, dicom_two_series,
    dicom_corrupt_files, fifo_input, dangling_symlink, hdr_without_img, newline_in_name, unreadable_file,
    out_is_a_file, out_under_a_file, out_on_readonly_fs, out_readonly_dir, memory_limit_exceeded,
]


def _files_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.rglob("*")]


def check_refusal(case: Case, out: Path, rc: int, err: str, before: list[Path]) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, f"exit code {rc}, stderr: {err}"
    assert "Traceback" not in err
    assert len(lines) == 1, f"expected one line, got: {lines}"
    line = lines[0]
    assert line.startswith("mslesion analyze: error: "), line
    assert case.culprit in line, f"{case.culprit!r} not named in {line!r}"
    import re

    assert re.search(case.problem, line, re.IGNORECASE), f"{case.problem!r} not in {line!r}"
    assert "internal error" not in line
    if out.is_dir():
        assert _files_in(out) == before, f"--out changed: {_files_in(out)}"
    elif out.exists():
        assert out.read_text() == "keep me"


@pytest.mark.parametrize("build", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_refused(build, tmp_path, capsys):
    case = build(tmp_path)
    out = case.out or tmp_path / "out"
    before = _files_in(out)
    rc = main(["analyze", *case.args, "--out", str(out), "--model", "baseline"])
    captured = capsys.readouterr()
    assert captured.out == ""
    check_refusal(case, out, rc, captured.err, before)
    if case.out is None:
        assert not out.exists(), "a refused run must not leave an --out folder behind"


@pytest.mark.slow
def test_bad_input_keeps_previous_results(tmp_path, capsys):
    """A refused rerun into a folder with earlier results leaves them untouched."""
    good = _phantom_file(tmp_path)
    out = tmp_path / "out"
    assert main(["analyze", "--flair", str(good), "--out", str(out), "--model", "baseline"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = tmp_path / "bad"
    bad.mkdir()
    case = truncated_gzip(bad)
    capsys.readouterr()
    rc = main(["analyze", *case.args, "--out", str(out), "--model", "baseline"])
    check_refusal(case, out, rc, capsys.readouterr().err, _files_in(out))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_corpus_size():
    assert len(CASES) >= 25


@pytest.mark.slow
@pytest.mark.realdata
def test_spine_volume_is_not_a_brain(shared_data, tmp_path, capsys):
    spine = shared_data / "spine" / "ivadomed_testing" / "sub-unf01" / "sub-unf01_T2w.nii.gz"
    out = tmp_path / "out"
    rc = main(["analyze", "--flair", str(spine), "--out", str(out), "--model", "baseline"])
    err = capsys.readouterr().err
    check_refusal(Case([], str(spine), "not .*brain|brain .*not"), out, rc, err, [])
    assert not out.exists()


SUBPROCESS_CASES = [truncated_gzip, other_subject_t1, newline_in_name]


@pytest.mark.slow
@pytest.mark.parametrize("build", SUBPROCESS_CASES, ids=[c.__name__ for c in SUBPROCESS_CASES])
def test_bad_input_refused_in_subprocess(build, tmp_path):
    """The same contract for the real console process (logging, warnings and all)."""
    case = build(tmp_path)
    out = case.out or tmp_path / "out"
    before = _files_in(out)
    proc = subprocess.run(
        [sys.executable, "-c", "from mslesion.cli import entry_point; entry_point()", "analyze", *case.args,
         "--out", str(out), "--model", "baseline"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.stdout == ""
    check_refusal(case, out, proc.returncode, proc.stderr, before)
