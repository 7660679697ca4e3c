"""Per-subject QC: mosaics, lesion gallery and DIR/report.html."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Protocol

import numpy as np
from scipy import ndimage

from ..clock import Clock
from ..lesions import Lesion, label_components
from ..report import Report, as_report
from ..volume import Volume
from .figures import (
    lesion_lut,
    lesion_points,
    lesion_strip,
    mosaic,
    orientation_note,
    region_colour,
    render_tile,
    save_png,
    thumbnail,
)
from .html import write_report_html
from .render import clip_box, intensity_window, label_tile, mask_box, sample, world_box
from .sections import subject_sections

log = logging.getLogger(__name__)

#: at most this many lesions get a gallery thumbnail (largest first).
MAX_GALLERY = 60
MOSAIC_SLICES = {"axial": 12, "coronal": 8, "sagittal": 8}
BRAIN_MASK_SLICES = 8
BRAIN_MASK_COLOUR = "#00E5FF"


def lesion_labels(mask: Volume, lesions: list[Lesion]) -> np.ndarray:
    """Label image whose values are the lesions' ids (components matched by voxel count and centroid)."""
    labels, n = label_components(np.asarray(mask.data) > 0, 26)
    out = np.zeros(labels.shape, dtype=np.int32)
    if n == 0 or not lesions:
        return out
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    remap = np.zeros(n + 1, dtype=np.int32)
    if n == len(lesions) and all(0 < l.id <= n and counts[l.id] == l.voxels for l in lesions):
        for les in lesions:  # same labelling as lesions.find_lesions: ids are the component numbers
            remap[les.id] = les.id
        return remap[labels]
    cents = np.asarray(ndimage.center_of_mass(np.ones(labels.shape, np.uint8), labels, np.arange(1, n + 1)))
    world = cents.reshape(-1, 3) @ mask.affine[:3, :3].T + mask.affine[:3, 3]
    free = np.ones(n + 1, dtype=bool)
    free[0] = False
    for les in lesions:
        target = np.array([les.centroid_x, les.centroid_y, les.centroid_z])
        cost = np.sum((world - target) ** 2, axis=1) + 1e9 * (counts[1:] != les.voxels) + 1e18 * ~free[1:]
        c = int(np.argmin(cost)) + 1
        if free[c]:
            remap[c] = les.id
            free[c] = False
    out = remap[labels]
    return out


def lesion_centre(labels: np.ndarray, les_id: int, affine: np.ndarray, target: np.ndarray,
                  box: tuple[slice, ...] | None) -> tuple[np.ndarray, float]:
    """World point of the lesion voxel nearest its centroid, and the lesion's largest world extent (mm)."""
    off = np.array([s.start for s in box]) if box else np.zeros(3, int)
    sub = labels[box] if box else labels
    vox = np.argwhere(sub == les_id) + off
    world = vox @ affine[:3, :3].T + affine[:3, 3]
    best = world[int(np.argmin(np.sum((world - target) ** 2, axis=1)))]
    half = np.abs(affine[:3, :3]).sum(axis=1) / 2
    extent = float(np.max(world.max(axis=0) - world.min(axis=0) + 2 * half))
    return best, extent


class _Preprocessed(Protocol):
    @property
    def native(self) -> Volume: ...

    @property
    def brain_mask(self) -> Volume | None: ...


class SubjectOutputs(Protocol):
    """What the subject page is drawn from (an :class:`~mslesion.pipeline.AnalysisResult` is one)."""

    @property
    def lesion_mask(self) -> Volume: ...

    @property
    def lesions(self) -> list[Lesion]: ...

    @property
    def report(self) -> Report | dict[str, Any]: ...

    @property
    def preprocessed(self) -> _Preprocessed: ...


def key_figures(report: Report | Mapping[str, Any]) -> dict:
    """The few numbers a reader wants first: dotted report key -> (label, value)."""
    report = as_report(report)
    figs: dict[str, tuple[str, object]] = {"lesion_count": ("lesions", report.lesion_count),
                                           "total_volume_ml": ("total volume (mL)", report.total_volume_ml)}
    if report.mcdonald_dis is not None:
        figs["mcdonald_dis.met"] = ("McDonald 2017 DIS met", report.mcdonald_dis.met)
    if report.model.id is not None:
        figs["model.id"] = ("model", report.model.id)
    return figs


def brain_mask_figure(image: Volume, brain: Volume, box: tuple[np.ndarray, np.ndarray], window: tuple[float, float],
                      qc: Path, convention: str, info: Any = None) -> tuple[str, Path]:
    """Axial slices over the brain's extent with the brain mask outlined: (caption, qc/brain_mask.png).

    ``info``: the report's brain_mask section (method, volume), or None.
    """
    lut = lesion_lut(1, {1: BRAIN_MASK_COLOUR})
    mask = brain.with_data((np.asarray(brain.data) > 0).astype(np.uint8))
    method = getattr(info, "method", None) or "unknown method"
    volume = getattr(info, "volume_ml", None)
    img, _ = mosaic(image, mask, lut, "axial", n=BRAIN_MASK_SLICES, box=box, window=window, lesion_xyz=np.zeros((0, 3)),
                    title=f"Brain mask ({method}{f', {volume:g} mL' if volume is not None else ''}) "
                          "outlined on the FLAIR",
                    convention=convention)
    return "Brain mask outline (cyan) on axial FLAIR slices", save_png(img, qc / "brain_mask.png")


def enhancement_gallery(result: SubjectOutputs, report: Report, labels: Volume, lut: np.ndarray, qc: Path,
                        convention: str) -> list[tuple[str, str]]:
    """The page's sections, the enhancement section followed by its gallery (qc/enhancing_NN.png) where assessed."""
    from .enhancement import gallery_html, write_enhancement_gallery

    sections = subject_sections(report)
    enh = report.enhancement
    images = getattr(result.preprocessed, "images", None) or {}
    assessed = enh is not None and enh.enhancement_assessed
    pictures = write_enhancement_gallery(images if assessed else {}, result.preprocessed.brain_mask, labels, lut,
                                         list(result.lesions), enh, qc, convention)
    if not assessed:
        return sections
    total = (sum(les.extra.get("enhancing") == "yes" for les in result.lesions)
             + len((enh.enhancing_foci_outside_lesions if enh is not None else None) or []))
    return [(head, html + gallery_html(pictures, total) if head.startswith("Enhancement") else html)
            for head, html in sections]


def write_subject_qc(result: SubjectOutputs, out_dir: Path, convention: str = "radiological") -> Path:
    """Write DIR/qc/*.png and DIR/report.html for one analysis; returns the HTML path.

    Also records its own duration as ``qc_s`` in the report's timings (when a report.json dict has them).
    """
    report = as_report(result.report)
    clock = Clock()
    out_dir = Path(out_dir)
    qc = out_dir / "qc"
    for old in qc.glob("lesion_*.png") if qc.is_dir() else ():
        old.unlink(missing_ok=True)  # a previous run may have had more lesions
    image = result.preprocessed.native
    mask = result.lesion_mask
    lesions = list(result.lesions)
    ids = lesion_labels(mask, lesions)
    labels = mask.with_data(ids)
    regions = sorted({les.region or "unclassified" for les in lesions})
    lut = lesion_lut(max((l.id for l in lesions), default=0),
                     {les.id: region_colour(les.region, regions) for les in lesions})
    legend = [(r, region_colour(r, regions)) for r in regions]
    brain = result.preprocessed.brain_mask
    has_brain = brain is not None and bool(np.any(brain.data))
    head_box = world_box(image)
    # the brain's own extent
    box = clip_box(mask_box(brain, margin_mm=4.0), head_box) if has_brain and brain is not None else head_box
    window = intensity_window(image, brain if has_brain else None)
    pts = lesion_points(labels)
    if has_brain and pts.size:  # slices stay inside the brain's extent, whatever lies outside it
        pts = pts[np.all((pts >= box[0]) & (pts <= box[1]), axis=1)]
    images: list[tuple[str, Path]] = []
    best_axial = None
    for view, n in MOSAIC_SLICES.items():
        img, planes = mosaic(image, labels, lut, view, n=n, legend=legend, box=box, window=window, lesion_xyz=pts,
                             title=f"{view.capitalize()} FLAIR slices with lesion outlines", convention=convention)
        images.append((f"{view.capitalize()} slices", save_png(img, qc / f"{view}.png")))
        if view == "axial" and planes:
            best_axial = max(planes, key=lambda pl: int(np.count_nonzero(sample(labels, pl, order=0))))
    if has_brain and brain is not None:
        images.append(brain_mask_figure(image, brain, box, window, qc, convention, report.brain_mask))
    volumes = getattr(result, "volumes", None)
    if volumes is not None and volumes.labels is not None:  # issue 18
        from .volumes import tissue_figure

        images.append(("Tissue classes: CSF blue, GM orange, WM white, lesions red",
                       tissue_figure(image, volumes.labels, box, window, qc / "tissue.png", convention)))
    for n, spine in enumerate(report.spine or []):  # analyze --spine: the cord's own QC view
        png = Path(spine.out_dir) / "qc_sagittal.png" if spine.out_dir else None
        if png is not None and png.is_file():
            images.append((f"Spinal cord {n}: {Path(spine.image).name} (cord green, lesions red)", png))
    gallery: list[tuple[str, Path, str]] = []
    boxes = ndimage.find_objects(ids)
    for les in sorted(lesions, key=lambda l: -l.volume_ml)[:MAX_GALLERY]:
        box_l = boxes[les.id - 1] if les.id - 1 < len(boxes) else None
        if box_l is None:
            continue
        target = np.array([les.centroid_x, les.centroid_y, les.centroid_z])
        centre, extent = lesion_centre(ids, les.id, mask.affine, target, box_l)
        cap = f"#{les.id} {les.region or 'unclassified'} {les.volume_ml * 1000:.0f} mm\u00b3"
        strip = lesion_strip(image, labels, lut, centre, extent, cap, window, convention, focus=les.id)
        gallery.append((cap, save_png(strip, qc / f"lesion_{les.id:03d}.png"), f"lesion-{les.id}"))
    if best_axial is not None:  # the axial slice with the most lesion, for the batch index
        tile = label_tile(render_tile(image, best_axial, window, [(labels, lut)]), "axial", convention)
        save_png(thumbnail(tile, 160), qc / "thumbnail.png")
    note = orientation_note(convention)
    if len(lesions) > MAX_GALLERY:
        note += f" Gallery shows the {MAX_GALLERY} largest of {len(lesions)} lesions."
    name = out_dir.resolve().name
    flair_input = report.inputs.get("flair")
    flair = flair_input.path if flair_input is not None else None
    title = f"mslesion report: {name}" + (f" ({Path(flair).name})" if flair else "")
    sections = enhancement_gallery(result, report, labels, lut, qc, convention)
    html = write_report_html(out_dir, title, None, [l.row() for l in lesions], images,
                             legend=legend, note=note, gallery=gallery, table_links={"id": "#lesion-{id}"},
                             key_figures=key_figures(report), sections=sections,
                             table_title="Lesions")
    seconds = clock.total()
    timings = result.report.timings_s if isinstance(result.report, Report) else result.report.get("timings_s")
    if isinstance(timings, dict):  # report.json is written after this
        timings["qc_s"] = round(seconds, 3)
    log.info("QC for %s written in %.2f s (%d lesion thumbnails)", out_dir, seconds, len(gallery))
    return html
