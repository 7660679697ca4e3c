"""Memory guard: sizes parse strictly, the estimate is read from the header and is an upper bound."""
from __future__ import annotations

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from mslesion.errors import InputError, ResourceError
from mslesion.memory import (
    available_bytes,
    check_memory,
    default_limit,
    estimate_peak_bytes,
    parse_size,
    read_header_shape,
    working_voxels,
)

from .factories import make_phantom, save

GB = 1024**3


@pytest.mark.parametrize("text, expected", [
    ("4G", 4 * GB), ("4GB", 4 * GB), ("4gib", 4 * GB), ("512M", 512 * 1024**2), ("1.5g", int(1.5 * GB)),
    ("2048MiB", 2 * GB), ("3", 3 * GB), ("100k", 102400), ("1T", 1024 * GB), ("  8 G ", 8 * GB),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1G", "0", "0M", "nan", "inf", "4X", "G", "1e400G", "4 G B"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_estimate_grows_with_native_and_working_grid():
    small = estimate_peak_bytes((256, 256, 150), (1, 1, 1))
    fine = estimate_peak_bytes((512, 512, 300), (0.5, 0.5, 0.6))  # same field of view, 8x native voxels
    coarse_fov = estimate_peak_bytes((512, 512, 300), (1, 1, 1))  # 8x native and 8x working voxels
    assert small < fine < coarse_fov
    assert working_voxels((512, 512, 300), (0.5, 0.5, 0.6)) == 256 * 256 * 180
    assert estimate_peak_bytes((64, 64, 48), (1, 1, 1), n_contrasts=3) > estimate_peak_bytes((64, 64, 48), (1, 1, 1))
    plain = estimate_peak_bytes((64, 64, 48), (1, 1, 1))
    assert estimate_peak_bytes((64, 64, 48), (1, 1, 1), trained_model=True) > plain


def test_check_memory_refuses_with_resource_error_naming_the_file(tmp_path):
    f = save(make_phantom(shape=(32, 32, 24), lesions=()).flair, tmp_path / "f.nii.gz")
    est = check_memory({"flair": f}, limit=64 * GB)
    shape, zooms, _ = read_header_shape(f)
    assert est == estimate_peak_bytes(shape, zooms)
    with pytest.raises(ResourceError, match=str(f)) as info:
        check_memory({"flair": f}, limit=est - 1)
    assert "more than the limit" in str(info.value)


def test_header_only_large_image_is_refused_without_reading_voxels(tmp_path):
    """A 1500x1500x400 float32 header (3.6 GB of data) over a file holding 16 bytes: refused from the header."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((1500, 1500, 400))
    hdr.set_data_dtype(np.float32)
    p = tmp_path / "big.nii"
    p.write_bytes(hdr.binaryblock + b"\x00" * 4 + b"\x01" * 16)
    assert read_header_shape(p)[0] == (1500, 1500, 400)
    with pytest.raises(ResourceError, match="big.nii"):
        check_memory({"flair": p}, limit=8 * GB)


def test_absurd_dimensions_are_input_errors(tmp_path):
    hdr = nib.Nifti2Header()
    hdr.set_data_shape((100_000, 100_000, 100_000))
    hdr.set_data_dtype(np.float32)
    p = tmp_path / "absurd.nii"
    p.write_bytes(hdr.binaryblock + b"\x00" * 4)
    with pytest.raises(InputError, match="dimensions"):
        check_memory({"flair": p}, limit=1024 * GB)


def test_default_limit_is_most_of_available_memory():
    assert 0 < default_limit() < available_bytes()


@pytest.mark.slow
def test_estimate_is_an_upper_bound_of_measured_peak(tmp_path):
    """Run analyze on a 192x192x120 image in a child process; its peak RSS must stay under the estimate."""
    shape, zooms = (192, 192, 120), (1.0, 1.0, 1.2)
    ph = make_phantom(shape=shape, zooms=zooms, lesions=((96, 120, 60, 4.0), (70, 90, 60, 3.0)))
    f = save(ph.flair, tmp_path / "flair.nii.gz")
    est = estimate_peak_bytes(*read_header_shape(f)[:2])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from mslesion.cli import entry_point; entry_point()", "analyze", "--flair", str(f),
         "--out", str(tmp_path / "out"), "--model", "baseline"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode()  # type: ignore[union-attr]
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, err
    peak = usage.ru_maxrss * 1024
    print(f"measured peak {peak / GB:.2f} GB, estimate {est / GB:.2f} GB")
    assert peak <= est, f"peak {peak / GB:.2f} GB above the estimate {est / GB:.2f} GB: recalibrate mslesion/memory.py"
