"""Lesions as connected components of a binary mask."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage

from .volume import Volume

#: lesions.csv columns of a brain lesion (extra columns follow)
BASE_COLUMNS = ["id", "voxels", "volume_ml", "centroid_x", "centroid_y", "centroid_z", "region"]
#: cord_lesions.csv columns of a spinal-cord lesion
CORD_COLUMNS = ["id", "volume_mm3", "length_mm", "max_axial_extent_mm", "levels", "centroid_x", "centroid_y",
                "centroid_z", "region"]


def structure(connectivity: int) -> np.ndarray:
    """3-D structuring element for 6-, 18- or 26-connectivity."""
    rank = {6: 1, 18: 2, 26: 3}.get(connectivity)
    if rank is None:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    return ndimage.generate_binary_structure(3, rank)


def label_components(mask: np.ndarray, connectivity: int = 26) -> tuple[np.ndarray, int]:
    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=structure(connectivity))
    return labels, int(n)


def remove_small(mask: np.ndarray, min_voxels: int, connectivity: int = 26) -> np.ndarray:
    labels, n = label_components(mask, connectivity)
    if n == 0 or min_voxels <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


def binarize(prob: np.ndarray, threshold: float, min_voxels: int, min_peak: float = 0.0,
             connectivity: int = 26, peaks: np.ndarray | None = None) -> np.ndarray:
    """The lesion mask of a probability map: ``prob >= threshold``, lesions under ``min_voxels``
    removed, and (``min_peak`` > ``threshold``) lesions without a voxel at ``min_peak`` removed;
    ``peaks`` (same grid), where given, is read for that peak instead of ``prob`` (thick slices:
    the highest probability inside each voxel's slab, see ``Preprocessed.to_native_peaks``).

    One labelling serves both rules: dropping whole components never joins or splits the others.
    """
    labels, n = label_components(prob >= threshold, connectivity)
    if n == 0:
        return labels > 0
    keep = np.bincount(labels.ravel(), minlength=n + 1) >= max(min_voxels, 1)
    if min_peak > threshold:
        keep &= component_peaks(labels, prob if peaks is None else peaks, n) >= min_peak
    keep[0] = False
    return keep[labels]


#: a lesion must lie at least this much inside the brain mask (the rest is scalp, dura or the band that
#: resampling and the model's 2-voxel margin add around the mask)
MIN_INSIDE_BRAIN = 0.5


def drop_outside(mask: np.ndarray, inside: np.ndarray, min_fraction: float = MIN_INSIDE_BRAIN,
                 connectivity: int = 26) -> tuple[np.ndarray, int]:
    """``mask`` without the lesions that lie less than ``min_fraction`` inside ``inside`` (the brain);
    also returns how many were dropped."""
    labels, n = label_components(mask, connectivity)
    if n == 0:
        return labels > 0, 0
    size = np.bincount(labels.ravel(), minlength=n + 1)
    within = np.bincount(labels[np.asarray(inside, dtype=bool)], minlength=n + 1)
    keep = within >= min_fraction * size
    keep[0] = False
    return keep[labels], int(n - np.count_nonzero(keep))


def component_peaks(labels: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """The highest of ``values`` in each component of ``labels`` (index 0: background, -inf).

    Reads the labelled voxels only, so it costs the lesions' size, not the volume's
    (``scipy.ndimage.maximum`` sorts every voxel).
    """
    inside = labels > 0
    peaks = np.full(n + 1, -np.inf)
    np.maximum.at(peaks, labels[inside], values[inside].astype(np.float64))
    return peaks


def keep_confident(mask: np.ndarray, prob: np.ndarray, min_peak: float, connectivity: int = 26) -> np.ndarray:
    """Keep the connected lesions of ``mask`` whose highest probability reaches ``min_peak``.

    With ``mask = prob >= t`` this is hysteresis thresholding: lesions are outlined at ``t``
    but must hold at least one voxel as sure as ``min_peak``.
    """
    labels, n = label_components(mask, connectivity)
    keep = component_peaks(labels, prob, n) >= min_peak
    keep[0] = False
    return keep[labels]


@dataclass
class Lesion:
    """One lesion: a connected component of the lesion mask (brain; :class:`CordLesion` for the cord).

    :meth:`row` is its lesions.csv row (and its report.json object); ``lesion["column"]`` reads it.
    """

    COLUMNS: ClassVar[list[str]] = BASE_COLUMNS

    id: int
    voxels: int
    volume_ml: float
    centroid_x: float
    centroid_y: float
    centroid_z: float
    region: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def volume_mm3(self) -> float:
        return self.volume_ml * 1000.0

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d

    def __getitem__(self, column: str) -> Any:
        return self.row()[column]

    def get(self, column: str, default: Any = None) -> Any:
        return self.row().get(column, default)


@dataclass
class CordLesion(Lesion):
    """A spinal-cord lesion: also its length along the cord, largest axial extent and vertebral levels.

    Its row has the cord table's columns (:data:`CORD_COLUMNS`): volume in mm^3 (2 decimals), no voxel count.
    """

    COLUMNS: ClassVar[list[str]] = CORD_COLUMNS

    length_mm: float = 0.0
    max_axial_extent_mm: float = 0.0
    #: ';'-joined level names, e.g. "C2;C3"
    levels: str = ""

    @property
    def volume_mm3(self) -> float:
        return round(self.volume_ml * 1000.0, 2)

    def row(self) -> dict[str, Any]:
        values = {"id": self.id, "volume_mm3": self.volume_mm3, "length_mm": self.length_mm,
                  "max_axial_extent_mm": self.max_axial_extent_mm, "levels": self.levels,
                  "centroid_x": self.centroid_x, "centroid_y": self.centroid_y, "centroid_z": self.centroid_z,
                  "region": self.region}
        return {**values, **self.extra}


def find_lesions(mask: Volume, connectivity: int = 26) -> tuple[np.ndarray, list[Lesion]]:
    """Label a binary mask and describe each component (world-mm centroid, volume)."""
    labels, n = label_components(mask.data > 0, connectivity)
    lesions: list[Lesion] = []
    if n == 0:
        return labels, lesions
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    centroids = ndimage.center_of_mass(np.ones_like(labels, dtype=np.uint8), labels, index=np.arange(1, n + 1))
    vml = mask.voxel_volume_ml
    for idx in range(1, n + 1):
        c = np.asarray(centroids[idx - 1], dtype=float)
        world = mask.affine @ np.append(c, 1.0)
        lesions.append(
            Lesion(
                id=idx,
                voxels=int(counts[idx]),
                volume_ml=round(float(counts[idx]) * vml, 5),
                centroid_x=round(float(world[0]), 2),
                centroid_y=round(float(world[1]), 2),
                centroid_z=round(float(world[2]), 2),
            )
        )
    return labels, lesions
