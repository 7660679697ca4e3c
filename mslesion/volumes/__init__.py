"""Brain volumes beside the lesion load: ICV, brain, GM/WM/CSF, BPF and lesion volume per ICV.

    from mslesion.volumes import assess_volumes
    vols = assess_volumes(preprocessed, native_lesion_labels, lesion_ml)
    vols.to_dict()   # the report.json "volumes" section
"""
from __future__ import annotations

from .stage import TissueVolumes, assess_volumes

__all__ = ["TissueVolumes", "assess_volumes"]
