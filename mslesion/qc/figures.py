"""QC figures: slice mosaics, per-lesion thumbnails, baseline/follow-up, cord views.

All functions take :class:`~mslesion.volume.Volume` objects in one world
space (any grids) and return PIL images or write PNGs atomically.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..atomic import write_bytes
from ..volume import Volume
from .render import (
    Plane,
    add_header_footer,
    draw_outlines,
    grid,
    hex_rgb,
    intensity_window,
    label_tile,
    sample,
    snap_to_slice,
    text,
    to_rgb,
    world_box,
)

log = logging.getLogger(__name__)

#: Okabe-Ito colour-blind-safe colours per region.
REGION_COLOURS = {
    "periventricular": "#E69F00",
    "juxtacortical": "#56B4E9",
    "cortical": "#0072B2",
    "juxtacortical_cortical": "#56B4E9",
    "infratentorial": "#009E73",
    "deep_white_matter": "#F0E442",
    "spinal_cord": "#CC79A7",
    "unclassified": "#FF4040",
}
EXTRA_COLOURS = ("#D55E00", "#A6D854", "#FC8D62", "#8DA0CB", "#E78AC3", "#FFD92F")
NEW_COLOUR, EXISTING_COLOUR, CORD_COLOUR = "#FF2020", "#56B4E9", "#00E5FF"
TILE_PX = 256


def region_colour(region: str, known: list[str] | None = None) -> str:
    """Fixed colour of a region; unknown names get a stable extra colour."""
    key = (region or "unclassified").lower()
    if key in REGION_COLOURS:
        return REGION_COLOURS[key]
    others = sorted(known or [key])
    return EXTRA_COLOURS[(others.index(key) if key in others else 0) % len(EXTRA_COLOURS)]


def orientation_note(convention: str) -> str:
    if convention == "radiological":
        return "Radiological convention: patient's right on image left (R...L); sagittal: anterior left."
    return "Neurological convention: patient's left on image left (L...R); sagittal: anterior left."


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def save_png(img: Image.Image, path: Path) -> Path:
    """Write a PNG atomically."""
    write_bytes(path, png_bytes(img))
    return Path(path)


def lesion_points(labels: Volume) -> np.ndarray:
    """World coordinates (N, 3) of every labelled voxel (at most ~200k, evenly thinned)."""
    idx = np.argwhere(np.asarray(labels.data) > 0)
    if len(idx) > 200_000:
        idx = idx[:: len(idx) // 200_000 + 1]
    return idx @ labels.affine[:3, :3].T + labels.affine[:3, 3]


def choose_slices(lo: float, hi: float, n: int, lesion_coords: np.ndarray, half_width: float = 2.0) -> list[float]:
    """``n`` slice positions spread evenly over [lo, hi]; up to half of them moved to lesion-laden places.

    The range is cut into ``n`` equal bins with a slice at each centre; in the (at most n // 2) bins
    holding the most lesion, the slice moves onto the lesion position of highest density within the
    bin that stays half a bin from the other slices.  Every bin keeps one slice, so the slices cover
    the whole range and no two show nearly the same cut.
    """
    if n <= 0 or hi <= lo:
        return [0.5 * (lo + hi)] if n > 0 else []
    span = hi - lo
    width = span / n
    out = list(lo + width * (np.arange(n) + 0.5))
    if lesion_coords.size:
        srt = np.sort(lesion_coords[(lesion_coords >= lo) & (lesion_coords <= hi)])
        # candidates are lesion voxel positions themselves, so a chosen slice always cuts a lesion
        cand = np.unique(np.round(srt, 1))
        if cand.size > 2000:
            cand = cand[np.linspace(0, cand.size - 1, 2000).astype(int)]
        score = (np.searchsorted(srt, cand + half_width) - np.searchsorted(srt, cand - half_width)).astype(float)
        bins = np.clip(((cand - lo) // width).astype(int), 0, n - 1)
        totals = np.zeros(n)
        np.maximum.at(totals, bins, score)
        for b in [int(b) for b in np.argsort(-totals, kind="stable")[: n // 2] if totals[b] > 0]:
            others = np.delete(np.asarray(out), b)
            # the best lesion position in the bin that keeps half a bin from every other slice
            mine = np.flatnonzero((bins == b) & (score > 0))
            for i in mine[np.argsort(-score[mine], kind="stable")]:
                if others.size == 0 or np.min(np.abs(others - cand[i])) >= width / 2:
                    out[b] = float(cand[i])
                    break
    return sorted(out)


def lesion_lut(n_labels: int, colours: dict[int, str], default: str = "#FF4040") -> np.ndarray:
    lut = np.zeros((n_labels + 1, 3), dtype=np.uint8)
    lut[1:] = hex_rgb(default)
    for lab, c in colours.items():
        if 0 < lab <= n_labels:
            lut[lab] = hex_rgb(c)
    return lut


def render_tile(image: Volume, plane: Plane, window: tuple[float, float],
                overlays: Sequence[tuple[Volume, np.ndarray]] = (), width: int = 1) -> Image.Image:
    """One slice of ``image`` with outlines of each (label volume, colour lut) overlay."""
    rgb = to_rgb(sample(image, plane, order=1), window)
    for labels, lut in overlays:
        draw_outlines(rgb, sample(labels, plane, order=0), lut, width=width)
    return Image.fromarray(rgb)


def mosaic(image: Volume, labels: Volume | None, lut: np.ndarray, view: str, n: int = 12, ncols: int = 4,
           convention: str = "radiological", legend: Sequence[tuple[str, str]] = (), title: str | None = None,
           box: tuple[np.ndarray, np.ndarray] | None = None, window: tuple[float, float] | None = None,
           lesion_xyz: np.ndarray | None = None) -> tuple[Image.Image, list[Plane]]:
    """A labelled mosaic of ``n`` slices in one view, slices chosen to show the lesions."""
    lo, hi = box if box is not None else world_box(image)
    window = window or intensity_window(image)
    spacing = max(float(np.max(hi - lo)) / TILE_PX, 0.2)
    probe = Plane(view, 0.0, tuple(lo), tuple(hi), spacing, convention)
    normal = probe.normal
    if lesion_xyz is None:
        lesion_xyz = lesion_points(labels) if labels is not None else np.zeros((0, 3))
    span = hi[normal] - lo[normal]
    positions = choose_slices(lo[normal] + 0.06 * span, hi[normal] - 0.06 * span, n, lesion_xyz[:, normal])
    centre = (lo + hi) / 2
    coords: list[float] = []
    for p in positions:
        pt = centre.copy()
        pt[normal] = p
        c = round(snap_to_slice(image, normal, pt), 3)
        if all(abs(c - o) > 1e-3 for o in coords):
            coords.append(c)
    planes = [Plane(view, c, tuple(lo), tuple(hi), spacing, convention) for c in sorted(coords)]
    overlays = [(labels, lut)] if labels is not None else []
    tiles = [label_tile(render_tile(image, pl, window, overlays), view, convention, pl.label()) for pl in planes]
    img = add_header_footer(grid(tiles, ncols), title or f"{view.capitalize()} slices", list(legend),
                            orientation_note(convention))
    return img, planes


def lesion_strip(image: Volume, labels: Volume, lut: np.ndarray, centre: np.ndarray, extent_mm: float,
                 caption: str, window: tuple[float, float], convention: str = "radiological",
                 px: int = 112, focus: int | None = None) -> Image.Image:
    """Axial, coronal and sagittal close-ups centred on one lesion, with a caption bar.

    Every lesion is outlined in its colour; the ``focus`` lesion (the one in the centre) twice as thick.
    """
    fov = float(np.clip(3.0 * extent_mm, 24.0, 90.0))
    spacing = fov / px
    lo, hi = centre - fov / 2, centre + fov / 2
    tiles = []
    for view in ("axial", "coronal", "sagittal"):
        pl = Plane(view, 0.0, tuple(lo), tuple(hi), spacing, convention)
        pl = Plane(view, float(centre[pl.normal]), tuple(lo), tuple(hi), spacing, convention)
        rgb = to_rgb(sample(image, pl, order=1), window)
        lab = sample(labels, pl, order=0)
        draw_outlines(rgb, lab, lut, width=1)
        if focus is not None:
            draw_outlines(rgb, np.where(lab == focus, lab, 0), lut, width=2)
        tiles.append(label_tile(Image.fromarray(rgb), view, convention, None, 11))
    strip = grid(tiles, 3)
    out = Image.new("RGB", (strip.size[0], strip.size[1] + 20), (20, 20, 20))
    out.paste(strip, (0, 20))
    text(ImageDraw.Draw(out), (4, 3), caption, 12)
    return out


def thumbnail(img: Image.Image, max_px: int = 160) -> Image.Image:
    t = img.copy()
    t.thumbnail((max_px, max_px))
    return t


def compare_figure(baseline: Volume, followup: Volume, out_png: Path, *, new_lesions: Volume | None = None,
                   baseline_lesions: Volume | None = None, followup_lesions: Volume | None = None,
                   n_slices: int = 6, title: str = "Baseline vs follow-up (axial)",
                   convention: str = "radiological") -> Path:
    """Baseline and follow-up side by side, one row per axial slice, new lesions outlined in red on both.

    The volumes must share a world space (e.g. follow-up registered to baseline);
    grids may differ.  Slices are chosen where new lesions are, else evenly.
    """
    lo, hi = world_box(followup)
    spacing = max(float(np.max(hi - lo)) / (TILE_PX * 1.25), 0.2)
    focus = new_lesions if new_lesions is not None else followup_lesions
    zs = lesion_points(focus)[:, 2] if focus is not None else np.zeros(0)
    span = hi[2] - lo[2]
    positions = choose_slices(lo[2] + 0.06 * span, hi[2] - 0.06 * span, n_slices, zs)
    centre = (lo + hi) / 2
    coords = sorted({round(snap_to_slice(followup, 2, np.array([centre[0], centre[1], p])), 3) for p in positions})
    new_lut = lesion_lut(1, {1: NEW_COLOUR})
    old_lut = lesion_lut(1, {1: EXISTING_COLOUR})
    tiles = []
    for vol, own in ((baseline, baseline_lesions), (followup, followup_lesions)):
        win = intensity_window(vol)
        col = []
        for c in coords:
            pl = Plane("axial", c, tuple(lo), tuple(hi), spacing, convention)
            overlays = []
            if own is not None:
                overlays.append((_binary(own), old_lut))
            if new_lesions is not None:
                overlays.append((_binary(new_lesions), new_lut))
            col.append(label_tile(render_tile(vol, pl, win, overlays), "axial", convention, pl.label()))
        tiles.append(col)
    rows = [t for pair in zip(*tiles) for t in pair]
    body = grid(rows, 2)
    head = Image.new("RGB", (body.size[0], 20), (20, 20, 20))
    d = ImageDraw.Draw(head)
    text(d, (body.size[0] / 4, 2), "Baseline", 13, anchor="ma")
    text(d, (3 * body.size[0] / 4, 2), "Follow-up", 13, anchor="ma")
    stacked = Image.new("RGB", (body.size[0], body.size[1] + 20), (20, 20, 20))
    stacked.paste(head, (0, 0))
    stacked.paste(body, (0, 20))
    legend = [("new / enlarged lesion", NEW_COLOUR)] + (
        [("existing lesion", EXISTING_COLOUR)] if baseline_lesions is not None or followup_lesions is not None else [])
    return save_png(add_header_footer(stacked, title, legend, orientation_note(convention)), Path(out_png))


def sagittal_cord_figure(image: Volume, out_png: Path, *, cord_mask: Volume | None = None,
                         lesion_mask: Volume | None = None, n_slices: int = 3, step_mm: float = 2.5,
                         title: str = "Spinal cord, sagittal", convention: str = "radiological") -> Path:
    """Sagittal slices through the cord (centre from ``cord_mask``, else the image centre) and beside it.

    Cord outlined in cyan, lesions in red.  Anterior is on the left, superior at the top.
    """
    lo, hi = world_box(image, foreground=False)
    spacing = max(float(np.max(hi - lo)) / (TILE_PX * 1.5), 0.2)
    if cord_mask is not None and np.any(cord_mask.data > 0):
        x0 = float(np.median(lesion_points(_binary(cord_mask))[:, 0]))
    else:
        x0 = float((lo[0] + hi[0]) / 2)
    offsets = (np.arange(n_slices) - (n_slices - 1) / 2) * step_mm
    centre = (lo + hi) / 2
    coords = sorted({round(snap_to_slice(image, 0, np.array([x0 + o, centre[1], centre[2]])), 3) for o in offsets})
    overlays = []
    if cord_mask is not None:
        overlays.append((_binary(cord_mask), lesion_lut(1, {1: CORD_COLOUR})))
    if lesion_mask is not None:
        overlays.append((_binary(lesion_mask), lesion_lut(1, {1: NEW_COLOUR})))
    win = intensity_window(image)
    tiles = [label_tile(render_tile(image, Plane("sagittal", c, tuple(lo), tuple(hi), spacing, convention), win,
                                    overlays), "sagittal", convention, f"x={c:+.1f} mm") for c in coords]
    legend = ([("spinal cord", CORD_COLOUR)] if cord_mask is not None else []) + (
        [("lesion", NEW_COLOUR)] if lesion_mask is not None else [])
    return save_png(add_header_footer(grid(tiles, len(tiles)), title, legend, orientation_note(convention)),
                    Path(out_png))


def _binary(vol: Volume) -> Volume:
    return vol.with_data((np.asarray(vol.data) > 0).astype(np.uint8))
