"""Property-based fuzzing of the DICOM series loader (hypothesis).

A small valid MR series is written with pydicom, then mutated: tags
deleted or set to hostile values (NaN/zero/negative spacing, degenerate
orientation, wrong pixel-data length, absurd Rows/Columns), slices
duplicated or taken from another series, files truncated, replaced by junk
or byte-flipped.  Property: ``load_volume(folder)`` (which calls
:func:`mslesion.dicom.load_dicom_series`) returns a usable Volume or raises
:class:`~mslesion.errors.InputError` naming the folder or file - never
anything else.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

# pydicom is a core dependency (pyproject): missing, these imports fail rather than skip
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

import mslesion.dicom  # noqa: F401  (load_volume reads DICOM folders through it)
from mslesion.errors import InputError
from mslesion.io import load_volume

from .factories import mr_dataset

EXAMPLES = max(20, int(os.environ.get("MSLESION_FUZZ_EXAMPLES", "300")) // 2)
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
COUNTS: dict[str, int] = {}
OUTCOMES: dict[str, int] = {"loaded": 0, "refused": 0}

_TMP = Path(tempfile.mkdtemp(prefix="mslesion-fuzz-dicom-"))


def make_slice(i: int, uids: dict[str, str], rows: int = 10, cols: int = 9, thick: float = 2.0) -> Dataset:
    ds = mr_dataset(uids["study"], uids["series"], uids["frame"], patient_id="FUZZ")
    ds.SeriesDescription = "FLAIR"
    ds.SeriesNumber = 3
    ds.InstanceNumber = i + 1
    ds.ImagePositionPatient = [-4.5, -5.0, i * thick]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = thick
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    rng = np.random.default_rng(i)
    ds.PixelData = (rng.random((rows, cols)) * 1000 + 10).astype(np.uint16).tobytes()
    return ds


TAGS = ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "Rows", "Columns",
        "BitsAllocated", "PixelData", "SeriesInstanceUID", "RescaleSlope", "PixelRepresentation",
        "SamplesPerPixel", "PhotometricInterpretation", "InstanceNumber"]
weird = st.sampled_from([float("nan"), float("inf"), 0.0, -1.0, 1e30, 1e-30])
VALUES = {
    "PixelSpacing": st.one_of(st.lists(weird, min_size=2, max_size=2), st.just([1.0]), st.just([])),
    "ImageOrientationPatient": st.sampled_from(
        [[0, 0, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0], [1, 0, 0], [float("nan")] * 6, [1, 0, 0, 0, 0, 1],
         [2, 0, 0, 0, 3, 0]]),
    "ImagePositionPatient": st.one_of(st.lists(weird, min_size=3, max_size=3), st.just([0.0, 0.0])),
    "SliceThickness": weird,
    "Rows": st.sampled_from([0, 1, 5, 60000]),
    "Columns": st.sampled_from([0, 1, 5, 60000]),
    "BitsAllocated": st.sampled_from([0, 1, 8, 12, 32, 64]),
    "RescaleSlope": weird,
    "RescaleIntercept": weird,
    "PixelData": st.sampled_from([b"", b"\x00\x01", b"\xff" * 179]),
    "SamplesPerPixel": st.sampled_from([0, 3, 4]),
    "PhotometricInterpretation": st.sampled_from(["RGB", "PALETTE COLOR", "", "YBR_FULL"]),
    "SeriesInstanceUID": st.just("1.2.3.999"),
}
mutation = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 9), st.sampled_from(TAGS)),
    st.tuples(st.just("set"), st.integers(0, 9), st.sampled_from(sorted(VALUES))).flatmap(
        lambda t: st.tuples(st.just(t[0]), st.just(t[1]), st.just(t[2]), VALUES[t[2]])),
    st.tuples(st.just("duplicate"), st.integers(0, 9)),
    st.tuples(st.just("junk"), st.integers(0, 9), st.binary(max_size=300)),
    st.tuples(st.just("truncate"), st.integers(0, 9), st.integers(0, 600)),
    st.tuples(st.just("flip"), st.integers(0, 9), st.lists(st.integers(0, 2000), min_size=1, max_size=8)),
    st.tuples(st.just("subfolder"), st.integers(0, 9)),
)


def check_loader(folder: Path) -> None:
    try:
        vol = load_volume(folder, role="FLAIR")
    except InputError as exc:
        assert exc.path is not None, str(exc)
        assert exc.problem and "\n" not in exc.problem
        OUTCOMES["refused"] += 1
        return
    assert vol.data.ndim == 3 and np.isfinite(vol.data).all()
    assert abs(np.linalg.det(vol.affine[:3, :3])) > 0 and np.isfinite(vol.affine).all()
    OUTCOMES["loaded"] += 1


@FUZZ
@given(n_slices=st.integers(0, 6), mutations=st.lists(mutation, max_size=4))
@example(n_slices=1, mutations=[("flip", 0, [839])])  # pydicom NotImplementedError on a corrupt VR (found here)
def test_fuzz_dicom_series(n_slices, mutations):
    folder = _TMP / "series"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    uids = {"study": generate_uid(), "series": generate_uid(), "frame": generate_uid()}
    slices = [make_slice(i, uids) for i in range(n_slices)]
    post: list[tuple] = []
    for m in mutations:
        if not slices:
            break
        i = m[1] % len(slices)
        if m[0] == "delete" and m[2] in slices[i]:
            delattr(slices[i], m[2])
        elif m[0] == "set":
            try:
                setattr(slices[i], m[2], m[3])
            except (ValueError, TypeError, OverflowError):
                pass
        elif m[0] == "duplicate":
            slices.append(slices[i])
        else:
            post.append((m[0], i, *m[2:]))
    files = []
    for j, ds in enumerate(slices):
        f = folder / f"IM{j:04d}.dcm"
        try:
            ds.save_as(f, enforce_file_format=True)
        except Exception:  # noqa: BLE001 - pydicom refuses to write some mutations; write junk instead
            f.write_bytes(b"DICM?" * 10)
        files.append(f)
    for kind, i, *rest in post:
        f = files[i]
        if kind == "junk":
            f.write_bytes(rest[0])
        elif kind == "truncate":
            f.write_bytes(f.read_bytes()[: rest[0]])
        elif kind == "flip":
            raw = bytearray(f.read_bytes())
            for pos in rest[0]:
                if raw:
                    raw[pos % len(raw)] ^= 0xA5
            f.write_bytes(bytes(raw))
        elif kind == "subfolder":
            (folder / "sub").mkdir(exist_ok=True)
            if f.parent == folder:
                files[i] = f.rename(folder / "sub" / f.name)
    check_loader(folder)
    COUNTS["dicom_series"] = COUNTS.get("dicom_series", 0) + 1


def test_valid_series_loads():
    """The generator itself makes a series the loader accepts (so the fuzzing starts from valid input)."""
    folder = _TMP / "valid"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    uids = {"study": generate_uid(), "series": generate_uid(), "frame": generate_uid()}
    for i in range(5):
        make_slice(i, uids).save_as(folder / f"IM{i}.dcm", enforce_file_format=True)
    vol = load_volume(folder, role="FLAIR")
    assert sorted(vol.shape) == [5, 9, 10]
    assert sorted(round(z, 3) for z in vol.zooms) == [1.0, 1.0, 2.0]
