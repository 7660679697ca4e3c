"""Spinal cord: cord segmentation, vertebral levels, cord lesions and their report."""
from __future__ import annotations

from .analyze import SpineOptions, SpineResult, analyze_spine, analyze_volume
from .cord import CONTRASTS, CordOptions, segment_cord
from .lesions import LesionOptions, segment_cord_lesions
from .plausibility import CordCriteria, NoCordError

__all__ = ["CONTRASTS", "CordCriteria", "CordOptions", "NoCordError", "LesionOptions", "SpineOptions", "SpineResult",
           "analyze_spine",
           "analyze_volume", "segment_cord", "segment_cord_lesions"]
