"""Lesion location: McDonald regions and the dissemination-in-space verdict."""
from __future__ import annotations

from .regions import LocationOptions, LocationResult, locate

__all__ = ["LocationOptions", "LocationResult", "locate"]
