"""The enhancement gallery of report.html: post-contrast, pre-contrast and FLAIR crops at each enhancing call.

One PNG per call (``qc/enhancing_NN.png``, written atomically like the other QC pictures): the enhancing
lesions (``lesions.csv`` ``enhancing = yes``) first, then the enhancing foci outside FLAIR lesions,
at most :data:`MAX_CALLS` in all. Each picture is an axial crop through the call's centre on the three
scans, the same place on each, so a reader can judge whether the call is a lesion or a vessel.
"""
from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image, ImageDraw

from ..lesions import Lesion
from ..report import EnhancementSection
from ..volume import Volume
from .figures import save_png
from .html import image_data_uri
from .render import Plane, draw_outlines, grid, intensity_window, label_tile, sample, text, to_rgb

#: at most this many enhancing calls get a picture (enhancing lesions first, largest enhancing volume first)
MAX_CALLS = 12
#: (image key, tile caption): short captions, so the orientation letters stay readable
CONTRASTS = (("t1post", "T1 post"), ("t1", "T1 pre"), ("flair", "FLAIR"))
FOV_MM = 48.0
TILE_PX = 144


Call = tuple[str, np.ndarray, int | None]


def enhancement_calls(lesions: list[Lesion], enhancement: EnhancementSection | Mapping[str, Any] | None) -> list[Call]:
    """(caption, world centre in mm, lesion id or None) of every enhancing call, in gallery order.

    ``enhancement``: the report's section (or its report.json object).
    """
    calls: list[Call] = []
    enhancing = [les for les in lesions if les.extra.get("enhancing") == "yes"]
    for les in sorted(enhancing, key=lambda l: -float(l.extra.get("enhancing_mm3") or 0.0)):
        calls.append((f"lesion #{les.id}: enhancing {les.extra.get('enhancing_mm3')} mm\u00b3, "
                      f"p95 z {les.extra.get('enhancement_z_p95')}",
                      np.array([les.centroid_x, les.centroid_y, les.centroid_z], float), les.id))
    section = EnhancementSection.from_dict(enhancement or {})
    for n, focus in enumerate(section.enhancing_foci_outside_lesions or [], start=1):
        centre = np.asarray(focus.get("centroid_mm"), float)
        if centre.shape != (3,):
            continue
        calls.append((f"focus {n} outside FLAIR lesions: {focus.get('volume_mm3')} mm\u00b3, "
                      f"z max {focus.get('z_max')}", centre, None))
    return calls[:MAX_CALLS]


def call_picture(images: Mapping[str, Volume], windows: Mapping[str, tuple[float, float]], labels: Volume | None,
                 lut: np.ndarray, centre: np.ndarray, caption: str, lesion_id: int | None,
                 convention: str) -> Image.Image:
    """Axial crops (``FOV_MM`` square) through ``centre`` on post, pre and FLAIR, the lesion outlined thinly."""
    lo, hi = centre - FOV_MM / 2, centre + FOV_MM / 2
    spacing = FOV_MM / TILE_PX
    tiles = []
    for key, name in CONTRASTS:
        vol = images[key]
        pl = Plane("axial", 0.0, tuple(lo), tuple(hi), spacing, convention)
        pl = Plane("axial", float(centre[pl.normal]), tuple(lo), tuple(hi), spacing, convention)
        rgb = to_rgb(sample(vol, pl, order=1), windows[key])
        if labels is not None and lesion_id is not None:
            lab = sample(labels, pl, order=0)
            draw_outlines(rgb, np.where(lab == lesion_id, lab, 0), lut, width=1)
        else:  # a focus: ticks around the centre, so the focus itself stays visible
            c, r = TILE_PX // 2, 10
            for d in (-r - 6, r):
                rgb[c - 1:c + 1, max(0, c + d):c + d + 6] = (255, 210, 0)
                rgb[max(0, c + d):c + d + 6, c - 1:c + 1] = (255, 210, 0)
        tiles.append(label_tile(Image.fromarray(rgb), "axial", convention, name, 11))
    strip = grid(tiles, len(tiles))
    out = Image.new("RGB", (strip.size[0], strip.size[1] + 20), (20, 20, 20))
    out.paste(strip, (0, 20))
    text(ImageDraw.Draw(out), (4, 3), caption, 12)
    return out


def write_enhancement_gallery(images: Mapping[str, Volume], brain: Volume | None, labels: Volume | None,
                              lut: np.ndarray, lesions: list[Lesion],
                              enhancement: EnhancementSection | Mapping[str, Any] | None,
                              qc: Path, convention: str = "radiological") -> list[tuple[str, Path]]:
    """Write ``qc/enhancing_NN.png`` for each enhancing call; returns (caption, path) pairs.

    Pictures of a previous run are removed first. Nothing is drawn where the three scans are not all given.
    """
    for old in qc.glob("enhancing_*.png") if qc.is_dir() else ():
        old.unlink(missing_ok=True)
    if not all(key in images for key, _ in CONTRASTS):
        return []
    calls = enhancement_calls(lesions, enhancement)
    windows = {key: intensity_window(images[key], brain) for key, _ in CONTRASTS} if calls else {}
    out = []
    for n, (caption, centre, lesion_id) in enumerate(calls, start=1):
        img = call_picture(images, windows, labels, lut, centre, caption, lesion_id, convention)
        out.append((caption, save_png(img, qc / f"enhancing_{n:02d}.png")))
    return out


def gallery_html(pictures: list[tuple[str, Path]], total_calls: int) -> str:
    """The gallery below the enhancement facts (PNG embedded), or a line saying there is nothing to show."""
    if not pictures:
        return '<p class="meta">No enhancing call to show.</p>'
    note = (f" The first {len(pictures)} of {total_calls} calls are shown." if total_calls > len(pictures) else "")
    figs = "".join(f'<figure class="enhancing"><img src="{image_data_uri(p)}" alt="{escape(cap, quote=True)}">'
                   f"<figcaption>{escape(cap)}</figcaption></figure>" for cap, p in pictures)
    return (f'<h3>Enhancing calls on post-contrast T1, pre-contrast T1 and FLAIR ({len(pictures)})</h3>'
            f'<p class="meta">Axial crops, {FOV_MM:g} mm across, centred on each call (lesions outlined, '
            f"foci marked by ticks). Check every call: vessels and partial volume can enhance.{note}</p>"
            f'<div class="gallery" id="enhancement-gallery">{figs}</div>')
