"""Preprocessing: from a raw scan to the model's working grid, and back.

The public entry point is :func:`preprocess`.  It returns a
:class:`Preprocessed` holding every contrast on one working grid (1 mm
isotropic, RAS-canonical axes), the brain mask, and the way back to the
native FLAIR grid (:meth:`Preprocessed.to_native`).
"""
from __future__ import annotations

from .pipeline import Preprocessed, PreprocessOptions, preprocess

__all__ = ["Preprocessed", "PreprocessOptions", "preprocess"]
