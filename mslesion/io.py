"""Checked loading and atomic saving of volumes.

Every problem with an input raises :class:`~mslesion.errors.InputError`
naming the file and what is wrong with it.  Header checks run before any
voxel data is read, so absurd declared sizes never allocate memory.
"""
from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from .atomic import write_nifti
from .errors import InputError
from .limits import MAX_AXIS, MAX_VOXELS, check_affine
from .volume import Volume

log = logging.getLogger(__name__)

#: two contrasts must share at least this fraction of the smaller one's world box.
MIN_OVERLAP = 0.5

_NIFTI_SUFFIXES = (".nii", ".nii.gz", ".img", ".hdr")


def load_volume(path: str | Path, *, role: str = "image", allow_empty: bool = False) -> Volume:
    """Load a NIfTI file or a folder holding one DICOM series, with all checks.

    ``role`` ("FLAIR", "T1", ...) only makes messages clearer.  ``allow_empty`` accepts an
    all-zero image (a lesion mask with no lesion); images are refused when empty.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, f"{role} file does not exist")
    if path.is_dir():
        try:
            from .dicom import load_dicom_series
        except ImportError as exc:
            raise InputError(path, f"{role} is a folder, and DICOM reading is not available ({_short(exc)})") from exc
        try:
            vol = load_dicom_series(path, role=role)
        except (InputError, MemoryError):
            raise
        except Exception as exc:  # pydicom raises assorted errors on hostile files (found by fuzzing)
            log.debug("DICOM reader failed on %s", path, exc_info=True)
            raise InputError(path, f"{role} DICOM series cannot be read ({type(exc).__name__}: {_short(exc)})") from exc
    elif not path.is_file():
        raise InputError(path, f"{role} is not a regular file (a device, pipe or socket cannot be read as an image)")
    else:
        vol = _load_nifti(path, role)
    check_voxels(vol, role, allow_empty=allow_empty)
    log.info("loaded %s %s shape=%s zooms=%s", role, path, vol.shape, tuple(round(z, 3) for z in vol.zooms))
    return vol


def _load_nifti(path: Path, role: str) -> Volume:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise InputError(path, f"cannot read {role} file ({exc.strerror or exc})") from exc
    if len(head) < 4:
        raise InputError(path, f"{role} file is empty or too short to be an image ({len(head)} bytes)")
    if not any(path.name.lower().endswith(s) for s in _NIFTI_SUFFIXES) and head[:2] != b"\x1f\x8b":
        # allow unusual names if the content is NIfTI; nibabel decides below
        pass
    try:
        img = nib.load(str(path))
    except nib.filebasedimages.ImageFileError as exc:
        raise InputError(path, f"{role} is not a NIfTI image ({_short(exc)})") from exc
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise InputError(path, f"{role} file is corrupt or truncated ({_short(exc)})") from exc
    except Exception as exc:  # nibabel raises assorted errors on hostile headers
        raise InputError(path, f"{role} header cannot be parsed ({_short(exc)})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(path, f"{role} is a {type(img).__name__}, not a NIfTI image")
    shape = check_header_shape(path, img.header.get_data_shape(), role)
    zooms = _raw_zooms(path, img) or img.header.get_zooms()[:3]
    if any(not np.isfinite(z) or z <= 0 for z in zooms):
        raise InputError(path, f"{role} has zero, negative or invalid voxel sizes {tuple(float(z) for z in zooms)}")
    affine = img.affine
    if affine is None or not np.all(np.isfinite(affine)):
        raise InputError(path, f"{role} has a non-finite affine")
    check_affine(path, affine, role)
    check_data_type(path, img.header.get_data_dtype(), role)
    check_declared_size(path, img, role)
    try:
        data = np.asanyarray(img.dataobj)
    except MemoryError as exc:
        raise InputError(path, f"{role} is too large to load into memory") from exc
    except Exception as exc:  # truncated data, bad gzip stream, wrong sizes
        raise InputError(path, f"{role} voxel data is corrupt or truncated ({_short(exc)})") from exc
    if data.size != int(np.prod(shape)):
        raise InputError(path, f"{role} holds {data.size} voxels but its header declares {shape}")
    data = np.asarray(data).reshape(shape)
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise InputError(path, f"{role} has unsupported voxel type {data.dtype}; a real-valued image is needed")
    with np.errstate(over="ignore", invalid="ignore"):
        data = data.astype(np.float32, copy=False)
    return Volume(data, affine, path, {"role": role})


def _raw_zooms(path: Path, img: nib.Nifti1Image) -> tuple[float, ...] | None:
    """Voxel sizes as written in the file (nibabel silently repairs negative ones on load)."""
    try:
        with nib.openers.ImageOpener(str(path)) as fh:
            raw = type(img.header).from_fileobj(fh, check=False)
        return tuple(float(z) for z in raw["pixdim"][1:4])
    except Exception:
        return None


def check_header_shape(path: Path, shape: tuple[int, ...], role: str) -> tuple[int, int, int]:
    """Return the 3-D shape a header declares, or raise if it is not a usable 3-D image."""
    shape = tuple(int(s) for s in shape)
    if any(s <= 0 for s in shape):
        raise InputError(path, f"{role} header declares an empty or negative dimension {shape}")
    if len(shape) < 3 or sum(s > 1 for s in shape) < 2:
        raise InputError(path, f"{role} is {len(shape)}-D with shape {shape}; a 3-D volume is needed")
    if len(shape) == 3 and min(shape) <= 1:
        raise InputError(path, f"{role} has shape {shape}: a single slice (2-D) cannot be analysed")
    extra = shape[3:]
    if any(s > 1 for s in extra):
        raise InputError(
            path, f"{role} has shape {shape}: {len(shape)}-D with {int(np.prod(extra))} volumes; give one 3-D volume"
        )
    shape3 = shape[:3]
    if min(shape3) < 2:
        raise InputError(path, f"{role} has shape {shape}: a single slice (2-D) cannot be analysed")
    if max(shape3) > MAX_AXIS or int(np.prod(shape3, dtype=np.int64)) > MAX_VOXELS:
        raise InputError(path, f"{role} declares dimensions {shape3}, beyond the supported {MAX_AXIS} voxels per axis")
    return shape3  # type: ignore[return-value]


def check_data_type(path: Path, dtype: np.dtype, role: str) -> None:
    """Refuse voxel types that are not real numbers (complex, RGB, ...)."""
    dtype = np.dtype(dtype)
    if dtype.fields is not None or dtype.kind not in "biuf":
        raise InputError(path, f"{role} has unsupported voxel type {dtype}; a real-valued image is needed")


def check_declared_size(path: Path, img: nib.Nifti1Image, role: str) -> None:
    """Refuse a file holding fewer bytes than its header declares, before reading voxels.

    Plain files are compared by size; gzip files first by the gzip trailer and,
    if that disagrees (truncated or multi-member stream), by streaming through
    the compressed data without keeping it.
    """
    hdr = img.header
    offset = int(hdr.get_data_offset())
    n_vox = int(np.prod([int(s) for s in hdr.get_data_shape()], dtype=np.int64))
    expected = offset + n_vox * np.dtype(hdr.get_data_dtype()).itemsize
    image_file = img.file_map["image"].filename or str(path)
    image_path = Path(image_file)
    try:
        size = image_path.stat().st_size
        with open(image_path, "rb") as fh:
            magic = fh.read(2)
    except OSError as exc:
        raise InputError(image_path, f"cannot read {role} voxel data ({exc.strerror or exc})") from exc
    if magic != b"\x1f\x8b":
        held = size
    else:
        held = _gzip_size_at_least(image_path, expected, role)
    if held < expected:
        raise InputError(
            image_path,
            f"{role} file is corrupt or truncated: its header declares {expected} bytes of data "
            f"but the file holds only {held}",
        )


def _gzip_size_at_least(path: Path, expected: int, role: str) -> int:
    """Uncompressed size of a gzip file, counted up to ``expected`` bytes (no big allocation)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(-4, 2)
            trailer = int.from_bytes(fh.read(4), "little")
    except OSError:
        trailer = -1
    if trailer == expected % 2**32 and expected < 2**32:
        return expected
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while total < expected:
                chunk = fh.read(min(1 << 22, expected - total))
                if not chunk:
                    break
                total += len(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        if total >= expected:
            return total
        raise InputError(path, f"{role} file is corrupt or truncated (gzip stream: {_short(exc)})") from exc
    return total


def load_mask(path: str | Path, role: str = "lesion") -> Volume:
    """Load a binary mask (any nonzero voxel is in it); an empty mask is valid."""
    return load_volume(path, role=f"{role} mask", allow_empty=True)


def check_voxels(vol: Volume, role: str, allow_empty: bool = False) -> None:
    """Refuse NaN/inf, all-zero (unless ``allow_empty``) and constant images."""
    data = vol.data
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(data.size - np.count_nonzero(finite))
        raise InputError(vol.path, f"{role} contains {bad} NaN or infinite voxels")
    if any(z <= 0 for z in vol.zooms):
        raise InputError(vol.path, f"{role} has zero or negative voxel sizes {vol.zooms}")
    lo, hi = float(data.min()), float(data.max())
    if lo == hi == 0.0 and not allow_empty:
        raise InputError(vol.path, f"{role} image is all zeros")
    if lo == hi != 0.0:
        raise InputError(vol.path, f"{role} image is constant (every voxel is {lo:g})")


def world_overlap_fraction(a: Volume, b: Volume) -> float:
    """Fraction of the smaller world bounding box shared by both volumes."""
    amin, amax = a.world_bounds()
    bmin, bmax = b.world_bounds()
    pad_a = np.asarray(a.zooms) / 2
    pad_b = np.asarray(b.zooms) / 2
    amin, amax, bmin, bmax = amin - pad_a, amax + pad_a, bmin - pad_b, bmax + pad_b
    inter = np.clip(np.minimum(amax, bmax) - np.maximum(amin, bmin), 0, None)
    vol_inter = float(np.prod(inter))
    smaller = min(float(np.prod(amax - amin)), float(np.prod(bmax - bmin)))
    return vol_inter / smaller if smaller > 0 else 0.0


def check_same_space(reference: Volume, other: Volume, role: str, ref_role: str = "FLAIR") -> None:
    """Raise if ``other`` does not cover the same part of world space as ``reference``."""
    frac = world_overlap_fraction(reference, other)
    if frac < MIN_OVERLAP:
        raise InputError(
            other.path,
            f"{role} does not cover the same part of world space as the {ref_role} "
            f"{reference.path} (overlap {frac:.0%}); is it from another subject or session?",
        )


def save_volume(vol: Volume, path: str | Path, dtype: np.dtype | type | None = None) -> Path:
    """Write a volume atomically (temp file, then rename)."""
    img = vol.to_nifti(dtype)
    if dtype is not None and np.issubdtype(np.dtype(dtype), np.integer):
        img.header.set_slope_inter(1, 0)
    return write_nifti(path, img)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
