"""Synthetic NIfTI factories: phantom heads with lesions of known size and place."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from mslesion.volume import Volume


@dataclass
class Phantom:
    flair: Volume
    t1: Volume
    lesions: Volume           # binary truth mask
    brain: Volume             # binary brain mask
    lesion_centres_vox: list[tuple[int, int, int]]
    lesion_radii_vox: list[float]


def make_affine(zooms=(1.0, 1.0, 1.0), origin=None, shape=(64, 64, 48)) -> np.ndarray:
    aff = np.diag([*zooms, 1.0]).astype(float)
    if origin is None:
        origin = -np.asarray(zooms) * (np.asarray(shape) - 1) / 2
    aff[:3, 3] = origin
    return aff


def ball(shape, centre, radius) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    d2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
    return d2 <= radius**2


def make_phantom(shape=(64, 64, 48), zooms=(2.5, 2.5, 3.0), lesions=((32, 40, 24, 3.0), (20, 28, 24, 2.0)),
                 seed: int = 0, scale: float = 1000.0) -> Phantom:
    """An ellipsoid 'brain' (WM/GM/ventricle) inside a 'skull' shell, with spherical lesions.

    ``lesions`` holds (i, j, k, radius) in voxels.  FLAIR: lesions bright, CSF dark.
    The default grid (64 x 64 x 48 at 2.5 x 2.5 x 3 mm) gives a head-sized phantom with a
    brain of about 850 ml, so plausibility checks treat it as a brain.
    """
    rng = np.random.default_rng(seed)
    affine = make_affine(zooms, shape=shape)
    grid = np.indices(shape).astype(float)
    c = (np.asarray(shape) - 1) / 2
    r = np.asarray(shape) * 0.38
    rr = np.sqrt(sum(((grid[i] - c[i]) / r[i]) ** 2 for i in range(3)))
    brain = rr <= 1.0
    wm = rr <= 0.8
    vent = np.sqrt(sum(((grid[i] - c[i]) / (r[i] * (0.18, 0.3, 0.25)[i])) ** 2 for i in range(3))) <= 1.0
    skull = (rr > 1.08) & (rr <= 1.22)
    flair = np.zeros(shape, np.float32)
    flair[skull] = 0.6
    flair[brain] = 0.55  # GM
    flair[wm] = 0.45
    flair[vent] = 0.1
    t1 = np.zeros(shape, np.float32)
    t1[skull] = 0.3
    t1[brain] = 0.5
    t1[wm] = 0.8
    t1[vent] = 0.15
    truth = np.zeros(shape, bool)
    centres, radii = [], []
    for i, j, k, rad in lesions:
        b = ball(shape, (i, j, k), rad) & brain & ~vent
        truth |= b
        centres.append((i, j, k))
        radii.append(rad)
    flair[truth] = 1.0
    t1[truth] = 0.35
    noise = rng.normal(0, 0.02, shape).astype(np.float32)
    flair = np.clip(flair + noise * (flair > 0), 0, None) * scale
    t1 = np.clip(t1 + noise * (t1 > 0), 0, None) * scale
    mk = lambda a: Volume(a.astype(np.float32), affine)  # noqa: E731
    return Phantom(mk(flair), mk(t1), mk(truth.astype(np.float32)), mk(brain.astype(np.float32)), centres, radii)


def save(vol: Volume | np.ndarray, path: Path, affine: np.ndarray | None = None, dtype=np.float32) -> Path:
    """Write a Volume (or raw array + affine) as NIfTI without any checks."""
    if isinstance(vol, Volume):
        data, affine = vol.data, vol.affine
    else:
        data = vol
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), affine if affine is not None else np.eye(4))
    nib.save(img, str(path))
    return Path(path)


def mr_dataset(study_uid: str, series_uid: str, frame_uid: str, patient_id: str = "TEST"):
    """A one-slice MR DICOM dataset with file meta and identifying UIDs; geometry and pixels left to the caller."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "MR", patient_id
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
    return ds


def compare_shifted_phantom_pair(tmp_path: Path):
    """`compare_scans` on the phantom pair of ``test_longitudinal`` with the follow-up shifted in world space.

    Baseline model, no N4, no skull stripping (the baseline's phantom brain mask is given); the
    outputs land in ``tmp_path / "out"``. Returns the ``CompareResult``.
    """
    from mslesion.longitudinal import CompareOptions, compare_scans
    from mslesion.pipeline import AnalyzeOptions
    from mslesion.preprocess import PreprocessOptions

    from .test_longitudinal import _pair

    b, f, f1 = _pair()
    base = save(b.flair, tmp_path / "base.nii.gz")
    brain = save(b.brain, tmp_path / "brain.nii.gz", dtype=np.uint8)
    aff = f.flair.affine.copy()
    aff[:3, 3] += [4.0, -3.0, 2.0]
    follow = save(f1, tmp_path / "follow.nii.gz", affine=aff)
    pre = PreprocessOptions(bias_correction=False, skull_strip=False)
    opts = CompareOptions(analyze=AnalyzeOptions(model="baseline", device="cpu", preprocess=pre), brain_mask=brain)
    return compare_scans({"flair": base}, {"flair": follow}, tmp_path / "out", opts)
