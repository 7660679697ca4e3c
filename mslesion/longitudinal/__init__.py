"""Longitudinal comparison of two scans: new, enlarging, shrinking and disappearing lesions."""
from __future__ import annotations

from .change import ChangeMaps, ChangeOptions, detect_changes
from .compare import CompareOptions, CompareResult, compare_scans
from .evidence import EvidenceOptions
from .transforms import read_itk_transform

__all__ = ["ChangeMaps", "ChangeOptions", "CompareOptions", "CompareResult", "EvidenceOptions", "compare_scans",
           "detect_changes", "read_itk_transform"]
