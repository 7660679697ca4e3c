"""Reorientation and resampling between grids, affines kept exact."""
from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..volume import LabelVolume, Volume


def reorient_canonical(vol: Volume) -> Volume:
    """Permute/flip voxel axes so they run closest to RAS+; affine updated to match."""
    ornt = nib.orientations.io_orientation(vol.affine)
    ras = nib.orientations.axcodes2ornt(("R", "A", "S"))
    transform = nib.orientations.ornt_transform(ornt, ras)
    data = nib.orientations.apply_orientation(vol.data, transform)
    affine = vol.affine @ nib.orientations.inv_ornt_aff(transform, vol.shape)
    return Volume(np.ascontiguousarray(data), affine, vol.path, vol.meta.copy())


def grid_covering(vol: Volume, spacing: float | tuple[float, float, float], min_size: int = 1,
                  tolerance: float = 0.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """The one grid builder: voxels of ``spacing`` mm (one value or one per axis), axes along ``vol``'s
    axes, covering its field of view with the field-of-view edge (voxel corner) kept in place.

    Each axis has ``ceil(extent / spacing - tolerance)`` voxels, at least ``min_size``.
    """
    zooms = np.asarray(vol.zooms)
    step = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    directions = vol.affine[:3, :3] / zooms
    extent = np.asarray(vol.shape) * zooms
    shape = tuple(int(max(min_size, np.ceil(e / s - tolerance))) for e, s in zip(extent, step))
    affine = np.eye(4)
    affine[:3, :3] = directions * step
    corner = vol.affine @ np.array([-0.5, -0.5, -0.5, 1.0])
    affine[:3, 3] = corner[:3] + affine[:3, :3] @ np.array([0.5, 0.5, 0.5])
    return shape, affine  # type: ignore[return-value]


def isotropic_grid(vol: Volume, spacing: float = 1.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """A grid with ``spacing`` mm voxels, axes along ``vol``'s axes, covering its field of view."""
    return grid_covering(vol, spacing)


def resample_to_grid(
    vol: Volume, shape: tuple[int, int, int], affine: np.ndarray, order: int = 1, cval: float = 0.0
) -> Volume:
    """Resample ``vol`` onto the grid (shape, affine) by world coordinates.

    A :class:`~mslesion.volume.LabelVolume` (or ``order=0``, or boolean voxels) is resampled by
    nearest neighbour and keeps its dtype; the result is of ``vol``'s own type.
    """
    affine = np.asarray(affine, dtype=np.float64)
    make = type(vol)
    if vol.shape == tuple(shape) and np.allclose(vol.affine, affine, atol=1e-5):
        return make(vol.data.copy(), affine, vol.path, vol.meta.copy())
    vox = np.linalg.inv(vol.affine) @ affine
    data = vol.data
    if order == 0 or data.dtype == bool or isinstance(vol, LabelVolume):
        src = data.astype(np.float32)
        out = ndimage.affine_transform(src, vox[:3, :3], vox[:3, 3], output_shape=tuple(shape), order=0, cval=cval)
        out = out.astype(data.dtype)
    else:
        out = ndimage.affine_transform(
            data.astype(np.float32), vox[:3, :3], vox[:3, 3], output_shape=tuple(shape), order=order, cval=cval,
            mode="constant",
        )
    return make(out, affine, vol.path, vol.meta.copy())


def resample_like(vol: Volume, reference: Volume, order: int = 1, cval: float = 0.0) -> Volume:
    return resample_to_grid(vol, reference.shape, reference.affine, order=order, cval=cval)


def slab_reach(ratio: float) -> int:
    """Working voxels on each side of a centre that overlap a slab ``ratio`` working voxels thick."""
    return int(np.floor(ratio / 2.0 + 0.5))


def slab_peak(work: Volume, native: Volume, min_ratio: float = 1.5) -> Volume | None:
    """The highest value of ``work`` inside the slab one ``native`` voxel covers, on ``work``'s grid.

    Only native axes ``min_ratio`` times coarser than the working grid count (thick slices); each
    is filtered along the working axis it runs along (the working grid keeps the canonical native
    axes). Sampled at a native voxel centre, it is the highest value anywhere inside that voxel,
    where linear interpolation reads one point. None when no axis is thick.
    """
    work_dirs = work.affine[:3, :3] / np.asarray(work.zooms)
    native_dirs = native.affine[:3, :3] / np.asarray(native.zooms)
    peak = work.data.astype(np.float32)
    thick = False
    for i, size_mm in enumerate(native.zooms):
        j = int(np.argmax(np.abs(work_dirs.T @ native_dirs[:, i])))
        ratio = size_mm / work.zooms[j]
        if ratio >= min_ratio:
            peak = ndimage.maximum_filter1d(peak, 2 * slab_reach(ratio) + 1, axis=j, mode="constant")
            thick = True
    return work.with_data(peak) if thick else None
