"""Brain extraction with deepbet, a pretrained network whose weights ship inside its wheel.

deepbet (Fisch et al., Computers in Biology and Medicine 2024, MIT licence,
https://github.com/wwu-mmll/deepbet) finds the brain's bounding box with a
small network on a 128^3 copy, then segments the box resized to 256^3 with a
second U-Net. Both TorchScript models come in the installed ``deepbet``
package (nothing is downloaded). It was trained on T1 images; on FLAIR and T2
it agrees with our template method at Dice 0.92-0.98 (notes/issue-3.md) and it
reaches the inner skull table, as reference masks such as ROBEX's do.

The input must be RAS-canonical with roughly 1 mm voxels (the working grid is):
deepbet works in voxel space, without looking at the affine.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError, MslesionError
from ..model.store import sha256_file

log = logging.getLogger(__name__)

#: sha256 of the deepbet 1.0.2 weights we validated; other weights are refused (see ``load_extractor``).
WEIGHTS_SHA256 = {
    "model.pt": "de8ee7c69654d0dd3935dc4a5d84571d8ecf4637a6bfc01df399c4c2bc86e0fd",
    "bbox_model.pt": "39a7b2b5f799faa1391ea97bfcdc0b9299f20d84f2316a4ff8918dc4685e40aa",
}
THRESHOLD = 0.5


class BrainNetError(MslesionError):
    """deepbet failed on an image (callers fall back to the template method)."""


def weights_dir() -> Path:
    """Folder of the deepbet weights inside the installed package."""
    try:
        from deepbet.utils import DATA_PATH
    except ImportError as exc:  # pragma: no cover - deepbet is a core dependency
        raise ModelError("deepbet", f"not installed ({exc}); install it or use --brain-extraction template") from exc
    return Path(DATA_PATH) / "models"


def weights_status(verify: bool = False) -> dict:
    """Where the deepbet weights are and, with ``verify``, whether their sha256 matches (``sha256_ok``)."""
    try:
        folder = weights_dir()
    except ModelError as exc:
        return {"id": "deepbet", "error": exc.problem}
    row: dict = {"id": "deepbet", "folder": str(folder),
                 "present": all((folder / name).is_file() for name in WEIGHTS_SHA256)}
    if verify:
        row["sha256_ok"] = row["present"] and all(sha256_file(folder / n) == h for n, h in WEIGHTS_SHA256.items())
    return row


def load_extractor(device: str = "auto"):
    """The deepbet ``BrainExtraction`` object on ``device`` ('auto': cuda, mps, cpu), loaded once per process."""
    from ..model.inference import resolve_device

    return _load_extractor(str(resolve_device(device)))


@lru_cache(maxsize=4)
def _load_extractor(device: str):
    folder = weights_dir()
    for name, expected in WEIGHTS_SHA256.items():
        path = folder / name
        if not path.is_file():
            raise ModelError(path, "deepbet weights not found")
        found = sha256_file(path)
        if found != expected:
            raise ModelError(path, f"sha256 {found} is not that of the validated deepbet 1.0.2 weights")
    from deepbet import BrainExtraction

    extractor = BrainExtraction(no_gpu=True)
    dev = torch.device(device)
    extractor.model.to(dev)
    extractor.bbox_model.to(dev)
    log.info("deepbet brain extraction loaded from %s on %s", folder, dev)
    return extractor


def deepbet_mask(data: np.ndarray, device: str = "auto") -> np.ndarray:
    """Boolean brain mask of a RAS-canonical, ~1 mm volume (``data`` is not modified)."""
    extractor = load_extractor(device)
    x = np.nan_to_num(np.asarray(data, dtype=np.float32))
    if not np.any(x != 0):
        raise BrainNetError("the image is empty (all zero)")
    try:
        prob = extractor.run_model(x.copy())
        mask = extractor.postprocess(prob > THRESHOLD)
    except (AssertionError, ValueError, RuntimeError) as exc:
        raise BrainNetError(f"deepbet failed: {exc}") from exc
    return np.asarray(mask, dtype=bool)
