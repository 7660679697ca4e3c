"""Lesion location: McDonald regions and the dissemination-in-space verdict."""
from __future__ import annotations

from .dis import MCDONALD_AREAS, dis_verdict
from .regions import REGIONS, LocationOptions, LocationResult, locate

__all__ = ["MCDONALD_AREAS", "REGIONS", "LocationOptions", "LocationResult", "dis_verdict", "locate"]
