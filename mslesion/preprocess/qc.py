"""Optional saving of each preprocessing step: the volume (NIfTI) and a QC PNG."""
from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from ..atomic import write_bytes
from ..io import save_volume
from ..volume import Volume

log = logging.getLogger(__name__)


def qc_png(vol: Volume, mask: np.ndarray | None = None, title: str = "") -> bytes:
    """Three orthogonal slices through the mask centre (or the volume centre), mask outlined in red."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    data = np.asarray(vol.data, dtype=np.float32)
    if mask is not None and np.any(mask):
        centre = np.array(np.nonzero(mask)).mean(1).round().astype(int)
    else:
        centre = np.asarray(vol.shape) // 2
    finite = data[np.isfinite(data)]
    lo, hi = (np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0))
    fig = Figure(figsize=(9, 3.3), dpi=80)
    zooms = vol.zooms
    aspects = [zooms[2] / zooms[1], zooms[2] / zooms[0], zooms[1] / zooms[0]]
    for axis in range(3):
        ax = fig.add_subplot(1, 3, axis + 1)
        ax.imshow(np.take(data, centre[axis], axis=axis).T, cmap="gray", origin="lower", vmin=lo, vmax=hi,
                  aspect=aspects[axis], interpolation="nearest")
        if mask is not None and np.any(mask):
            sl = np.take(np.asarray(mask, dtype=np.float32), centre[axis], axis=axis).T
            if sl.min() < 0.5 < sl.max():
                ax.contour(sl, [0.5], colors="r", linewidths=0.8)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save_step(save_dir: Path | None, name: str, vol: Volume, mask: np.ndarray | None = None,
              dtype: type | None = np.float32) -> None:
    """Write ``save_dir/name.nii.gz`` and ``save_dir/qc/name.png`` (atomically); no-op without save_dir."""
    if save_dir is None:
        return
    save_dir = Path(save_dir)
    save_volume(vol, save_dir / f"{name}.nii.gz", dtype=dtype)
    write_bytes(save_dir / "qc" / f"{name}.png", qc_png(vol, mask, name))
    log.info("saved preprocessing step %s to %s", name, save_dir)
