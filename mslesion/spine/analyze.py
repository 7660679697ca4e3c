"""`analyze_spine`: cord, levels, cord lesions and their report for one spinal image."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from .. import __version__
from ..clock import Clock
from ..errors import InputError
from ..inputs import prepare_out_dir
from ..io import load_volume, save_volume
from ..lesions import CORD_COLUMNS, CordLesion
from ..location.dis import dis_verdict
from ..report import DisVerdict, RegionCount, SpineReport, write_lesions_csv, write_report
from ..volume import Volume
from .cord import CordOptions, check_contrast
from .find import find_cord
from .grid import to_native, to_working
from .lesions import LesionOptions, segment_cord_lesions
from .levels import anterior_profile, auto_levels_limit, detect_discs, discs_on_grid, level_name, levels_per_slice
from .plausibility import CordCriteria
from .qc import sagittal_png
from .report_html import write_spine_html

log = logging.getLogger(__name__)

OUTPUT_FILES = ("cord.nii.gz", "cord_lesions.nii.gz", "cord_lesions.csv", "qc_sagittal.png", "report.json")
CSV_COLUMNS = CORD_COLUMNS


@dataclass
class SpineOptions:
    cord: CordOptions = field(default_factory=CordOptions)
    lesion: LesionOptions = field(default_factory=LesionOptions)
    disc_labels: Path | None = None     # SCT-style disc labels (3 = C2/C3 disc) on the image's space
    auto_levels: bool = True            # detect discs when no labels are given
    top_disc: int = 3                   # number of the most superior detected disc (3 = C2/C3)
    criteria: CordCriteria = field(default_factory=CordCriteria)  # what counts as a spinal cord


@dataclass
class SpineResult:
    cord_mask: Volume
    lesion_mask: Volume
    lesions: list[CordLesion]
    report: SpineReport
    out_dir: Path | None = None


def analyze_spine(image: Path, contrast: str | None, out_dir: Path | None,
                  options: SpineOptions | None = None) -> SpineResult:
    """Load a spinal image and analyse it (see :func:`analyze_volume`); ``contrast`` None: inferred."""
    image = Path(image)
    check_contrast(contrast, image)
    vol = load_volume(image, role="spinal image" if contrast is None else f"spinal {contrast.upper()}")
    return analyze_volume(vol, contrast, out_dir, options)


def analyze_volume(vol: Volume, contrast: str | None, out_dir: Path | None,
                   options: SpineOptions | None = None) -> SpineResult:
    """Segment cord and cord lesions, label levels, measure; write outputs atomically if ``out_dir``.

    ``contrast`` None: read from the file name, else from the image (see :func:`find_cord`).
    Raises :class:`~mslesion.spine.plausibility.NoCordError` when the image holds no plausible cord.
    """
    check_contrast(contrast, vol.path)
    opts = options or SpineOptions()
    clock = Clock(digits=3)
    if out_dir is not None:  # an unwritable output is refused before the analysis, not after it
        out_dir = prepare_out_dir(out_dir)
    work = to_working(vol)
    if min(work.shape[:2]) < 16:
        raise InputError(vol.path, f"field of view {work.shape} too small to hold a spinal cord")
    choice, cord, features = find_cord(work, vol.path, contrast, opts.cord, opts.criteria)
    contrast = choice.contrast
    cord_bin = cord.soft >= 0.5
    les_work = segment_cord_lesions(work.data, cord_bin, work.zooms, contrast, opts.lesion)
    levels = vertebral_levels(work, cord, opts)
    geometry = _centreline_geometry(work, cord.centres)
    lesions = measure_lesions(les_work, work, geometry, levels.per_slice)
    csa = csa_per_level(cord.soft, work, geometry, levels.per_slice, cord.found)
    cord_native = to_native(work.with_data(cord.soft), vol)
    lesion_native = to_native(work.with_data(les_work.astype(np.float32)), vol)
    report = _spine_report(vol, work, choice, cord, features, geometry, levels, lesions, csa, cord_native)
    clock.total("total_s")
    report.timings_s = clock.timings
    result = SpineResult(cord_native, lesion_native, lesions, report, None)
    if out_dir is not None:
        result.out_dir = _write_spine_outputs(Path(out_dir), result, vol, work, cord_bin, les_work, cord.centres,
                                              levels.per_slice)
    return result


@dataclass
class VertebralLevels:
    """The vertebral level of each working slice (0: none) and where it came from, or why there is none."""

    per_slice: np.ndarray
    #: (slice position, disc number) of each disc found or given
    discs: list[tuple[float, int]]
    source: str | None
    reason: str | None


def vertebral_levels(work: Volume, cord: Any, opts: SpineOptions) -> VertebralLevels:
    """Levels from the given disc labels, else from discs detected anterior to the cord (when asked)."""
    nz = work.shape[2]
    levels = np.zeros(nz, int)
    level_source = None
    level_reason = None
    discs: list[tuple[float, int]] = []
    if opts.disc_labels is not None:
        labels = load_volume(opts.disc_labels, role="disc labels")
        discs = discs_on_grid(labels, work)
        level_source = f"disc labels {opts.disc_labels}"
        if not discs:
            level_reason = f"the disc labels {opts.disc_labels} hold no label inside the image's field of view"
    elif opts.auto_levels:
        level_reason = auto_levels_limit(nz, work.zooms[2])
        if level_reason is None:
            discs = detect_discs(anterior_profile(work.data, cord.centres, cord.radii, work.zooms), work.zooms[2],
                                 top_disc=opts.top_disc)
            if discs:
                level_source = (f"automatic: {len(discs)} disc(s) detected anterior to the cord; the most superior "
                                f"one taken as disc {opts.top_disc} ({level_name(opts.top_disc - 1)}/"
                                f"{level_name(opts.top_disc)})")
            else:
                level_reason = ("no intervertebral disc stood out in the intensity profile anterior to the cord; "
                                "give disc labels (--disc-labels) to get levels")
    else:
        level_reason = "not requested (--no-levels)"
    if discs:
        levels = levels_per_slice(discs, nz, work.zooms[2])
    return VertebralLevels(levels, discs, level_source, level_reason)


def _spine_report(vol: Volume, work: Volume, choice: Any, cord: Any, features: dict, geometry: dict,
                  levels: VertebralLevels, lesions: list[CordLesion], csa: dict, cord_native: Volume) -> SpineReport:
    """The spinal report of one image (timings are added by the caller)."""
    nz = work.shape[2]
    cord_volume = sum(les.volume_mm3 for les in lesions)
    discs = levels.discs
    return SpineReport(
        kind="spinal_cord",
        image={"path": str(vol.path) if vol.path else None, **choice.as_report(), "shape": list(vol.shape),
               "voxel_size_mm": [round(z, 4) for z in vol.zooms]},
        cord={"volume_mm3": round(float(cord_native.data.sum()) * vol.voxel_volume_ml * 1000, 1),
              "slices_found": int(cord.found.sum()), "slices": int(nz),
              "length_mm": round(float(geometry["arc"][-1] - geometry["arc"][0]), 1) if nz > 1 else 0.0,
              "csa_mm2_per_level": csa, "plausibility": features},
        levels={"source": levels.source, "reason": levels.reason if not discs else None,
                "covered": sorted({level_name(int(n)) for n in levels.per_slice if n}, key=_level_key),
                "discs": [{"disc": int(n), "between": f"{level_name(int(n) - 1)}/{level_name(int(n))}",
                           "world_mm": [round(float(c), 1) for c in (work.affine @ np.array(
                               [*_centre_at(cord.centres, zpos), zpos, 1.0]))[:3]]} for zpos, n in discs]},
        lesion_count=len(lesions),
        total_lesion_volume_mm3=round(float(cord_volume), 1),
        regions={"spinal_cord": RegionCount(count=len(lesions), volume_ml=round(float(cord_volume) / 1000, 5))},
        mcdonald_dis=spinal_dis(lesions, choice.contrast),
        method={"cord": "centreline tracking + polar dynamic-programming border (classical)",
                "lesions": "robust z-score vs normal cord, lesion-scale matched filters and left-right "
                           "asymmetry vs the mirrored cord, hysteresis inside cord"},
        mslesion_version=__version__,
    )


def _write_spine_outputs(out: Path, result: SpineResult, vol: Volume, work: Volume, cord_bin: np.ndarray,
                         les_work: np.ndarray, centres: np.ndarray, levels: np.ndarray) -> Path:
    """Masks, lesion table, sagittal QC figure, HTML page and report.json (last) of one spinal image."""
    save_volume(result.cord_mask, out / "cord.nii.gz", dtype=np.uint8)
    save_volume(result.lesion_mask, out / "cord_lesions.nii.gz", dtype=np.uint8)
    write_lesions_csv(out / "cord_lesions.csv", result.lesions, CordLesion.COLUMNS)
    sagittal_png(out / "qc_sagittal.png", work.data, cord_bin, les_work, centres[:, 0], work.zooms, levels,
                 title=f"{Path(str(vol.path)).name if vol.path else 'image'}: cord (green), lesions (red)")
    write_spine_html(out, result.report, result.lesions)
    write_report(out / "report.json", result.report)
    return out


def spinal_dis(lesions: list[CordLesion], contrast: str, min_long_axis_mm: float = 3.0) -> DisVerdict:
    """DIS verdict with the spinal-cord area only (the brain areas are 'not assessed' here).

    A lesion qualifies when its long axis (length along the cord or axial extent) is >= 3 mm.
    T1 hypointensities are not McDonald lesions, so on T1 the cord counts as not assessed.
    ``report.mcdonald_dis.qualifying_lesions_per_area["spinal_cord"]`` is what a combined
    brain + cord report adds to the brain's counts.
    """

    if contrast == "t1":
        return DisVerdict.of(dis_verdict({}))
    n = sum(1 for les in lesions if max(les.length_mm, les.max_axial_extent_mm) >= min_long_axis_mm)
    return DisVerdict.of(dis_verdict({"spinal_cord": n}))


def _centre_at(centres: np.ndarray, zpos: float) -> tuple[float, float]:
    z = int(np.clip(round(zpos), 0, len(centres) - 1))
    return float(centres[z, 0]), float(centres[z, 1])


def _level_key(name: str) -> tuple[int, int]:
    return ("CTLS".index(name[0]) if name[0] in "CTLS" else 9, int(name[1:]) if name[1:].isdigit() else 0)


def _centreline_geometry(work: Volume, centres: np.ndarray) -> dict:
    """World points, arc length (mm) and cos(tilt) of the centreline per working slice."""
    nz = work.shape[2]
    vox = np.column_stack([centres, np.arange(nz)])
    world = np.c_[vox, np.ones(nz)] @ work.affine.T
    pts = world[:, :3]
    if nz > 2:
        pts_s = ndimage.gaussian_filter1d(pts, sigma=max(1.0, 3.0 / work.zooms[2]), axis=0, mode="nearest")
    else:
        pts_s = pts
    seg = np.linalg.norm(np.diff(pts_s, axis=0), axis=1) if nz > 1 else np.zeros(0)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    tangent = np.gradient(pts_s, axis=0) if nz > 1 else np.array([[0, 0, 1.0]])
    axis = work.affine[:3, 2] / np.linalg.norm(work.affine[:3, 2])
    cos = np.abs(tangent @ axis) / np.maximum(np.linalg.norm(tangent, axis=1), 1e-6)
    return {"world": pts, "arc": arc, "cos": np.clip(cos, 0.2, 1.0)}


def measure_lesions(mask: np.ndarray, work: Volume, geometry: dict, levels: np.ndarray) -> list[CordLesion]:
    """Per lesion: volume, length along the cord, maximal axial extent, levels, centroid."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    zooms = work.zooms
    voxel_mm3 = float(abs(np.linalg.det(work.affine[:3, :3])))
    rows: list[CordLesion] = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None:
            continue
        pts = np.argwhere(lab[sl] == i) + np.array([s.start for s in sl])
        zs = np.unique(pts[:, 2])
        arc = geometry["arc"][zs]
        length = float(np.ptp(arc)) + zooms[2] * float(np.mean(geometry["cos"][zs]))
        extent = 0.0
        for z in zs:
            p = pts[pts[:, 2] == z][:, :2] * np.array(zooms[:2])
            if len(p) > 400:
                p = p[np.linspace(0, len(p) - 1, 400).astype(int)]
            d = np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)).max() if len(p) > 1 else 0.0
            extent = max(extent, float(d) + float(np.sqrt(zooms[0] * zooms[1])))
        centroid = work.affine @ np.append(pts.mean(0), 1.0)
        lv = sorted({int(levels[z]) for z in zs if levels[z]})
        rows.append(CordLesion(
            id=len(rows) + 1, voxels=len(pts), volume_ml=round(len(pts) * voxel_mm3, 2) / 1000.0,
            centroid_x=round(float(centroid[0]), 2), centroid_y=round(float(centroid[1]), 2),
            centroid_z=round(float(centroid[2]), 2), region="spinal_cord",
            length_mm=round(length, 2), max_axial_extent_mm=round(extent, 2),
            levels=";".join(level_name(v) for v in lv)))
    return rows


def csa_per_level(soft: np.ndarray, work: Volume, geometry: dict, levels: np.ndarray, found: np.ndarray) -> dict:
    """Mean cord cross-sectional area (mm^2, corrected for cord tilt) per vertebral level (or 'all')."""
    px = work.zooms[0] * work.zooms[1]
    area = soft.sum(axis=(0, 1)) * px * geometry["cos"]
    out: dict[str, dict] = {}
    groups = {"all": found.copy()}
    for n in sorted(set(int(v) for v in levels if v)):
        groups[level_name(n)] = found & (levels == n)
    for name, sel in groups.items():
        if sel.any():
            vals = area[sel]
            out[name] = {"mean": round(float(vals.mean()), 1), "sd": round(float(vals.std()), 1),
                         "slices": int(sel.sum())}
    return out
