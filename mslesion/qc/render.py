"""Display geometry and drawing primitives for QC pictures (pure numpy + PIL).

Every picture is sampled on an axis-aligned grid in RAS+ world millimetres
(x towards the patient's Right, y Anterior, z Superior), whatever the voxel
order or obliquity of the file: a display pixel's world point is mapped
through the inverse affine into each volume's voxels.  There is therefore no
hidden transpose anywhere, volumes on different grids (thick-slice FLAIR,
isotropic mask) line up by construction, and thick slices are shown as the
blocks they are (nearest-neighbour for masks, so a one-slice lesion never
disappears).

Display conventions (labelled on every tile):

* ``radiological`` (default): axial and coronal views show the patient's
  right on the image's left (R ... L); sagittal views show anterior on the left.
* ``neurological``: patient's left on the image's left (L ... R).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ..volume import Volume

VIEWS = ("axial", "coronal", "sagittal")
CONVENTIONS = ("radiological", "neurological")

#: per view: world axis normal to the plane, (row axis, row descending), (column axis).
_ROW = {"axial": 1, "coronal": 2, "sagittal": 2}   # rows: A->P, S->I, S->I (top first)
_COL = {"axial": 0, "coronal": 0, "sagittal": 1}
_NORMAL = {"axial": 2, "coronal": 1, "sagittal": 0}
_AXIS_NAME = "xyz"


def col_descending(view: str, convention: str) -> bool:
    """True when the image's column index runs against the world axis."""
    if view == "sagittal":
        return True  # anterior (+y) on the left
    return convention == "radiological"  # patient's right (+x) on the left


def edge_labels(view: str, convention: str = "radiological") -> dict[str, str]:
    """Anatomical letters for the left, right, top and bottom edge of a tile."""
    check_view(view, convention)
    if view == "sagittal":
        return {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    left, right = ("R", "L") if convention == "radiological" else ("L", "R")
    top, bottom = ("A", "P") if view == "axial" else ("S", "I")
    return {"left": left, "right": right, "top": top, "bottom": bottom}


def check_view(view: str, convention: str = "radiological") -> None:
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


@dataclass(frozen=True)
class Plane:
    """One display slice: a view, its world coordinate and the in-plane world box."""

    view: str
    coord: float
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    spacing: float
    convention: str = "radiological"

    @property
    def normal(self) -> int:
        return _NORMAL[self.view]

    def label(self) -> str:
        return f"{_AXIS_NAME[self.normal]}={int(round(self.coord)):+d} mm"

    def grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
        """World point of the top-left pixel centre, world step per row and per column, (H, W)."""
        check_view(self.view, self.convention)
        r_ax, c_ax, n_ax = _ROW[self.view], _COL[self.view], self.normal
        lo, hi, s = np.asarray(self.lo, float), np.asarray(self.hi, float), float(self.spacing)
        n_rows = max(1, int(np.floor((hi[r_ax] - lo[r_ax]) / s)) + 1)
        n_cols = max(1, int(np.floor((hi[c_ax] - lo[c_ax]) / s)) + 1)
        origin, d_row, d_col = np.zeros(3), np.zeros(3), np.zeros(3)
        origin[n_ax] = self.coord
        origin[r_ax], d_row[r_ax] = hi[r_ax], -s  # top row = superior / anterior
        if col_descending(self.view, self.convention):
            origin[c_ax], d_col[c_ax] = hi[c_ax], -s
        else:
            origin[c_ax], d_col[c_ax] = lo[c_ax], s
        return origin, d_row, d_col, (n_rows, n_cols)

    def world_points(self) -> np.ndarray:
        """(H, W, 3) world coordinates (mm) of the pixel centres, top-left first."""
        origin, d_row, d_col, (h, w) = self.grid()
        return origin + np.arange(h)[:, None, None] * d_row + np.arange(w)[None, :, None] * d_col


def sample(vol: Volume | None, plane: Plane, order: int = 1) -> np.ndarray:
    """Values of ``vol`` on the plane's pixel grid; 0 outside the volume (or if vol is None).

    order 0 (nearest voxel) for masks and labels, 1 (trilinear) for images.
    """
    origin, d_row, d_col, shape = plane.grid()
    if vol is None:
        return np.zeros(shape, dtype=np.float32)
    inv = np.linalg.inv(vol.affine)
    v0 = inv[:3, :3] @ origin + inv[:3, 3]
    vr, vc = inv[:3, :3] @ d_row, inv[:3, :3] @ d_col
    rows = np.arange(shape[0], dtype=np.float32)[:, None]
    cols = np.arange(shape[1], dtype=np.float32)[None, :]
    coords = [np.float32(v0[k]) + rows * np.float32(vr[k]) + cols * np.float32(vc[k]) for k in range(3)]
    data = vol.data
    if order == 0:
        out = np.zeros(shape, dtype=data.dtype)
        idx = [np.rint(c).astype(np.intp) for c in coords]
        inside = np.ones(shape, dtype=bool)
        for k in range(3):
            inside &= (idx[k] >= 0) & (idx[k] < data.shape[k])
        out[inside] = data[idx[0][inside], idx[1][inside], idx[2][inside]]
        return out
    if data.dtype != np.float32:
        data = np.asarray(data, dtype=np.float32)
    return ndimage.map_coordinates(data, np.stack(coords), order=order, mode="constant", cval=0.0, prefilter=False)


def world_box(vol: Volume, foreground: bool = True, margin_mm: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """World (min, max) of the volume, or of its foreground (non-background voxels) plus a margin."""
    data = vol.data
    sel = None
    if foreground:
        step = max(1, int(round((data.size / 2e6) ** (1 / 3))))
        sub = np.asarray(data[::step, ::step, ::step], dtype=np.float32)
        pos = sub[sub > 0]
        if pos.size:
            thr = 0.1 * float(np.percentile(pos, 99))
            fg = data > thr
            if fg.any():
                sel = []
                for ax in range(3):
                    hit = np.flatnonzero(fg.any(axis=tuple(a for a in range(3) if a != ax)))
                    sel.append((int(hit[0]), int(hit[-1])))
    if sel is None:
        sel = [(0, s - 1) for s in data.shape]
    corners = np.array([[i, j, k, 1.0] for i in sel[0] for j in sel[1] for k in sel[2]])
    world = corners @ vol.affine.T
    half = np.abs(vol.affine[:3, :3]).sum(axis=1) / 2  # half a voxel, in world axes
    lo, hi = world[:, :3].min(axis=0) - half, world[:, :3].max(axis=0) + half
    if foreground:
        flo, fhi = world_box(vol, foreground=False, margin_mm=0.0)
        lo, hi = np.maximum(lo - margin_mm, flo), np.minimum(hi + margin_mm, fhi)
    return lo, hi


def mask_box(mask: Volume, margin_mm: float = 4.0, trim: float = 0.002) -> tuple[np.ndarray, np.ndarray]:
    """World (min, max) of a mask's largest connected part, plus a margin.

    Stray bits (a brain mask's blobs in the neck) are dropped, and the outermost ``trim``
    fraction of voxels on each side of each axis too, so the box is the organ's extent.
    """
    from scipy import ndimage

    data = np.asarray(mask.data) > 0
    if not data.any():
        return world_box(mask, foreground=False, margin_mm=0.0)
    labels, n = ndimage.label(data)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        data = labels == int(np.argmax(sizes))
    vox = np.argwhere(data)
    if len(vox) > 200_000:
        vox = vox[np.linspace(0, len(vox) - 1, 200_000).astype(int)]
    world = vox @ mask.affine[:3, :3].T + mask.affine[:3, 3]
    half = np.abs(mask.affine[:3, :3]).sum(axis=1) / 2
    lo = np.quantile(world, trim, axis=0) - half - margin_mm
    hi = np.quantile(world, 1.0 - trim, axis=0) + half + margin_mm
    flo, fhi = world_box(mask, foreground=False, margin_mm=0.0)
    return np.maximum(lo, flo), np.minimum(hi, fhi)


def snap_to_slice(vol: Volume, normal: int, point: np.ndarray) -> float:
    """World coordinate along ``normal`` of the native slice nearest ``point``.

    Only snaps when a voxel axis is (nearly) parallel to the normal, which keeps
    thick acquired slices sharp instead of blending two of them.
    """
    dirs = vol.affine[:3, :3] / np.linalg.norm(vol.affine[:3, :3], axis=0)
    k = int(np.argmax(np.abs(dirs[normal])))
    if abs(dirs[normal, k]) < 0.98:
        return float(point[normal])
    inv = np.linalg.inv(vol.affine)
    vox = inv[:3, :3] @ np.asarray(point, float) + inv[:3, 3]
    vox[k] = np.clip(np.rint(vox[k]), 0, vol.shape[k] - 1)
    return float((vol.affine[:3, :3] @ vox + vol.affine[:3, 3])[normal])


def intensity_window(vol: Volume, within: Volume | None = None) -> tuple[float, float]:
    """Display window (low, high): robust percentiles of the voxels inside ``within`` (a mask
    on any grid, e.g. the brain), else of the non-background voxels."""
    data = vol.data
    vals = None
    if within is not None:
        st = max(1, int(round((within.data.size / 3e5) ** (1 / 3))))
        idx = np.argwhere(np.asarray(within.data[::st, ::st, ::st]) > 0) * st
        if len(idx) >= 100:
            world = idx @ within.affine[:3, :3].T + within.affine[:3, 3]
            inv = np.linalg.inv(vol.affine)
            vox = np.rint(world @ inv[:3, :3].T + inv[:3, 3]).astype(np.intp)
            ok = np.all((vox >= 0) & (vox < np.asarray(data.shape)), axis=1)
            vals = np.asarray(data[vox[ok, 0], vox[ok, 1], vox[ok, 2]], dtype=np.float32)
            vals = vals[np.isfinite(vals)]
            if vals.size >= 100:
                lo, hi = (float(v) for v in np.percentile(vals, [0.5, 99.8]))
                if hi > lo:
                    return lo, hi
    step = max(1, int(round((data.size / 1e6) ** (1 / 3))))
    sub = np.asarray(data[::step, ::step, ::step], dtype=np.float32).ravel()
    sub = sub[np.isfinite(sub)]
    pos = sub[sub > (np.percentile(sub, 1) if sub.size else 0)]
    if pos.size < 10:
        pos = sub
    if pos.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(pos, [0.5, 99.5]))
    lo = min(lo, 0.0) if float(sub.min()) >= 0 else lo
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def clip_box(inner: tuple[np.ndarray, np.ndarray],
             outer: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``inner`` limited to ``outer``; ``outer`` itself if they do not overlap."""
    lo, hi = np.maximum(inner[0], outer[0]), np.minimum(inner[1], outer[1])
    return (lo, hi) if np.all(hi > lo) else outer


def to_rgb(gray: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    g = np.clip((np.asarray(gray, np.float32) - lo) / (hi - lo), 0, 1)
    g8 = (g * 255 + 0.5).astype(np.uint8)
    return np.repeat(g8[..., None], 3, axis=2)


def draw_outlines(rgb: np.ndarray, labels: np.ndarray, lut: np.ndarray, width: int = 1) -> np.ndarray:
    """Draw a ring just outside each labelled region, coloured by ``lut[label]`` (in place)."""
    labels = np.asarray(labels)
    if not labels.any():
        return rgb
    size = 2 * width + 1
    grown = ndimage.maximum_filter(labels, size=size, mode="constant", cval=0)
    ring = (labels == 0) & (grown > 0)
    rgb[ring] = lut[np.clip(grown[ring], 0, len(lut) - 1)]
    return rgb


def hex_rgb(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


@lru_cache(maxsize=8)
def font(size: int = 13) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans shipped with matplotlib (no system font needed)."""
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")  # locate its data without importing it (slow)
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = Path(base) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default()  # pragma: no cover - matplotlib always ships it


def text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], s: str, size: int = 13,
         fill: tuple[int, int, int] = (255, 255, 255), anchor: str = "la") -> None:
    """Readable text on any background: white with a dark outline."""
    draw.text(xy, s, font=font(size), fill=fill, anchor=anchor, stroke_width=2, stroke_fill=(0, 0, 0))


@lru_cache(maxsize=64)
def _glyph(s: str, size: int, fill: tuple[int, int, int]) -> Image.Image:
    """A short outlined text rendered once (RGBA, tight box) and pasted many times."""
    f = font(size)
    x0, y0, x1, y1 = f.getbbox(s, stroke_width=2)
    img = Image.new("RGBA", (int(x1 - x0), int(y1 - y0)), (0, 0, 0, 0))
    ImageDraw.Draw(img).text((-x0, -y0), s, font=f, fill=fill, stroke_width=2, stroke_fill=(0, 0, 0))
    return img


def stamp(img: Image.Image, xy: tuple[float, float], s: str, size: int, fill: tuple[int, int, int],
          anchor: str) -> None:
    """Paste a cached glyph; ``anchor`` as in PIL: (l|m|r)(t|m|b) for the glyph's box."""
    g = _glyph(s, size, fill)
    w, h = g.size
    x = xy[0] - {"l": 0, "m": w / 2, "r": w}[anchor[0]]
    y = xy[1] - {"t": 0, "m": h / 2, "b": h}[anchor[1]]
    img.paste(g, (int(round(x)), int(round(y))), g)


def label_tile(img: Image.Image, view: str, convention: str, caption: str | None = None, size: int = 13) -> Image.Image:
    """Write the anatomical edge letters (and a caption, bottom left) on a tile."""
    w, h = img.size
    lab = edge_labels(view, convention)
    yellow = (255, 255, 0)
    stamp(img, (2, h / 2), lab["left"], size, yellow, "lm")
    stamp(img, (w - 2, h / 2), lab["right"], size, yellow, "rm")
    stamp(img, (w / 2, 2), lab["top"], size, yellow, "mt")
    stamp(img, (w / 2, h - 2), lab["bottom"], size, yellow, "mb")
    if caption:
        text(ImageDraw.Draw(img), (3, 2), caption, size - 2, (230, 230, 230), "la")
    return img


def grid(tiles: list[Image.Image], ncols: int, gap: int = 6, bg: tuple[int, int, int] = (60, 60, 60)) -> Image.Image:
    """Paste equally sized tiles row by row."""
    if not tiles:
        raise ValueError("no tiles to arrange")
    w = max(t.size[0] for t in tiles)
    h = max(t.size[1] for t in tiles)
    ncols = max(1, min(ncols, len(tiles)))
    nrows = (len(tiles) + ncols - 1) // ncols
    out = Image.new("RGB", (ncols * w + (ncols - 1) * gap, nrows * h + (nrows - 1) * gap), bg)
    for n, t in enumerate(tiles):
        r, c = divmod(n, ncols)
        out.paste(t, (c * (w + gap), r * (h + gap)))
    return out


def wrap(s: str, width_px: float, size: int) -> list[str]:
    """Split ``s`` into lines no wider than ``width_px`` in the QC font."""
    f = font(size)
    lines: list[str] = []
    for word in s.split():
        if lines and f.getlength(lines[-1] + " " + word) <= width_px:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def add_header_footer(img: Image.Image, title: str, legend: list[tuple[str, str]], note: str) -> Image.Image:
    """Title bar above, colour legend and orientation note below (long text wraps)."""
    w = max(img.size[0], 420)
    t_lines, n_lines = wrap(title, w - 12, 15), wrap(note, w - 12, 12)
    ncol = max(1, min(4, w // 150))
    head = 8 + 19 * len(t_lines)
    foot = 8 + 20 * ((len(legend) + ncol - 1) // ncol) + 16 * len(n_lines)
    out = Image.new("RGB", (w, img.size[1] + head + foot), (20, 20, 20))
    out.paste(img, (0, head))
    d = ImageDraw.Draw(out)
    for n, line in enumerate(t_lines):
        text(d, (6, 4 + 19 * n), line, 15)
    y = head + img.size[1] + 5
    col_w = w // ncol
    for n, (name, colour) in enumerate(legend):
        r, c = divmod(n, ncol)
        x0, y0 = 6 + c * col_w, y + r * 20
        d.rectangle([x0, y0 + 2, x0 + 14, y0 + 14], outline=hex_rgb(colour), width=3)
        text(d, (x0 + 20, y0 + 1), name.replace("_", " "), 12)
    y = head + img.size[1] + 4 + 20 * ((len(legend) + ncol - 1) // ncol)
    for n, line in enumerate(n_lines):
        text(d, (6, y + 16 * n), line, 12, (200, 200, 200))
    return out
