"""The volumes in report.html: a facts table and a tissue overlay picture (qc/tissue.png)."""
from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from ..report import Report, VolumesSection
from ..volume import Volume

#: fill colours of the tissue labels 1-4 (CSF, GM, WM, lesion)
TISSUE_COLOURS = {1: "#3A7BFF", 2: "#E69F00", 3: "#F0F0F0", 4: "#FF2020"}
TISSUE_NAMES = {1: "CSF", 2: "grey matter", 3: "white matter", 4: "lesion"}
ROWS = (("Intracranial volume, ICV (mL)", "icv_ml"), ("Brain volume (mL)", "brain_ml"),
        ("Grey matter (mL)", "gm_ml"), ("White matter, lesions apart (mL)", "wm_ml"), ("CSF (mL)", "csf_ml"),
        ("Lesions (mL)", "lesion_ml"), ("Brain parenchymal fraction, BPF", "bpf"),
        ("Lesion volume, % of ICV", "lesion_pct_icv"), ("Method", "method"), ("Images used", "inputs"),
        ("ICV from", "icv_source"))


def volumes_section(report: Report | Mapping[str, Any]) -> str:
    """Facts table of the report's ``volumes`` section, with its caveats."""
    from .html import facts_table

    section = report.get("volumes")
    if not section:
        return "<p>Volumes not assessed.</p>"
    vols = VolumesSection.from_dict(section)
    rows: list[tuple[str, str | None, object]] = [(label, f"volumes.{key}", vols[key])
                                                  for label, key in ROWS if key in vols]
    caveats = "".join(f"<li>{escape(str(c))}</li>" for c in vols.get("caveats") or [])
    return (facts_table(rows, "volumes") + (f'<ul class="meta" id="volume-caveats">{caveats}</ul>' if caveats else "")
            + '<p class="meta">Research measures, not validated for clinical use; see the tissue picture below.</p>')


def tissue_figure(image: Volume, labels: Volume, box: tuple[np.ndarray, np.ndarray], window: tuple[float, float],
                  png: Path, convention: str = "radiological", n: int = 4, alpha: float = 0.45) -> Path:
    """Axial slices: FLAIR beside the same slice with the tissue labels filled in (CSF, GM, WM, lesion)."""
    from .figures import TILE_PX, orientation_note, save_png
    from .render import Plane, add_header_footer, grid, hex_rgb, label_tile, sample, snap_to_slice, to_rgb

    lo, hi = box
    spacing = max(float(np.max(hi - lo)) / TILE_PX, 0.2)
    lut = np.zeros((256, 3), np.float32)
    for value, colour in TISSUE_COLOURS.items():
        lut[value] = hex_rgb(colour)
    tiles = []
    for frac in np.linspace(0.3, 0.75, n):
        pt = (lo + hi) / 2
        pt[2] = lo[2] + frac * (hi[2] - lo[2])
        plane = Plane("axial", round(snap_to_slice(image, 2, pt), 3), tuple(lo), tuple(hi), spacing, convention)
        gray = to_rgb(sample(image, plane, order=1), window)
        lab = sample(labels, plane, order=0).astype(np.intp)
        filled = gray.astype(np.float32)
        on = lab > 0
        filled[on] = (1 - alpha) * filled[on] + alpha * lut[np.clip(lab[on], 0, 255)]
        for arr, cap in ((gray, plane.label()), (filled.astype(np.uint8), "tissue")):
            tiles.append(label_tile(Image.fromarray(np.ascontiguousarray(arr)), "axial", convention, cap))
    legend = [(TISSUE_NAMES[k], c) for k, c in TISSUE_COLOURS.items()]
    img = add_header_footer(grid(tiles, 4), "Tissue classes (filled) beside the FLAIR", legend,
                            orientation_note(convention))
    return save_png(img, Path(png))
