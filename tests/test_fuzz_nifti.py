"""Property-based fuzzing of the NIfTI loader (hypothesis).

Property: :func:`mslesion.io.load_volume` on ANY file either returns a
usable Volume (3-D, finite float32 voxels, invertible affine, not constant)
or raises :class:`~mslesion.errors.InputError` naming the file.  Anything
else (ValueError, struct.error, MemoryError, a hang, ...) is a bug.

Example counts: ``MSLESION_FUZZ_EXAMPLES`` (default 300 per property) - the
``ci`` profile; set it higher for a long local run.
"""
from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mslesion.errors import InputError
from mslesion.io import load_volume
from mslesion.volume import Volume

EXAMPLES = int(os.environ.get("MSLESION_FUZZ_EXAMPLES", "300"))
settings.register_profile("mslesion-fuzz", max_examples=EXAMPLES, deadline=None, derandomize=False,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ = settings.get_profile("mslesion-fuzz")

#: examples run per property in this process (read by scripts/robustness_report.py).
COUNTS: dict[str, int] = {}
OUTCOMES: dict[str, int] = {"loaded": 0, "refused": 0}

_TMP = Path(tempfile.mkdtemp(prefix="mslesion-fuzz-nifti-"))

ints = st.one_of(st.integers(-3, 10), st.integers(-(2**15), 2**15 - 1), st.sampled_from([0, 1, 2, 7, 8, 32767, -1]))
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, -0.0, -1.0, 1.0, 1e-30, 1e30, float("nan"), float("inf"), 3.4e38]),
)
DTYPE_CODES = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 9999, -5]

FIELDS = {
    "dim": st.tuples(st.integers(0, 7), ints),
    "pixdim": st.tuples(st.integers(0, 7), floats),
    "datatype": st.sampled_from(DTYPE_CODES),
    "bitpix": st.sampled_from([0, 1, 8, 16, 24, 32, 64, 128, 7]),
    "vox_offset": st.one_of(st.sampled_from([0.0, 348.0, 352.0, 351.0, 1e9, -4.0]), st.floats(-1e3, 1e6, width=32)),
    "scl_slope": floats,
    "scl_inter": floats,
    "qform_code": st.integers(-2, 5),
    "sform_code": st.integers(-2, 5),
    "quatern_b": floats,
    "quatern_c": floats,
    "quatern_d": floats,
    "qoffset_x": floats,
    "srow_x": st.tuples(st.integers(0, 3), floats),
    "srow_y": st.tuples(st.integers(0, 3), floats),
    "srow_z": st.tuples(st.integers(0, 3), floats),
    "sizeof_hdr": st.sampled_from([0, 348, 540, 349, -1]),
    "magic": st.sampled_from([b"n+1", b"ni1", b"n+2", b"", b"\xff\xfe\x00", b"n+1\x00"]),
    "dim_info": st.integers(0, 255),
    "xyzt_units": st.integers(0, 255),
}


def _base_image(shape: tuple[int, ...], dtype: str, seed: int) -> nib.Nifti1Image:
    rng = np.random.default_rng(seed)
    data = (rng.random(shape) * 200 - 20).astype(dtype)
    aff = np.diag([1.0, 1.2, 2.5, 1.0])
    aff[:3, 3] = [-5, 4, 3]
    return nib.Nifti1Image(data, aff)


def _header_bytes(img: nib.Nifti1Image, edits: list[tuple[str, object]]) -> bytes:
    """Header + 4 extension bytes + data, with raw (unrepaired) field edits applied."""
    hdr = img.header.copy()
    hdr.set_data_offset(352)
    data = np.asanyarray(img.dataobj)
    for name, value in edits:
        try:
            if isinstance(value, tuple):  # (index, value) into an array field
                hdr[name][value[0]] = value[1]
            else:
                hdr[name] = value
        except (OverflowError, ValueError, TypeError):
            continue
    return hdr.binaryblock + b"\x00" * 4 + data.tobytes(order="F")


def check_loader(path: Path) -> Volume | None:
    """The property: a usable Volume or an InputError naming the file; nothing else."""
    try:
        vol = load_volume(path, role="FLAIR")
    except InputError as exc:
        assert exc.path is not None and str(exc).startswith(str(exc.path)), str(exc)
        assert exc.problem and "\n" not in exc.problem
        OUTCOMES["refused"] += 1
        return None
    assert vol.data.ndim == 3 and vol.data.dtype == np.float32
    assert np.isfinite(vol.data).all()
    assert vol.data.min() < vol.data.max()
    assert abs(np.linalg.det(vol.affine[:3, :3])) > 0 and np.isfinite(vol.affine).all()
    assert all(z > 0 for z in vol.zooms)
    OUTCOMES["loaded"] += 1
    return vol


def _count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


@FUZZ
@given(
    shape=st.sampled_from([(5, 6, 7), (4, 4, 4, 1), (3, 5, 2), (6, 6), (4, 4, 4, 2), (2, 3, 4, 1, 2)]),
    dtype=st.sampled_from(["int16", "uint8", "float32", "float64", "int32"]),
    edits=st.lists(st.one_of(*[st.tuples(st.just(k), v) for k, v in FIELDS.items()]), max_size=5),
    compress=st.booleans(),
    cut=st.one_of(st.just(0), st.integers(1, 400)),
    seed=st.integers(0, 3),
)
def test_fuzz_header_fields(shape, dtype, edits, compress, cut, seed):
    blob = _header_bytes(_base_image(shape, dtype, seed), edits)
    if cut:
        blob = blob[: max(0, len(blob) - cut)]
    path = _TMP / ("hdr.nii.gz" if compress else "hdr.nii")
    path.write_bytes(gzip.compress(blob) if compress else blob)
    check_loader(path)
    _count("nifti_header_fields")


@FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 255)), min_size=1, max_size=12),
    compress_after=st.booleans(),
    truncate_to=st.one_of(st.none(), st.integers(0, 3000)),
)
def test_fuzz_byte_flips(flips, compress_after, truncate_to):
    """Random byte corruption of a valid file, raw or inside the gzip stream."""
    img = _base_image((9, 8, 7), "int16", 0)
    raw = bytearray(_header_bytes(img, []))
    if compress_after:
        for pos, x in flips:
            raw[pos % len(raw)] ^= x
        blob = gzip.compress(bytes(raw))
    else:
        blob = bytearray(gzip.compress(bytes(raw)))
        for pos, x in flips:
            blob[pos % len(blob)] ^= x
        blob = bytes(blob)
    if truncate_to is not None:
        blob = blob[:truncate_to]
    path = _TMP / "flip.nii.gz"
    path.write_bytes(blob)
    check_loader(path)
    _count("nifti_byte_flips")


@FUZZ
@given(
    dims=st.lists(st.integers(-5, 2**40), min_size=3, max_size=7),
    dtype=st.sampled_from([np.float32, np.int16, np.float64, np.uint8]),
    payload=st.integers(0, 4096),
)
def test_fuzz_nifti2_dimensions(dims, dtype, payload):
    """NIfTI-2 has 64-bit dimensions: absurd sizes are refused before any allocation."""
    hdr = nib.Nifti2Header()
    hdr.set_data_dtype(dtype)
    hdr["dim"][0] = len(dims)
    hdr["dim"][1: len(dims) + 1] = dims
    hdr["pixdim"][1:4] = 1.0
    hdr.set_data_offset(544)
    path = _TMP / "n2.nii"
    path.write_bytes(hdr.binaryblock + b"\x00" * 4 + np.random.default_rng(0).bytes(payload))
    check_loader(path)
    _count("nifti2_dimensions")
