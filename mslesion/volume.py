"""The one volume type that flows through every stage.

Axis convention (stated once, kept everywhere): ``Volume.data`` is indexed in
nibabel's voxel order ``data[i, j, k]`` exactly as stored in the file, and
``Volume.affine`` maps ``(i, j, k, 1)`` to RAS+ world millimetres.  No stage
transposes axes behind the caller's back; reorientation is explicit
(:func:`mslesion.preprocess.resample.reorient_canonical`) and returns a new
Volume whose affine says what happened.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypedDict

import nibabel as nib
import numpy as np

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, slice, slice]:
    """Index box of a mask's nonzero voxels grown by ``margin`` voxels on each side, clipped to the array.

    The one bounding box of the package (the model's brain crop, the change detection's and the
    registration's brain boxes); ``mask`` must hold at least one nonzero voxel.
    """
    idx = np.nonzero(mask)
    return tuple(slice(max(0, int(i.min()) - margin), min(n, int(i.max()) + margin + 1))  # type: ignore[return-value]
                 for i, n in zip(idx, mask.shape))


class VolumeMeta(TypedDict, total=False):
    """What is known about a volume beyond its voxels and grid (carried through resampling and ``with_data``)."""

    #: what the image is for ("FLAIR", "spinal T2", ...), from loading
    role: str
    dicom_series_uid: str
    #: brain masks: how the brain was found ("deepbet", "template+refine", "stripped-input", "head-foreground")
    brain_method: str
    #: brain masks: fraction of the mask inside the head foreground
    in_head_fraction: float
    #: brain masks found on an image with skull: ml of bright scalp trimmed (``preprocess.brain_rim``)
    rim_trimmed_ml: float
    #: brain masks of the template method: the world -> MNI affine (4x4)
    to_mni: np.ndarray
    #: images moved onto the FLAIR: their rigid world transform (4x4)
    to_flair: np.ndarray
    #: images moved onto the FLAIR: their head centre minus the FLAIR's before registration (world mm)
    world_offset_mm: list[float]
    #: images resampled by :func:`mslesion.preprocess.registration.resample_moving`: the fixed image's path
    registered_to: str
    n4_corrected: bool


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D image: voxel array, voxel-to-world affine and where it came from."""

    data: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    meta: VolumeMeta = field(default_factory=lambda: VolumeMeta())

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise ValueError(f"Volume needs 3-D data, got shape {self.data.shape}")
        aff = np.asarray(self.affine, dtype=np.float64)
        if aff.shape != (4, 4):
            raise ValueError(f"Volume needs a 4x4 affine, got {aff.shape}")
        object.__setattr__(self, "affine", aff)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def zooms(self) -> tuple[float, float, float]:
        """Voxel sizes in mm, read from the affine's column norms."""
        return tuple(float(z) for z in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    #: what the voxels are; :class:`LabelVolume` says "label" and is resampled by nearest neighbour
    kind: ClassVar[str] = "intensity"

    def with_data(self, data: np.ndarray, **meta: Unpack[VolumeMeta]) -> "Volume":
        """Same grid, new voxels (of the same kind: a label volume stays one)."""
        if tuple(data.shape) != self.shape:
            raise ValueError(f"shape {data.shape} does not match grid {self.shape}")
        return type(self)(data, self.affine, self.path, {**self.meta, **meta})

    def as_labels(self) -> "LabelVolume":
        """The same voxels as a label map (masks, component ids): resampling it picks nearest neighbour."""
        return LabelVolume(self.data, self.affine, self.path, self.meta.copy())

    def as_intensity(self) -> "Volume":
        """The same voxels as an intensity image (e.g. a mask to be resampled linearly into a soft mask)."""
        return Volume(self.data, self.affine, self.path, self.meta.copy())

    def same_grid(self, other: "Volume", atol: float = 1e-3) -> bool:
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=atol))

    def world_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box (min, max) of the voxel centres in world mm."""
        corners = np.array(
            [[i, j, k, 1.0] for i in (0, self.shape[0] - 1) for j in (0, self.shape[1] - 1)
             for k in (0, self.shape[2] - 1)]
        )
        world = corners @ self.affine.T
        return world[:, :3].min(axis=0), world[:, :3].max(axis=0)

    def to_nifti(self, dtype: np.dtype | type | None = None) -> nib.Nifti1Image:
        data = self.data if dtype is None else self.data.astype(dtype)
        img = nib.Nifti1Image(data, self.affine)
        img.set_qform(self.affine, code=1)
        img.set_sform(self.affine, code=1)
        return img


@dataclass(frozen=True, eq=False)
class LabelVolume(Volume):
    """A label map (binary mask or integer ids): every resampling of it is nearest neighbour, dtype kept.

    As TorchIO's ``LabelMap``: the type, not each caller, decides how the voxels are interpolated
    (:func:`mslesion.preprocess.resample.resample_to_grid`, ``registration.resample_moving``).
    """

    kind: ClassVar[str] = "label"
