"""Reading one DICOM series from a folder into a :class:`Volume`.

Slices are sorted by their position along the slice normal (not by file name
or InstanceNumber), and the voxel-to-world affine is built from
ImagePositionPatient / ImageOrientationPatient / PixelSpacing in DICOM's
LPS patient space, then converted to RAS.  Enhanced (multi-frame) files are read
frame by frame: each frame's geometry comes from its per-frame functional groups,
else from the shared ones (PlanePosition, PlaneOrientation, PixelMeasures and
PixelValueTransformation sequences).  Array axes: ``data[i, j, k]`` with
``i`` the column index, ``j`` the row index and ``k`` the sorted slice.

Anything unusable (several series, missing or hostile geometry tags, uneven
slice spacing, undecodable pixels) raises :class:`InputError` naming the
folder or file.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError
from .limits import MAX_AXIS, MAX_VOXELS, check_affine
from .volume import Volume

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

#: relative tolerance on equal slice spacing.
SPACING_TOL = 0.02
#: LPS (DICOM) <-> RAS (nibabel) flip.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class _Slice:
    """One 2-D image: a single-frame file, or one frame of an enhanced multi-frame file."""

    path: Path
    frame: int | None
    orientation: np.ndarray
    position: np.ndarray
    spacing: np.ndarray
    size: tuple[int, int]
    rescale: tuple[float, float] | None  # per-frame (slope, intercept) of enhanced files
    distance: float = 0.0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _floats(ds: Dataset, tag: str, n: int, path: str | Path) -> np.ndarray:
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


def _read_headers(folder: Path) -> list[tuple[Path, Dataset]]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    headers: list[tuple[Path, Dataset]] = []
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


def _series_key(ds: Dataset) -> str:
    uid = getattr(ds, "SeriesInstanceUID", None)
    return str(uid) if uid else "(no SeriesInstanceUID)"


def _describe(key: str, items: list[tuple[Path, Dataset]]) -> str:
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
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    for path, ds in headers:
        groups.setdefault(_series_key(ds), []).append((path, ds))
    if len(groups) > 1:
        listing = "; ".join(_describe(k, v) for k, v in sorted(groups.items(), key=lambda kv: str(kv[0])))
        raise InputError(folder, f"{role} folder holds {len(groups)} DICOM series, give a folder with one: {listing}")
    (uid, items), = groups.items()
    slices, shape2d, row_dir, col_dir, spacing = _geometry(items, folder, role)
    data = np.empty((shape2d[1], shape2d[0], len(slices)), dtype=np.float32)
    for k, pixels in enumerate(_slice_pixels(slices, shape2d)):
        data[:, :, k] = pixels.T
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


def _item(seq_parent: Dataset | None, seq: str) -> Dataset | None:
    """First item of sequence ``seq`` in a functional-group item, or None."""
    value = getattr(seq_parent, seq, None) if seq_parent is not None else None
    return value[0] if value else None


def _group_attr(frame_group: Dataset, shared: Dataset | None, seq: str, tag: str) -> Dataset | None:
    """The item of ``seq`` that holds ``tag``, per-frame first, then shared."""
    for group in (frame_group, shared):
        item = _item(group, seq)
        if item is not None and tag in item:
            return item
    return None


def _frames(path: Path, ds: Dataset) -> list[_Slice]:
    """The 2-D images of one file, with their geometry."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(path, "DICOM Rows/Columns are missing or invalid") from exc
    if not (1 <= rows <= MAX_AXIS and 1 <= cols <= MAX_AXIS):
        raise InputError(path, f"DICOM image size {rows}x{cols} is outside 1-{MAX_AXIS}")
    try:
        n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"DICOM NumberOfFrames is not a number ({_one_line(exc)})") from exc
    if "PerFrameFunctionalGroupsSequence" not in ds:
        if n_frames > 1:
            raise InputError(path, f"multi-frame DICOM with {n_frames} frames but no per-frame geometry "
                                   "(PerFrameFunctionalGroupsSequence); export one file per slice")
        return [_Slice(path, None, _floats(ds, "ImageOrientationPatient", 6, path),
                       _floats(ds, "ImagePositionPatient", 3, path), _floats(ds, "PixelSpacing", 2, path),
                       (rows, cols), None)]
    per_frame = ds.PerFrameFunctionalGroupsSequence
    if len(per_frame) != n_frames or not 1 <= n_frames <= MAX_AXIS:
        raise InputError(path, f"enhanced DICOM has {len(per_frame)} per-frame groups for {n_frames} frames")
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    frames = []
    for f, group in enumerate(per_frame):
        where = f"{path} frame {f + 1}"
        pos = _group_attr(group, shared, "PlanePositionSequence", "ImagePositionPatient")
        ori = _group_attr(group, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
        pix = _group_attr(group, shared, "PixelMeasuresSequence", "PixelSpacing")
        if pos is None or ori is None or pix is None:
            missing = [n for n, v in (("PlanePosition", pos), ("PlaneOrientation", ori), ("PixelMeasures", pix))
                       if v is None]
            raise InputError(path, f"enhanced DICOM frame {f + 1} has no {'/'.join(missing)} geometry")
        rescale = None
        trans = _group_attr(group, shared, "PixelValueTransformationSequence", "RescaleSlope")
        if trans is not None:
            rescale = (float(_floats(trans, "RescaleSlope", 1, where)[0]),
                       float(_floats(trans, "RescaleIntercept", 1, where)[0]) if "RescaleIntercept" in trans else 0.0)
        frames.append(_Slice(path, f, _floats(ori, "ImageOrientationPatient", 6, where),
                             _floats(pos, "ImagePositionPatient", 3, where), _floats(pix, "PixelSpacing", 2, where),
                             (rows, cols), rescale))
    return frames


def _geometry(items: list[tuple[Path, Dataset]], folder: Path, role: str):
    slices = [sl for path, ds in items for sl in _frames(path, ds)]
    first = slices[0]
    iop = first.orientation
    row_dir, col_dir = iop[:3], iop[3:]
    if not (0.99 < np.linalg.norm(row_dir) < 1.01 and 0.99 < np.linalg.norm(col_dir) < 1.01) \
            or abs(float(row_dir @ col_dir)) > 0.01:
        raise InputError(first.path, f"ImageOrientationPatient {iop.tolist()} is not two orthogonal unit vectors")
    row_dir, col_dir = row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir)
    normal = np.cross(row_dir, col_dir)
    spacing = first.spacing
    if np.any(spacing <= 0) or np.any(spacing > 1000) or np.any(spacing < 1e-4):
        raise InputError(first.path, f"PixelSpacing {spacing.tolist()} is not a usable voxel size (mm)")
    rows, cols = first.size
    for sl in slices:
        if not np.allclose(sl.orientation, iop, atol=1e-3):
            raise InputError(sl.path, f"slice orientation {sl.orientation.tolist()} differs from the series' "
                                      f"{iop.tolist()}")
        if sl.size != (rows, cols):
            raise InputError(sl.path, f"slice size differs from the series' {rows}x{cols}")
        if not np.allclose(sl.spacing, spacing, rtol=1e-3):
            raise InputError(sl.path, f"PixelSpacing {sl.spacing.tolist()} differs from the series' {spacing.tolist()}")
        sl.distance = float(sl.position @ normal)
    if len(slices) < 2:
        raise InputError(folder, f"{role} DICOM series has a single slice (2-D); a 3-D volume is needed")
    if len(slices) > MAX_AXIS or rows * cols * len(slices) > MAX_VOXELS:
        raise InputError(folder, f"{role} DICOM series is too large ({len(slices)} slices of {rows}x{cols})")
    slices.sort(key=lambda s: s.distance)
    gaps = np.diff([s.distance for s in slices])
    if np.any(np.abs(gaps) < 1e-3):
        dup = [_name(s) for s, g in zip(slices[1:], gaps) if abs(g) < 1e-3][:3]
        raise InputError(folder, f"{role} DICOM series has several slices at the same position (e.g. {dup}); "
                                 "is it a multi-echo or time series?")
    if gaps.max() - gaps.min() > SPACING_TOL * gaps.mean():
        raise InputError(folder, f"{role} DICOM slice spacing is uneven ({gaps.min():.3f}-{gaps.max():.3f} mm): "
                                 "missing slices or a mixed series")
    return slices, (rows, cols), row_dir, col_dir, spacing


def _name(sl: _Slice) -> str:
    return sl.path.name if sl.frame is None else f"{sl.path.name} frame {sl.frame + 1}"


def _read_pixels(path: Path) -> tuple[np.ndarray, object]:
    """All frames of one file, (frames, rows, cols) float32, and its dataset."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
        samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
        if samples != 1:
            raise InputError(path, f"SamplesPerPixel is {samples}; only greyscale MR images are supported")
        arr = np.asarray(ds.pixel_array, dtype=np.float32)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - pixel decoding fails in many ways on broken files
        raise InputError(path, f"DICOM pixel data cannot be decoded ({_one_line(exc)})") from exc
    if str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).strip() == "MONOCHROME1":
        arr = arr.max() - arr
    return (arr[None] if arr.ndim == 2 else arr), ds


def _rescale(path: Path, arr: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0 or abs(slope) > 1e12 or abs(intercept) > 1e12:
        raise InputError(path, f"RescaleSlope/Intercept {slope}/{intercept} are not usable")
    return arr * slope + intercept


def _slice_pixels(slices: list[_Slice], shape2d: tuple[int, int]):
    """Yield each slice's rescaled 2-D pixels (rows, cols), decoding each multi-frame file once."""
    cache: dict[Path, tuple[np.ndarray, object]] = {}
    for sl in slices:
        if sl.frame is None:
            frames, ds = _read_pixels(sl.path)
        else:
            if sl.path not in cache:
                cache[sl.path] = _read_pixels(sl.path)
            frames, ds = cache[sl.path]
        index = sl.frame or 0
        if frames.shape[1:] != shape2d or index >= frames.shape[0]:
            raise InputError(sl.path, f"DICOM pixel array has shape {frames.shape[1:]} with {frames.shape[0]} "
                                      f"frame(s), expected {shape2d}")
        try:
            slope, intercept = sl.rescale or (float(getattr(ds, "RescaleSlope", 1) or 1),
                                              float(getattr(ds, "RescaleIntercept", 0) or 0))
        except (TypeError, ValueError) as exc:
            raise InputError(sl.path, f"RescaleSlope/Intercept are not numeric ({_one_line(exc)})") from exc
        yield _rescale(sl.path, frames[index], slope, intercept)
