"""Synthetic lesions at known anatomical sites, to measure the region labelling.

Used by ``tests/test_location*.py`` and ``scripts/bench_location.py``.  A site
is an anchor point in world mm (RAS) on a real scan plus, for the two
boundary sites, a direction:

* ``ventricle``: anchor inside a lateral ventricle; the helper walks along the
  direction to the ventricle wall (first voxel brighter than the CSF/WM
  midpoint) and centres the lesion just outside it, so it touches the wall;
* ``juxtacortical``: anchor in white matter; the helper walks outward until it
  reaches dark CSF (a sulcus or the brain surface) and centres the lesion
  ``cortex_mm`` inside it, so the lesion covers the cortex and the
  white matter beneath it;
* ``pons``, ``cerebellum``, ``cso`` (centrum semiovale deep white matter):
  lesion centred on the anchor, randomly shifted by up to ``jitter_mm``.

Lesions are ellipsoids with random radii and are burnt into the FLAIR as
hyperintensities.  The anchors of :data:`SHARED_DATA_SITES` were checked by
eye on each scan (``scripts/bench_location.py --png``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..volume import Volume

EXPECTED_REGION = {"ventricle": "periventricular", "juxtacortical": "juxtacortical", "pons": "infratentorial",
                   "cerebellum": "infratentorial", "cso": "deep_white_matter"}


@dataclass
class Site:
    kind: str
    anchor: tuple[float, float, float]
    direction: tuple[float, float, float] | None = None


def _sample(vol: Volume, points: np.ndarray) -> np.ndarray:
    ijk = (np.c_[points, np.ones(len(points))] @ np.linalg.inv(vol.affine).T)[:, :3]
    return ndimage.map_coordinates(vol.data, ijk.T, order=1, mode="nearest")


def tissue_levels(flair: Volume) -> tuple[float, float]:
    """(CSF-like, white-matter-like) FLAIR levels from the foreground intensity histogram."""
    vals = flair.data[flair.data > np.percentile(flair.data, 60)]
    wm = float(np.percentile(vals, 50))
    csf = float(np.percentile(flair.data[flair.data > 0], 15))
    return csf, wm


def lesion_centre(flair: Volume, site: Site, radius_mm: float, rng: np.random.Generator,
                  jitter_mm: float = 2.0, cortex_mm: float = 2.0,
                  levels: tuple[float, float] | None = None) -> np.ndarray | None:
    """Where to centre a lesion for ``site``; None if the walk finds no boundary."""
    anchor = np.asarray(site.anchor, dtype=float)
    if site.kind in ("ventricle", "juxtacortical"):
        d = np.asarray(site.direction, dtype=float)
        d /= np.linalg.norm(d)
        steps = np.arange(0.0, 45.0, 0.5)
        prof = _sample(flair, anchor + steps[:, None] * d)
        csf, wm = levels or tissue_levels(flair)
        thr = (csf + wm) / 2.0
        if site.kind == "ventricle":
            if prof[0] >= thr:
                return None
            out = np.nonzero(prof >= thr)[0]
            if out.size == 0:
                return None
            return anchor + (steps[out[0]] + radius_mm - 1.0) * d
        if prof[0] < thr:
            return None
        # first point that stays dark for 1.5 mm (a sulcus or the brain surface), within 25 mm
        dark = prof < thr
        run = np.convolve(dark.astype(int), np.ones(4, int), mode="full")[3:]
        hits = np.nonzero(run >= 4)[0]
        if hits.size == 0 or steps[hits[0]] > 25.0:
            return None
        return anchor + (steps[hits[0]] - cortex_mm) * d
    return anchor + rng.uniform(-jitter_mm, jitter_mm, 3)


def place_lesions(flair: Volume, sites: list[Site], seed: int = 0, radius_range: tuple[float, float] = (2.0, 3.5),
                  ) -> tuple[Volume, Volume, list[str]]:
    """Burn one lesion per site into ``flair``; return (flair, label volume, kinds of the placed sites).

    Lesion ``n`` (1-based) of the label volume is the n-th placed site; sites
    whose boundary walk fails or that would touch an earlier lesion are skipped
    (the returned list only holds placed lesions; ``EXPECTED_REGION[kind]`` is the truth).
    """
    rng = np.random.default_rng(seed)
    labels = np.zeros(flair.shape, np.int32)
    data = flair.data.astype(np.float32).copy()
    bright = float(np.percentile(flair.data[flair.data > 0], 99.5))
    inv = np.linalg.inv(flair.affine)
    levels = tissue_levels(flair)
    expected: list[str] = []
    for site in sites:
        radii = rng.uniform(*radius_range, size=3)
        centre = lesion_centre(flair, site, float(radii.min()), rng, levels=levels)
        if centre is None:
            continue
        rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        c_vox = inv @ np.append(centre, 1.0)
        half = np.ceil((radii.max() + 4.0) / np.asarray(flair.zooms)).astype(int)  # box + 3-voxel gap check
        lo = np.maximum(np.floor(c_vox[:3]).astype(int) - half, 0)
        hi = np.minimum(np.floor(c_vox[:3]).astype(int) + half + 2, flair.shape)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        ijk = np.indices(tuple(hi - lo), dtype=np.float64).reshape(3, -1) + lo[:, None]
        world = (flair.affine[:3, :3] @ ijk + flair.affine[:3, 3:4]).T
        rel = (world - centre) @ rot
        inside = (((rel / radii) ** 2).sum(-1) <= 1.0).reshape(tuple(hi - lo))
        if not inside.any():
            near = np.clip(np.rint(c_vox[:3]).astype(int) - lo, 0, hi - lo - 1)
            inside[tuple(near)] = True
        if (ndimage.binary_dilation(labels[box] > 0, iterations=3) & inside).any():
            continue
        labels[box][inside] = len(expected) + 1
        data[box][inside] = bright
        expected.append(site.kind)
    return flair.with_data(data), flair.with_data(labels), expected


def lesion_list(labels: Volume) -> list:
    """Lesion objects whose ids are the label values of ``labels`` (for :func:`~.regions.locate`)."""
    from ..lesions import Lesion

    ids = [int(i) for i in np.unique(labels.data) if i > 0]
    coms = ndimage.center_of_mass(np.ones(labels.shape), labels.data, ids)
    counts = ndimage.sum_labels(np.ones(labels.shape), labels.data, ids)
    out = []
    for i, c, n in zip(ids, coms, counts):
        w = labels.affine @ np.append(np.asarray(c, float), 1.0)
        out.append(Lesion(i, int(n), float(n) * labels.voxel_volume_ml, float(w[0]), float(w[1]), float(w[2])))
    return out


#: MNI anchors from which SHARED_DATA_SITES were proposed (before checking by eye).
MNI_SITES = [
    Site("ventricle", (-6.0, 0.0, 18.0), (-1.0, 0.0, 0.0)), Site("ventricle", (6.0, 0.0, 18.0), (1.0, 0.0, 0.0)),
    Site("ventricle", (-6.0, 10.0, 12.0), (-0.7, 0.7, 0.0)), Site("ventricle", (6.0, 10.0, 12.0), (0.7, 0.7, 0.0)),
    Site("juxtacortical", (-20.0, 20.0, 40.0), (0.0, 0.0, 1.0)), Site("juxtacortical", (20.0, 20.0, 40.0), (0, 0, 1.0)),
    Site("juxtacortical", (-30.0, -50.0, 35.0), (-0.6, -0.4, 0.7)),
    Site("juxtacortical", (30.0, -50.0, 35.0), (0.6, -0.4, 0.7)),
    Site("juxtacortical", (-38.0, -20.0, 0.0), (-1.0, 0.0, 0.0)),
    Site("juxtacortical", (38.0, -20.0, 0.0), (1.0, 0.0, 0.0)),
    Site("juxtacortical", (-40.0, 10.0, 25.0), (-1.0, 0.0, 0.0)), Site("juxtacortical", (40.0, 10.0, 25.0), (1, 0, 0)),
    Site("juxtacortical", (-35.0, -70.0, 15.0), (-0.5, -0.8, 0.0)),
    Site("juxtacortical", (35.0, -70.0, 15.0), (0.5, -0.8, 0.0)),
    Site("juxtacortical", (-45.0, -40.0, 20.0), (-1.0, 0.0, 0.0)), Site("juxtacortical", (45.0, -40.0, 20), (1, 0, 0)),
    Site("juxtacortical", (-28.0, 40.0, 10.0), (-0.5, 0.8, 0.0)),
    Site("juxtacortical", (28.0, 40.0, 10.0), (0.5, 0.8, 0.0)),
    Site("pons", (-5.0, -25.0, -30.0)), Site("pons", (5.0, -25.0, -30.0)),
    Site("cerebellum", (-28.0, -62.0, -35.0)), Site("cerebellum", (28.0, -62.0, -35.0)),
    Site("cso", (-25.0, -10.0, 35.0)), Site("cso", (25.0, -10.0, 35.0)),
    Site("cso", (-24.0, 10.0, 32.0)), Site("cso", (24.0, 10.0, 32.0)),
]


#: Sites on the shared real scans (``../shared/data/brain_ms/<case>/flair.nii.gz``), world mm (RAS).
#: Proposed by mapping :data:`MNI_SITES` with an affine template fit, then checked by eye
#: (scripts/bench_location.py --png).  Known doubt: on isbi2015/training02 (enlarged ventricles) two
#: centrum-semiovale sites come within 1.4 and 3.0 mm of the ventricle roof; they are kept as they
#: were proposed (counted as errors when labelled periventricular) rather than tuned to the method.
SHARED_DATA_SITES: dict[str, list[Site]] = {
    "ljubljana/patient07": [
        Site('ventricle', (-5.0, -2.9, 18.0), (-1.0, -0.02, 0.01)),
        Site('ventricle', (5.2, -2.7, 18.0), (1.0, 0.02, 0.0)),
        Site('ventricle', (-5.0, 5.5, 13.5), (-0.72, 0.69, 0.02)),
        Site('ventricle', (5.1, 5.7, 13.5), (0.7, 0.72, 0.0)),
        Site('juxtacortical', (-16.9, 14.0, 35.4), (0.0, 0.01, 1.0)),
        Site('juxtacortical', (16.9, 14.7, 35.3), (0.0, 0.01, 1.0)),
        Site('juxtacortical', (-24.9, -45.6, 30.7), (-0.61, -0.43, 0.66)),
        Site('juxtacortical', (25.9, -44.6, 30.4), (0.63, -0.4, 0.67)),
        Site('juxtacortical', (-31.8, -20.6, 4.0), (-1.0, -0.02, 0.0)),
        Site('juxtacortical', (32.4, -19.2, 3.6), (1.0, 0.01, 0.0)),
        Site('pons', (-3.9, -24.5, -19.5), None),
        Site('pons', (4.6, -24.3, -19.5), None),
        Site('cerebellum', (-23.1, -56.3, -23.8), None),
        Site('cerebellum', (24.3, -55.3, -24.0), None),
        Site('cso', (-20.9, -11.6, 31.2), None),
        Site('cso', (21.3, -10.7, 31.0), None),
        Site('cso', (-20.2, 5.4, 29.1), None),
        Site('cso', (20.3, 6.2, 28.9), None),
        Site('juxtacortical', (-33.8, 5.0, 23.8), (-1.0, -0.02, 0.0)),
        Site('juxtacortical', (33.9, 6.5, 23.4), (1.0, 0.01, 0.0)),
        Site('juxtacortical', (-28.9, -62.8, 14.9), (-0.52, -0.85, -0.01)),
        Site('juxtacortical', (30.2, -61.6, 14.6), (0.54, -0.84, -0.01)),
        Site('juxtacortical', (-37.6, -37.5, 19.2), (-1.0, -0.02, 0.01)),
        Site('juxtacortical', (38.5, -35.9, 18.9), (1.0, 0.02, -0.01)),
        Site('juxtacortical', (-23.9, 30.6, 12.5), (-0.53, 0.85, 0.01)),
        Site('juxtacortical', (23.5, 31.6, 12.2), (0.53, 0.85, 0.01)),
    ],
    "ljubljana/patient26": [
        Site('ventricle', (-4.5, 0.1, 17.7), (-1.0, 0.0, 0.01)),
        Site('ventricle', (5.4, 0.0, 17.5), (1.0, -0.0, -0.02)),
        Site('ventricle', (-4.6, 8.4, 12.8), (-0.69, 0.72, -0.01)),
        Site('ventricle', (5.4, 8.3, 12.6), (0.69, 0.72, -0.04)),
        Site('juxtacortical', (-15.7, 17.9, 34.2), (0.03, 0.04, 1.0)),
        Site('juxtacortical', (17.5, 17.7, 33.7), (0.01, 0.04, 1.0)),
        Site('juxtacortical', (-24.1, -41.9, 32.4), (-0.6, -0.4, 0.69)),
        Site('juxtacortical', (25.6, -42.2, 31.5), (0.63, -0.4, 0.67)),
        Site('juxtacortical', (-31.4, -17.4, 4.8), (-1.0, 0.01, 0.02)),
        Site('juxtacortical', (31.6, -17.8, 3.7), (1.0, -0.01, -0.01)),
        Site('pons', (-4.6, -22.8, -18.6), None),
        Site('pons', (3.7, -22.9, -18.7), None),
        Site('cerebellum', (-23.7, -54.4, -21.1), None),
        Site('cerebellum', (22.6, -54.7, -21.9), None),
        Site('cso', (-19.9, -7.8, 31.3), None),
        Site('cso', (21.5, -8.1, 30.5), None),
        Site('cso', (-19.1, 9.2, 28.4), None),
        Site('cso', (20.6, 8.9, 27.7), None),
        Site('juxtacortical', (-32.5, 9.0, 23.3), (-1.0, 0.01, 0.01)),
        Site('juxtacortical', (33.8, 8.6, 22.1), (1.0, -0.01, -0.01)),
        Site('juxtacortical', (-28.7, -59.6, 17.6), (-0.52, -0.86, 0.04)),
        Site('juxtacortical', (29.3, -60.0, 16.6), (0.53, -0.85, 0.03)),
        Site('juxtacortical', (-36.8, -33.8, 20.8), (-1.0, 0.01, 0.02)),
        Site('juxtacortical', (37.7, -34.3, 19.5), (1.0, 0.0, -0.01)),
        Site('juxtacortical', (-22.8, 34.1, 10.8), (-0.52, 0.86, -0.03)),
        Site('juxtacortical', (23.6, 33.7, 10.0), (0.52, 0.86, -0.04)),
    ],
    "isbi2015/training01": [
        Site('ventricle', (-5.0, 39.0, 74.4), (-1.0, -0.05, 0.01)),
        Site('ventricle', (6.1, 39.6, 74.2), (1.0, 0.05, -0.01)),
        Site('ventricle', (-5.9, 49.2, 71.5), (-0.73, 0.66, 0.19)),
        Site('ventricle', (5.2, 49.8, 71.3), (0.64, 0.75, 0.18)),
        Site('juxtacortical', (-19.0, 54.6, 98.9), (0.03, -0.15, 0.99)),
        Site('juxtacortical', (18.2, 56.5, 98.3), (0.03, -0.13, 0.99)),
        Site('juxtacortical', (-23.1, -11.7, 77.6), (-0.57, -0.56, 0.6)),
        Site('juxtacortical', (32.6, -8.8, 76.7), (0.67, -0.48, 0.56)),
        Site('juxtacortical', (-33.7, 20.7, 54.1), (-1.0, -0.05, 0.01)),
        Site('juxtacortical', (36.9, 24.4, 53.0), (1.0, 0.05, -0.02)),
        Site('pons', (-3.4, 21.3, 25.9), None),
        Site('pons', (5.9, 21.8, 25.7), None),
        Site('cerebellum', (-22.1, -14.3, 12.8), None),
        Site('cerebellum', (29.9, -11.5, 12.0), None),
        Site('cso', (-21.5, 26.5, 87.3), None),
        Site('cso', (25.0, 28.9, 86.5), None),
        Site('cso', (-22.1, 45.9, 89.5), None),
        Site('cso', (22.5, 48.2, 88.8), None),
        Site('juxtacortical', (-37.2, 46.0, 83.5), (-1.0, -0.05, 0.02)),
        Site('juxtacortical', (37.2, 49.9, 82.3), (1.0, 0.05, -0.01)),
        Site('juxtacortical', (-26.8, -28.4, 55.1), (-0.44, -0.87, -0.21)),
        Site('juxtacortical', (38.3, -25.0, 54.1), (0.57, -0.79, -0.22)),
        Site('juxtacortical', (-38.2, -1.1, 67.0), (-1.0, -0.05, 0.01)),
        Site('juxtacortical', (45.4, 3.3, 65.7), (1.0, 0.05, -0.02)),
        Site('juxtacortical', (-28.7, 76.9, 77.4), (-0.57, 0.79, 0.22)),
        Site('juxtacortical', (23.4, 79.6, 76.6), (0.45, 0.87, 0.2)),
    ],
    "isbi2015/training02": [
        Site('ventricle', (-0.5, 47.9, 126.6), (-1.0, -0.09, -0.02)),
        Site('ventricle', (9.7, 48.7, 126.8), (1.0, 0.09, 0.02)),
        Site('ventricle', (-1.8, 56.5, 121.5), (-0.77, 0.64, -0.03)),
        Site('ventricle', (8.5, 57.3, 121.8), (0.61, 0.79, -0.01)),
        Site('juxtacortical', (-13.8, 65.2, 143.2), (0.05, 0.05, 1.0)),
        Site('juxtacortical', (20.3, 68.2, 144.0), (0.05, 0.04, 1.0)),
        Site('juxtacortical', (-15.0, 2.6, 141.2), (-0.55, -0.47, 0.69)),
        Site('juxtacortical', (36.2, 7.0, 142.3), (0.67, -0.32, 0.67)),
        Site('juxtacortical', (-26.3, 27.3, 112.3), (-1.0, -0.09, -0.02)),
        Site('juxtacortical', (38.5, 32.8, 113.8), (1.0, 0.08, 0.01)),
        Site('pons', (1.3, 24.2, 89.3), None),
        Site('pons', (9.8, 24.9, 89.5), None),
        Site('cerebellum', (-14.5, -10.3, 86.0), None),
        Site('cerebellum', (33.2, -6.2, 87.1), None),
        Site('cso', (-15.0, 38.2, 140.1), None),
        Site('cso', (27.6, 41.9, 141.0), None),
        Site('cso', (-16.4, 55.8, 137.1), None),
        Site('cso', (24.5, 59.4, 138.0), None),
        Site('juxtacortical', (-30.1, 54.3, 131.4), (-1.0, -0.08, -0.01)),
        Site('juxtacortical', (38.0, 60.0, 132.7), (1.0, 0.08, 0.02)),
        Site('juxtacortical', (-17.8, -16.1, 125.7), (-0.43, -0.9, 0.01)),
        Site('juxtacortical', (41.8, -11.2, 126.8), (0.61, -0.8, 0.04)),
        Site('juxtacortical', (-29.3, 9.7, 128.7), (-1.0, -0.08, -0.02)),
        Site('juxtacortical', (47.3, 16.1, 130.1), (1.0, 0.08, 0.02)),
        Site('juxtacortical', (-23.6, 81.1, 118.9), (-0.61, 0.8, -0.04)),
        Site('juxtacortical', (24.1, 85.1, 119.8), (0.42, 0.91, -0.01)),
    ],
    "isbi2015/training03": [
        Site('ventricle', (-6.1, 36.8, 87.8), (-1.0, -0.02, -0.02)),
        Site('ventricle', (4.5, 37.1, 88.1), (1.0, 0.03, 0.02)),
        Site('ventricle', (-6.4, 47.6, 85.9), (-0.71, 0.68, 0.18)),
        Site('ventricle', (4.2, 47.9, 86.2), (0.65, 0.73, 0.22)),
        Site('juxtacortical', (-19.8, 48.6, 109.8), (-0.04, -0.34, 0.94)),
        Site('juxtacortical', (15.6, 49.6, 110.7), (-0.02, -0.34, 0.94)),
        Site('juxtacortical', (-25.7, -14.2, 86.9), (-0.59, -0.65, 0.47)),
        Site('juxtacortical', (27.4, -12.8, 88.2), (0.61, -0.61, 0.51)),
        Site('juxtacortical', (-33.3, 22.8, 67.9), (-1.0, -0.02, -0.03)),
        Site('juxtacortical', (34.0, 24.7, 69.5), (1.0, 0.02, 0.03)),
        Site('pons', (-3.2, 27.5, 44.2), None),
        Site('pons', (5.7, 27.7, 44.4), None),
        Site('cerebellum', (-21.9, -5.5, 29.8), None),
        Site('cerebellum', (27.7, -4.2, 31.1), None),
        Site('cso', (-22.9, 22.5, 97.8), None),
        Site('cso', (21.3, 23.7, 98.9), None),
        Site('cso', (-22.8, 41.6, 100.9), None),
        Site('cso', (19.7, 42.8, 101.9), None),
        Site('juxtacortical', (-36.8, 42.8, 95.2), (-1.0, -0.03, -0.02)),
        Site('juxtacortical', (34.0, 44.9, 97.1), (1.0, 0.02, 0.02)),
        Site('juxtacortical', (-28.8, -27.2, 65.8), (-0.47, -0.84, -0.26)),
        Site('juxtacortical', (33.1, -25.4, 67.4), (0.54, -0.81, -0.24)),
        Site('juxtacortical', (-39.1, -1.5, 77.6), (-1.0, -0.03, -0.02)),
        Site('juxtacortical', (40.6, 0.8, 79.7), (1.0, 0.03, 0.02)),
        Site('juxtacortical', (-27.1, 74.8, 92.1), (-0.54, 0.81, 0.24)),
        Site('juxtacortical', (22.4, 76.2, 93.4), (0.46, 0.85, 0.26)),
    ],
}
