"""Reading one DICOM series from a folder into a :class:`Volume`.

Slices are sorted by their position along the slice normal (not by file name
or InstanceNumber), and the voxel-to-world affine is built from
ImagePositionPatient / ImageOrientationPatient / PixelSpacing in DICOM's
LPS patient space, then converted to RAS.  Array axes: ``data[i, j, k]`` with
``i`` the column index, ``j`` the row index and ``k`` the sorted slice.

Anything unusable (several series, missing or hostile geometry tags, uneven
slice spacing, undecodable pixels) raises :class:`InputError` naming the
folder or file.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import MAX_AXIS, MAX_VOXELS, check_affine
from .volume import Volume

log = logging.getLogger(__name__)

#: relative tolerance on equal slice spacing.
SPACING_TOL = 0.02
#: LPS (DICOM) <-> RAS (nibabel) flip.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class _Slice:
    path: Path
    ds: object
    position: np.ndarray
    distance: float


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _floats(ds: object, tag: str, n: int, path: Path) -> np.ndarray:
    value = getattr(ds, tag, None)
    if value is None:
        raise InputError(path, f"DICOM tag {tag} is missing")
    values = list(value) if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)) else [value]
    try:
        arr = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(path, f"DICOM tag {tag} is not numeric ({_one_line(exc)})") from exc
    if arr.size != n or not np.all(np.isfinite(arr)):
        raise InputError(path, f"DICOM tag {tag} must hold {n} finite numbers, got {arr.tolist()}")
    return arr


def _read_headers(folder: Path) -> list[tuple[Path, object]]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    headers = []
    for path in files:
        if path.name.upper() == "DICOMDIR":
            continue
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        except (InvalidDicomError, EOFError):
            log.debug("skipping %s: not a DICOM file", path)
            continue
        except Exception as exc:  # noqa: BLE001 - pydicom raises assorted errors on broken files
            raise InputError(path, f"DICOM file cannot be read ({_one_line(exc)})") from exc
        if "Rows" not in ds and "ImagePositionPatient" not in ds:
            log.debug("skipping %s: DICOM without an image (report, presentation state, ...)", path)
            continue
        headers.append((path, ds))
    return headers


def _series_key(ds: object) -> str:
    uid = getattr(ds, "SeriesInstanceUID", None)
    return str(uid) if uid else "(no SeriesInstanceUID)"


def _describe(key: str, items: list[tuple[Path, object]]) -> str:
    ds = items[0][1]
    number = getattr(ds, "SeriesNumber", "?")
    desc = str(getattr(ds, "SeriesDescription", "") or "").strip() or "no description"
    return f"series {number} '{desc}' ({len(items)} files, UID {key})"


def load_dicom_series(folder: Path, role: str = "image") -> Volume:
    """Load the single DICOM series in ``folder`` (searched recursively) as a RAS Volume."""
    folder = Path(folder)
    try:
        import pydicom  # noqa: F401
    except ImportError as exc:  # pragma: no cover - pydicom is a dependency
        raise InputError(folder, "reading DICOM needs pydicom (pip install pydicom)") from exc
    headers = _read_headers(folder)
    if not headers:
        raise InputError(folder, f"{role} folder holds no DICOM image files")
    groups: dict[str, list[tuple[Path, object]]] = {}
    for path, ds in headers:
        groups.setdefault(_series_key(ds), []).append((path, ds))
    if len(groups) > 1:
        listing = "; ".join(_describe(k, v) for k, v in sorted(groups.items(), key=lambda kv: str(kv[0])))
        raise InputError(folder, f"{role} folder holds {len(groups)} DICOM series, give a folder with one: {listing}")
    (uid, items), = groups.items()
    slices, shape2d, row_dir, col_dir, spacing = _geometry(items, folder, role)
    data = np.empty((shape2d[1], shape2d[0], len(slices)), dtype=np.float32)
    for k, sl in enumerate(slices):
        data[:, :, k] = _pixels(sl.path, shape2d).T
    step = (slices[-1].position - slices[0].position) / (len(slices) - 1)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing[1]   # along a row: increasing column index i
    lps[:3, 1] = col_dir * spacing[0]   # down a column: increasing row index j
    lps[:3, 2] = step
    lps[:3, 3] = slices[0].position
    affine = _LPS_TO_RAS @ lps
    check_affine(folder, affine, role)
    if not np.all(np.isfinite(data)):
        raise InputError(folder, f"{role} DICOM pixels contain NaN or infinite values after rescaling")
    log.info("DICOM %s: %d slices %dx%d, series %s", folder, len(slices), shape2d[1], shape2d[0], uid)
    return Volume(data, affine, folder, {"role": role, "dicom_series_uid": uid})


def _geometry(items: list[tuple[Path, object]], folder: Path, role: str):
    first_path, first = items[0]
    iop = _floats(first, "ImageOrientationPatient", 6, first_path)
    row_dir, col_dir = iop[:3], iop[3:]
    if not (0.99 < np.linalg.norm(row_dir) < 1.01 and 0.99 < np.linalg.norm(col_dir) < 1.01) \
            or abs(float(row_dir @ col_dir)) > 0.01:
        raise InputError(first_path, f"ImageOrientationPatient {iop.tolist()} is not two orthogonal unit vectors")
    row_dir, col_dir = row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir)
    normal = np.cross(row_dir, col_dir)
    spacing = _floats(first, "PixelSpacing", 2, first_path)
    if np.any(spacing <= 0) or np.any(spacing > 1000) or np.any(spacing < 1e-4):
        raise InputError(first_path, f"PixelSpacing {spacing.tolist()} is not a usable voxel size (mm)")
    try:
        rows, cols = int(first.Rows), int(first.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(first_path, "DICOM Rows/Columns are missing or invalid") from exc
    if not (1 <= rows <= MAX_AXIS and 1 <= cols <= MAX_AXIS):
        raise InputError(first_path, f"DICOM image size {rows}x{cols} is outside 1-{MAX_AXIS}")
    if int(getattr(first, "NumberOfFrames", 1) or 1) > 1:
        raise InputError(first_path, "multi-frame (enhanced) DICOM is not supported; export one file per slice")
    slices = []
    for path, ds in items:
        other = _floats(ds, "ImageOrientationPatient", 6, path)
        if not np.allclose(other, iop, atol=1e-3):
            raise InputError(path, f"slice orientation {other.tolist()} differs from the series' {iop.tolist()}")
        if (getattr(ds, "Rows", None), getattr(ds, "Columns", None)) != (rows, cols):
            raise InputError(path, f"slice size differs from the series' {rows}x{cols}")
        pos = _floats(ds, "ImagePositionPatient", 3, path)
        slices.append(_Slice(path, ds, pos, float(pos @ normal)))
    if len(slices) < 2:
        raise InputError(folder, f"{role} DICOM series has a single slice (2-D); a 3-D volume is needed")
    if len(slices) > MAX_AXIS or rows * cols * len(slices) > MAX_VOXELS:
        raise InputError(folder, f"{role} DICOM series is too large ({len(slices)} slices of {rows}x{cols})")
    slices.sort(key=lambda s: s.distance)
    gaps = np.diff([s.distance for s in slices])
    if np.any(np.abs(gaps) < 1e-3):
        dup = [s.path.name for s, g in zip(slices[1:], gaps) if abs(g) < 1e-3][:3]
        raise InputError(folder, f"{role} DICOM series has several slices at the same position (e.g. {dup}); "
                                 "is it a multi-echo or time series?")
    if gaps.max() - gaps.min() > SPACING_TOL * gaps.mean():
        raise InputError(folder, f"{role} DICOM slice spacing is uneven ({gaps.min():.3f}-{gaps.max():.3f} mm): "
                                 "missing slices or a mixed series")
    return slices, (rows, cols), row_dir, col_dir, spacing


def _pixels(path: Path, shape2d: tuple[int, int]) -> np.ndarray:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
        samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
        if samples != 1:
            raise InputError(path, f"SamplesPerPixel is {samples}; only greyscale MR images are supported")
        arr = np.asarray(ds.pixel_array, dtype=np.float32)
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - pixel decoding fails in many ways on broken files
        raise InputError(path, f"DICOM pixel data cannot be decoded ({_one_line(exc)})") from exc
    if arr.shape != shape2d:
        raise InputError(path, f"DICOM pixel array has shape {arr.shape}, expected {shape2d}")
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0 or abs(slope) > 1e12 or abs(intercept) > 1e12:
        raise InputError(path, f"RescaleSlope/Intercept {slope}/{intercept} are not usable")
    if str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).strip() == "MONOCHROME1":
        arr = arr.max() - arr
    return arr * slope + intercept
