"""DICOM series input: a known NIfTI written as a DICOM series (pydicom) must read back with identical geometry."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# pydicom is a core dependency (pyproject): missing, these imports fail rather than skip
from pydicom.uid import generate_uid

from mslesion.errors import InputError
from mslesion.io import load_volume
from mslesion.preprocess.registration import rigid_matrix
from mslesion.preprocess.resample import reorient_canonical
from mslesion.volume import Volume

from .factories import mr_dataset

FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_dicom_series(vol: Volume, folder: Path, series_number: int = 1, description: str = "FLAIR",
                       order: list[int] | None = None) -> Path:
    """Write ``vol`` as one DICOM file per k-slice (LPS geometry), in file-name ``order``."""
    folder.mkdir(parents=True, exist_ok=True)
    lps = FLIP @ vol.affine
    dx, dy = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    iop = [*(lps[:3, 0] / dx), *(lps[:3, 1] / dy)]
    uid_series, uid_study, uid_frame = generate_uid(), generate_uid(), generate_uid()
    data = np.asarray(vol.data)
    n = vol.shape[2]
    order = list(range(n)) if order is None else order
    for fileno, k in enumerate(order):
        ds = mr_dataset(uid_study, uid_series, uid_frame)
        ds.SeriesNumber, ds.SeriesDescription = series_number, description
        ds.InstanceNumber = n - fileno  # deliberately unrelated to position
        ds.ImagePositionPatient = [f"{x:.6f}" for x in (lps @ np.array([0, 0, k, 1.0]))[:3]]
        ds.ImageOrientationPatient = [f"{x:.8f}" for x in iop]
        ds.PixelSpacing = [f"{dy:.6f}", f"{dx:.6f}"]
        ds.SliceThickness = f"{np.linalg.norm(lps[:3, 2]):.6f}"
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-10"
        stored = np.round((data[:, :, k].T + 10) / 0.5).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        ds.save_as(folder / f"img_{fileno:04d}.dcm", enforce_file_format=True)
    return folder


def write_enhanced_dicom(vol: Volume, path: Path, order: list[int] | None = None,
                         positions: list[int] | None = None) -> Path:
    """Write ``vol`` as one enhanced (multi-frame) MR file: orientation, pixel spacing shared,
    position and rescale per frame; frames stored in ``order``; ``positions`` overrides each frame's k."""
    from pydicom.dataset import Dataset
    from pydicom.uid import EnhancedMRImageStorage

    path.parent.mkdir(parents=True, exist_ok=True)
    lps = FLIP @ vol.affine
    dx, dy = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    n = vol.shape[2]
    order = list(range(n)) if order is None else order
    positions = order if positions is None else positions
    ds = mr_dataset(generate_uid(), generate_uid(), generate_uid())
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    ds.SeriesNumber, ds.SeriesDescription = 4, "3D FLAIR enhanced"
    ds.NumberOfFrames = len(order)
    ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    orientation, measures, shared = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = [f"{x:.8f}" for x in (*(lps[:3, 0] / dx), *(lps[:3, 1] / dy))]
    measures.PixelSpacing = [f"{dy:.6f}", f"{dx:.6f}"]
    measures.SliceThickness = f"{np.linalg.norm(lps[:3, 2]):.6f}"
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = [orientation], [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    groups, frames = [], []
    for k, pos in zip(order, positions):
        plane, value, group = Dataset(), Dataset(), Dataset()
        plane.ImagePositionPatient = [f"{x:.6f}" for x in (lps @ np.array([0, 0, pos, 1.0]))[:3]]
        value.RescaleSlope, value.RescaleIntercept, value.RescaleType = "0.5", "-10", "US"
        group.PlanePositionSequence, group.PixelValueTransformationSequence = [plane], [value]
        groups.append(group)
        frames.append(np.round((np.asarray(vol.data)[:, :, k].T + 10) / 0.5).astype(np.uint16))
    ds.PerFrameFunctionalGroupsSequence = groups
    ds.PixelData = np.stack(frames).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def same_geometry(a: Volume, b: Volume) -> None:
    ca, cb = reorient_canonical(a), reorient_canonical(b)
    assert ca.shape == cb.shape
    np.testing.assert_allclose(ca.affine, cb.affine, atol=1e-3)
    np.testing.assert_allclose(ca.data, cb.data, atol=1e-3)


def _volume(affine: np.ndarray, shape=(20, 18, 7), seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    data = np.round(rng.uniform(0, 2000, shape)) / 2.0  # exactly representable after rescale
    return Volume(data.astype(np.float32), affine)


def test_axial_las_roundtrip(tmp_path: Path) -> None:
    aff = np.diag([-0.8, 0.9, 4.4, 1.0])
    aff[:3, 3] = [80, -90, -30]
    vol = _volume(aff)
    order = list(np.random.default_rng(1).permutation(vol.shape[2]))
    loaded = load_volume(write_dicom_series(vol, tmp_path / "s", order=order), role="FLAIR")
    same_geometry(vol, loaded)
    assert loaded.zooms == pytest.approx((0.8, 0.9, 4.4), abs=1e-4)


def test_oblique_roundtrip(tmp_path: Path) -> None:
    base = np.diag([0.7, 0.75, 3.0, 1.0])
    base[:3, 3] = [-60, -70, -20]
    aff = rigid_matrix((12.0, -8.0, 20.0), (3.0, -4.0, 5.0)) @ base
    vol = _volume(aff, shape=(16, 14, 9), seed=2)
    loaded = load_volume(write_dicom_series(vol, tmp_path / "obl"), role="FLAIR")
    # oblique: the loaded affine must equal the original (up to the k direction), not a snapped one
    same_geometry(vol, loaded)
    world = loaded.affine @ np.array([3, 4, 5, 1.0])
    idx = np.linalg.inv(vol.affine) @ world
    assert np.allclose(idx, np.round(idx), atol=1e-3)
    i, j, k = np.round(idx[:3]).astype(int)
    assert loaded.data[3, 4, 5] == pytest.approx(vol.data[i, j, k])


def test_sagittal_left_handed_roundtrip(tmp_path: Path) -> None:
    aff = np.array([[0, 0, -1.2, 60], [1.0, 0, 0, -100], [0, 1.0, 0, -80], [0, 0, 0, 1]])
    vol = _volume(aff, shape=(12, 10, 6), seed=3)
    same_geometry(vol, load_volume(write_dicom_series(vol, tmp_path / "sag"), role="T1"))


def test_several_series_refused_with_listing(tmp_path: Path) -> None:
    vol = _volume(np.diag([1.0, 1.0, 2.0, 1.0]), shape=(8, 8, 4))
    write_dicom_series(vol, tmp_path / "mix", series_number=3, description="FLAIR")
    write_dicom_series(vol, tmp_path / "mix" / "other", series_number=7, description="T1 MPRAGE")
    with pytest.raises(InputError) as err:
        load_volume(tmp_path / "mix", role="FLAIR")
    msg = str(err.value)
    assert "2 DICOM series" in msg and "'FLAIR'" in msg and "'T1 MPRAGE'" in msg and "\n" not in msg
    assert err.value.path == tmp_path / "mix"


def test_missing_slice_and_empty_folder_refused(tmp_path: Path) -> None:
    vol = _volume(np.diag([1.0, 1.0, 2.0, 1.0]), shape=(8, 8, 5))
    folder = write_dicom_series(vol, tmp_path / "gap")
    (folder / "img_0002.dcm").unlink()
    with pytest.raises(InputError, match="uneven"):
        load_volume(folder)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not dicom")
    with pytest.raises(InputError, match="no DICOM"):
        load_volume(tmp_path / "empty")


def test_enhanced_multiframe_oblique_roundtrip(tmp_path: Path) -> None:
    base = np.diag([0.9, 0.9, 1.2, 1.0])
    base[:3, 3] = [-50, -60, -40]
    vol = _volume(rigid_matrix((-7.0, 10.0, 4.0), (2.0, 1.0, -3.0)) @ base, shape=(14, 12, 9), seed=5)
    order = [int(k) for k in np.random.default_rng(4).permutation(vol.shape[2])]
    folder = tmp_path / "enh"
    write_enhanced_dicom(vol, folder / "IM0001", order=order)
    loaded = load_volume(folder, role="FLAIR")
    same_geometry(vol, loaded)
    assert loaded.zooms == pytest.approx((0.9, 0.9, 1.2), abs=1e-4)


def test_enhanced_multiframe_problems_are_named(tmp_path: Path) -> None:
    import pydicom

    vol = _volume(np.diag([1.0, 1.0, 2.0, 1.0]), shape=(8, 8, 4))
    # a 4-D acquisition (two frames per position) is refused, naming the frames
    path = write_enhanced_dicom(vol, tmp_path / "echo" / "IM1", order=[0, 1, 2, 3], positions=[0, 1, 0, 1])
    with pytest.raises(InputError, match="same position.*frame"):
        load_volume(path.parent)
    # a frame without a position
    path = write_enhanced_dicom(vol, tmp_path / "nopos" / "IM1")
    ds = pydicom.dcmread(path)
    del ds.PerFrameFunctionalGroupsSequence[2].PlanePositionSequence
    ds.save_as(path)
    with pytest.raises(InputError, match="frame 3 has no PlanePosition") as err:
        load_volume(path.parent)
    assert err.value.path == path
    # several frames without any per-frame geometry
    del ds.PerFrameFunctionalGroupsSequence
    ds.save_as(path)
    with pytest.raises(InputError, match="no per-frame geometry"):
        load_volume(path.parent)


@pytest.mark.realdata
def test_real_flair_as_dicom(shared_data: Path, tmp_path: Path) -> None:
    flair = load_volume(shared_data / "brain_ms" / "isbi2015" / "training01" / "flair.nii.gz")
    small = Volume(np.round(flair.data[::4, ::4, :] * 2) / 2, flair.affine @ np.diag([4.0, 4.0, 1.0, 1.0]))
    loaded = load_volume(write_dicom_series(small, tmp_path / "isbi"), role="FLAIR")
    same_geometry(small, loaded)


def test_analyze_accepts_a_dicom_folder(tmp_path: Path) -> None:
    import nibabel as nib

    from mslesion.cli import main

    from .factories import make_phantom

    ph = make_phantom(lesions=((32, 40, 24, 3.0),))
    flair = Volume(np.round(ph.flair.data * 2) / 2, ph.flair.affine)
    folder = write_dicom_series(flair, tmp_path / "dicom_flair")
    out = tmp_path / "out"
    assert main(["analyze", "--flair", str(folder), "--out", str(out), "--model", "baseline"]) == 0
    mask = nib.load(out / "lesions.nii.gz")
    loaded = load_volume(folder)
    assert mask.shape == loaded.shape
    np.testing.assert_allclose(mask.affine, loaded.affine, atol=1e-4)
    # the answer, compared by world coordinates with the painted lesion (the series may be stored in
    # another voxel order than the phantom): found, alone, and with the phantoms' Dice floor
    from .truth import assert_finds_phantom_lesions

    assert_finds_phantom_lesions(load_volume(out / "lesions.nii.gz"), ph.lesions)
