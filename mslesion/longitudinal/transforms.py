"""World-space rigid/affine transforms: reading ITK text files, describing a transform.

Convention (same as ``preprocess.registration.register_rigid``): a 4x4 matrix
``T`` maps a point of the *reference* (fixed) space, in RAS+ mm, to the
corresponding point of the *moving* image.  ITK stores transforms in LPS mm
with the same fixed-to-moving direction, so ``T_ras = F @ T_lps @ F`` with
``F = diag(-1, -1, 1, 1)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def read_itk_transform(path: str | Path) -> np.ndarray:
    """Read a single 3-D matrix-offset transform from an ITK text file (``#Insight Transform File V1.0``).

    Returns the 4x4 RAS matrix mapping a reference-space point to the image's point.
    Only ``MatrixOffsetTransformBase``/``AffineTransform`` (12 parameters) are read.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(path, f"cannot read transform file ({exc.strerror or exc})") from exc
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            key, value = line.split(":", 1)
            fields.setdefault(key.strip(), value.strip())
    kind = fields.get("Transform", "")
    if not kind.startswith(("MatrixOffsetTransformBase", "AffineTransform")) or not kind.endswith("3_3"):
        raise InputError(path, f"unsupported transform type {kind!r}; expected a 3-D MatrixOffset/Affine transform")
    try:
        params = np.array([float(v) for v in fields["Parameters"].split()])
        centre = np.array([float(v) for v in fields.get("FixedParameters", "0 0 0").split()])
    except (KeyError, ValueError) as exc:
        raise InputError(path, f"transform parameters cannot be parsed ({exc})") from exc
    if params.size != 12 or centre.size != 3 or not np.all(np.isfinite(params)):
        raise InputError(path, f"expected 12 parameters and a 3-D centre, got {params.size} and {centre.size}")
    matrix = params[:9].reshape(3, 3)
    if abs(np.linalg.det(matrix)) < 1e-6:
        raise InputError(path, "transform matrix is singular")
    lps = np.eye(4)
    lps[:3, :3] = matrix
    lps[:3, 3] = params[9:] + centre - matrix @ centre
    return _LPS @ lps @ _LPS


def rigid_parameters(transform: np.ndarray) -> dict[str, float]:
    """Rotation angle (degrees) and translation length (mm) of a 4x4 world transform."""
    rot = np.asarray(transform)[:3, :3]
    u, _, vt = np.linalg.svd(rot)
    r = u @ vt
    angle = float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))
    return {"rotation_deg": round(angle, 3), "translation_mm": round(float(np.linalg.norm(transform[:3, 3])), 3)}
