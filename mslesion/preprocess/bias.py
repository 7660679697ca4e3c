"""N4 bias-field correction (SimpleITK's implementation, run on a shrunk image)."""
from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

from ..volume import Volume
from .sitk_bridge import to_sitk

log = logging.getLogger(__name__)


def n4_correct(vol: Volume, mask: np.ndarray | None = None, shrink_mm: float = 6.0,
               iterations: tuple[int, ...] = (50, 40, 30), fitting_levels: int = 3) -> Volume:
    """Return ``vol`` divided by the N4-estimated bias field.

    The field is estimated on a copy shrunk to about ``shrink_mm`` voxels (fast)
    and evaluated on the full grid.  ``mask`` (same grid) restricts the fit; by
    default the head foreground (Otsu) is used.  Voxels <= 0 are left as they are.
    """
    data = np.asarray(vol.data, dtype=np.float32)
    if mask is None:
        from .brain import foreground_mask

        mask = foreground_mask(data)
    mask = np.asarray(mask, dtype=bool) & (data > 0)
    if mask.sum() < 1000:
        log.warning("N4 skipped for %s: only %d foreground voxels", vol.path, int(mask.sum()))
        return vol
    # N4 works on log intensities: bring the foreground to ~1000 and add 1, so that the correction is
    # multiplicative to within 0.1 % whatever the scanner's scale (and zeros stay finite)
    scale = 1000.0 / max(float(np.percentile(data[mask], 99)), 1e-12)
    img = to_sitk(vol, np.maximum(data, 0) * scale + 1.0)
    msk = to_sitk(vol, mask.astype(np.uint8), pixel=sitk.sitkUInt8)
    factors = [max(1, int(round(shrink_mm / z))) for z in vol.zooms]
    small = sitk.Shrink(img, factors)
    small_mask = sitk.Shrink(msk, factors)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations(list(iterations)[:fitting_levels])
    n4.Execute(small, small_mask)
    log_field = n4.GetLogBiasFieldAsImage(img)
    field = np.exp(sitk.GetArrayFromImage(log_field).transpose(2, 1, 0)).astype(np.float32)
    out = np.where(data > 0, (data * scale + 1.0) / field - 1.0, data * scale) / scale
    out = (np.maximum(out, 0) if data.min() >= 0 else out).astype(np.float32)
    log.info("N4 on %s: field range %.3f-%.3f", vol.path, float(field[mask].min()), float(field[mask].max()))
    return vol.with_data(out, n4_corrected=True)
