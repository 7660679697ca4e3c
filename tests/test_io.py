"""Checked loading: every bad input raises InputError naming the file and the problem."""
from __future__ import annotations

import gzip
import struct

import nibabel as nib
import numpy as np
import pytest

from mslesion.errors import InputError
from mslesion.io import check_same_space, load_volume, save_volume, world_overlap_fraction
from mslesion.volume import Volume

from .factories import make_affine, make_phantom, save


def _write(tmp_path, data, affine=None, name="img.nii.gz"):
    return save(np.asarray(data, np.float32), tmp_path / name, affine if affine is not None else np.eye(4))


def _text_file(tmp_path):
    p = tmp_path / "x.nii.gz"
    p.write_bytes(b"hello, not an image")
    return p


def _bad_pixdim(tmp_path, value):
    """A NIfTI-1 file whose second voxel size is ``value`` (patched into the raw header)."""
    img = nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 8)).astype(np.float32), np.eye(4))
    p = tmp_path / f"pixdim{value}.nii"
    nib.save(img, str(p))
    raw = bytearray(p.read_bytes())
    raw[84:88] = struct.pack("<f", value)  # pixdim[2]
    raw[252:254] = struct.pack("<h", 0)  # qform_code 0
    p.write_bytes(bytes(raw))
    return p


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda t: t / "missing.nii.gz", "does not exist"),
        (_text_file, "NIfTI"),
        (lambda t: _write(t, np.random.default_rng(0).random((10, 10, 10, 3))), "3 volumes"),
        (lambda t: _write(t, np.random.default_rng(0).random((10, 10))), "2-D"),
        (lambda t: _write(t, np.random.default_rng(0).random((10, 10, 1))), "2-D"),
        (lambda t: _write(t, np.full((8, 8, 8), np.nan)), "NaN"),
        (lambda t: _write(t, np.where(np.eye(8)[:, :, None] > 0, np.inf, 1.0) * np.ones((8, 8, 8))), "infinite"),
        (lambda t: _write(t, np.zeros((8, 8, 8))), "all zeros"),
        (lambda t: _write(t, np.full((8, 8, 8), 7.0)), "constant"),
        (lambda t: _bad_pixdim(t, 0.0), "voxel size"),
        (lambda t: _bad_pixdim(t, -2.0), "voxel size"),
    ],
)
def test_bad_inputs_raise_input_error(tmp_path, make, fragment):
    path = make(tmp_path)
    with pytest.raises(InputError) as info:
        load_volume(path, role="FLAIR")
    assert str(path) in str(info.value)
    assert fragment.lower() in str(info.value).lower()


def test_truncated_gzip(tmp_path):
    p = _write(tmp_path, np.random.default_rng(0).random((30, 30, 30)))
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_volume(p)


def test_huge_declared_dimensions_refused_before_reading(tmp_path):
    hdr = nib.Nifti2Header()  # NIfTI-2 has 64-bit dimensions
    hdr.set_data_shape((100000, 100000, 100000))
    hdr.set_data_dtype(np.float32)
    p = tmp_path / "huge.nii"
    with open(p, "wb") as fh:
        fh.write(hdr.binaryblock + b"\x00" * 4 + b"\x00" * 64)
    with pytest.raises(InputError, match="dimensions"):
        load_volume(p)


def test_same_space_check():
    a = make_phantom(lesions=()).flair
    shifted = Volume(a.data, make_affine(origin=(500.0, 0, 0), shape=a.shape))
    assert world_overlap_fraction(a, a) == pytest.approx(1.0)
    assert world_overlap_fraction(a, shifted) == 0.0
    check_same_space(a, a, "T1")
    with pytest.raises(InputError, match="same part of world space"):
        check_same_space(a, shifted, "T1")


def test_save_is_atomic_and_leaves_no_temp(tmp_path):
    ph = make_phantom(lesions=())
    save_volume(ph.flair, tmp_path / "a.nii.gz")
    assert [p.name for p in tmp_path.iterdir()] == ["a.nii.gz"]
    with gzip.open(tmp_path / "a.nii.gz") as fh:
        assert len(fh.read()) > 348
