"""Sagittal QC picture: cord and lesions outlined on a cord-following sagittal cut."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..atomic import write_bytes


def sagittal_png(path: Path, img: np.ndarray, cord: np.ndarray, lesions: np.ndarray, centres_x: np.ndarray,
                 zooms: tuple[float, float, float], levels: np.ndarray | None = None, title: str = "") -> Path:
    """Write a PNG of the sagittal plane through the cord centre of each slice (atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nx, ny, nz = img.shape
    xs = np.clip(np.round(centres_x).astype(int), 0, nx - 1)
    cut = np.stack([img[xs[z], :, z] for z in range(nz)], axis=1)          # (ny, nz)
    cord_cut = np.stack([cord[xs[z], :, z] for z in range(nz)], axis=1)
    les_proj = lesions.max(axis=0) if lesions.any() else np.zeros((ny, nz))  # lesions anywhere left-right
    lo, hi = np.percentile(cut, [1, 99.5])
    fig = plt.figure(figsize=(8, 8), dpi=110)
    grid = fig.add_gridspec(3, 3, width_ratios=[2.2, 1, 1])
    ax = fig.add_subplot(grid[:, 0])
    extent = (0, ny * zooms[1], 0, nz * zooms[2])
    ax.imshow(cut.T, cmap="gray", vmin=lo, vmax=hi, origin="lower", extent=extent, aspect="equal",
              interpolation="nearest")
    yy = (np.arange(ny) + 0.5) * zooms[1]
    zz = (np.arange(nz) + 0.5) * zooms[2]
    if cord_cut.any() and nz > 1:
        ax.contour(yy, zz, cord_cut.T.astype(float), [0.5], colors="lime", linewidths=0.8)
    if les_proj.any() and nz > 1:
        ax.contour(yy, zz, les_proj.T.astype(float), [0.5], colors="red", linewidths=1.0)
    if levels is not None and levels.any():
        from .levels import level_name

        for z in range(nz):
            if levels[z] and (z == 0 or levels[z] != levels[z - 1]):
                ax.text(2, zz[z], level_name(int(levels[z])), color="yellow", fontsize=7, va="bottom")
    ax.set_xlabel("posterior -> anterior (mm)")
    ax.set_ylabel("inferior -> superior (mm)")
    ax.set_title(title or "cord (green), lesions (red)", fontsize=8)
    _axial_panels(fig, grid, img, cord, lesions, centres_x, zooms, lo, hi)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return write_bytes(path, buf.getvalue())


def _axial_panels(fig, grid, img: np.ndarray, cord: np.ndarray, lesions: np.ndarray, centres_x: np.ndarray,
                  zooms: tuple[float, float, float], lo: float, hi: float) -> None:
    """Up to six axial crops (30 mm) through the largest lesion slices, else spread along the cord."""
    nz = img.shape[2]
    per_slice = lesions.sum(axis=(0, 1))
    if per_slice.any():
        zs = [int(z) for z in np.argsort(-per_slice)[:6] if per_slice[z] > 0]
    else:
        zs = [int(z) for z in np.linspace(0, nz - 1, min(6, nz)).round()]
    zs = sorted(set(zs))
    half = (int(15 / zooms[0]), int(15 / zooms[1]))
    for k, z in enumerate(zs[:6]):
        a = fig.add_subplot(grid[k // 2, 1 + k % 2])
        if cord[:, :, z].any():
            cx, cy = np.argwhere(cord[:, :, z]).mean(0).astype(int)
        else:
            cx, cy = int(centres_x[z]), img.shape[1] // 2
        sx = slice(max(cx - half[0], 0), cx + half[0])
        sy = slice(max(cy - half[1], 0), cy + half[1])
        a.imshow(img[sx, sy, z].T, cmap="gray", vmin=lo, vmax=hi, origin="lower", interpolation="nearest",
                 aspect=zooms[1] / zooms[0])
        if cord[sx, sy, z].any():
            a.contour(cord[sx, sy, z].T.astype(float), [0.5], colors="lime", linewidths=0.6)
        if lesions[sx, sy, z].any():
            a.contour(lesions[sx, sy, z].T.astype(float), [0.5], colors="red", linewidths=0.8)
        a.set_title(f"axial {z * zooms[2]:.0f} mm", fontsize=7)
        a.set_xticks([])
        a.set_yticks([])
