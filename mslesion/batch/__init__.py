"""Batch analysis of whole datasets (BIDS folder or CSV manifest) into a BIDS-derivatives folder.

    from mslesion.batch import run_batch, BatchOptions
    result = run_batch("bids/", "bids/derivatives/mslesion", batch=BatchOptions(workers=2))
    result.exit_code   # 1 if any subject failed (see result.failures / failures.csv)

Resumable (complete subjects are skipped, nothing is ever half-written),
parallel (``workers`` processes, one model each, or CPU preprocessing workers
feeding one GPU model), and scalable (``scheduler="tcp://..."`` runs on Dask).
"""
from __future__ import annotations

from .inputs import Job, check_label, discover
from .runner import BatchOptions, BatchResult, run_batch

__all__ = ["run_batch", "BatchOptions", "BatchResult", "Job", "discover", "check_label"]
