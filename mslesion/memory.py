"""Memory guard: estimate an analysis' peak memory from the headers, before any voxel is read.

    limit = parse_size("4G")
    check_memory({"flair": "sub-01_FLAIR.nii.gz"}, limit)   # raises ResourceError if it would not fit

The estimate is a linear model in the number of native voxels (the input
grid, where the outputs are written) and working-grid voxels (1 mm
isotropic by default), fitted to peak RSS measured by
``scripts/bench_memory.py`` and rounded up.  The default limit is most of
the memory the operating system says is available now, so a run that would
be killed by the OOM killer is refused up front with a clear message instead.
"""
from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
from nibabel.spatialimages import SpatialImage

from .errors import InputError, ResourceError
from .io import check_header_shape

log = logging.getLogger(__name__)

#: fixed part: interpreter, libraries, template/atlas registrations, QC figures. Measured 2.20 GB peak
#: on a 192x192x120 phantom with the baseline segmenter once N4, template brain extraction and atlas
#: location were in the pipeline (tests/test_robustness_memory.py); rounded up.
BASE_BYTES = 2400 * 1024**2
#: extra resident memory when a trained (torch) model is used (measured +0.34 GB on CPU; rounded up).
MODEL_BYTES = 700 * 1024**2
#: bytes per native voxel (float32 copies: loaded data, canonical copy, probability, outputs, labels).
NATIVE_BYTES_PER_VOXEL = 32
#: bytes per working-grid voxel (each contrast, mask, z-scores, segmenter temporaries).
WORK_BYTES_PER_VOXEL = 16
#: extra bytes per working-grid voxel for each contrast beyond the FLAIR.
WORK_BYTES_PER_EXTRA_CONTRAST = 8
#: share of the available memory used as the default limit.
DEFAULT_FRACTION = 0.85

_UNITS = {"": 1024**3, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """'4G', '4GB', '512M', '1.5g', '2048MiB' -> bytes.  A bare number means GB."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtTbB]?)(?:i?[bB])?\s*", str(text))
    if not m:
        raise ValueError(f"not a memory size: {text!r} (use e.g. 4G, 512M)")
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not math.isfinite(value) or value <= 0 or value > 2**62:
        raise ValueError(f"memory size out of range: {text!r}")
    return int(value)


def format_size(n: float) -> str:
    return f"{n / 1024**3:.2f} GB"


def available_bytes() -> int:
    """Memory the OS can give us now (MemAvailable; total RAM if that is unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 1024**3


def default_limit() -> int:
    """The limit used when none is given: most of the currently available memory."""
    return int(available_bytes() * DEFAULT_FRACTION)


def read_header_shape(path: str | Path) -> tuple[tuple[int, ...], tuple[float, ...], np.dtype]:
    """Shape, voxel sizes and data type from a NIfTI header (no voxel data read)."""
    path = Path(path)
    try:
        img = cast(SpatialImage, nib.load(str(path)))  # nib.load is typed as returning any image
        hdr = img.header
        shape = tuple(int(s) for s in hdr.get_data_shape())
        zooms = tuple(float(z) for z in hdr.get_zooms()[:3])
        return shape, zooms, np.dtype(hdr.get_data_dtype())
    except Exception as exc:  # noqa: BLE001 - any unreadable header is the user's file's problem
        raise InputError(path, f"header cannot be read ({' '.join(str(exc).split())[:200]})") from exc


def working_voxels(shape: tuple[int, ...], zooms: tuple[float, ...], spacing_mm: float = 1.0) -> int:
    """Voxels of the isotropic working grid covering the same field of view."""
    return int(np.prod([max(1, math.ceil(s * abs(z) / spacing_mm)) for s, z in zip(shape[:3], zooms[:3])],
                       dtype=np.float64))


def estimate_peak_bytes(shape: tuple[int, ...], zooms: tuple[float, ...], spacing_mm: float = 1.0,
                        n_contrasts: int = 1, trained_model: bool = False) -> int:
    """Estimated peak resident memory of one analysis of a FLAIR with this header."""
    native = float(np.prod([int(s) for s in shape[:3]], dtype=np.float64))
    work = float(working_voxels(shape, zooms, spacing_mm))
    per_work = WORK_BYTES_PER_VOXEL + WORK_BYTES_PER_EXTRA_CONTRAST * max(0, n_contrasts - 1)
    total = BASE_BYTES + NATIVE_BYTES_PER_VOXEL * native + per_work * work
    # other contrasts are loaded on their own grids (float32) until resampled
    total += 8 * native * max(0, n_contrasts - 1)
    if trained_model:
        total += MODEL_BYTES
    return int(total)


def check_memory(inputs: dict[str, str | Path | None], limit: int | None = None, spacing_mm: float = 1.0,
                 trained_model: bool = False) -> int:
    """Raise ResourceError if the analysis of ``inputs`` would need more than ``limit`` bytes.

    ``limit`` None means :func:`default_limit`.  Folders (DICOM series) are
    skipped: their size is only known after reading them.  Returns the estimate.
    """
    limit = default_limit() if limit is None else int(limit)
    paths = {k: Path(v) for k, v in inputs.items() if v}
    flair = paths.get("flair")
    if flair is None or not flair.is_file():
        return 0
    try:
        shape, zooms, _ = read_header_shape(flair)
    except InputError:
        return 0  # load_volume explains exactly what is wrong with the file
    check_header_shape(flair, shape, "FLAIR")  # absurd dimensions: refused as such, before any allocation
    if any(not math.isfinite(z) or z <= 0 for z in zooms):
        return 0  # load_volume explains what is wrong with it
    est = estimate_peak_bytes(shape, zooms, spacing_mm, n_contrasts=len(paths), trained_model=trained_model)
    log.info("memory estimate %s for %s %s (limit %s)", format_size(est), flair, shape, format_size(limit))
    if est > limit:
        raise ResourceError(
            f"{flair}: analysing this {'x'.join(str(s) for s in shape[:3])} image would need about "
            f"{format_size(est)} of memory, more than the limit of {format_size(limit)}; "
            "raise --max-memory if the machine has that much, or crop/downsample the image"
        )
    return est
