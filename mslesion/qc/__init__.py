"""Quality-control pictures and self-contained HTML reports.

* :func:`write_subject_qc` - DIR/qc/*.png and DIR/report.html for one analysis
* :func:`write_report_html` - generic self-contained page (for compare, spine, ...)
* :func:`write_batch_index` - DERIV/index.html over a batch
* :func:`compare_figure`, :func:`sagittal_cord_figure` - figures for the
  longitudinal and spinal-cord reports

Orientation: RAS+ world display, radiological convention by default, every
tile labelled (R/L, A/P, S/I); see :mod:`mslesion.qc.render`.
"""
from __future__ import annotations

from .figures import REGION_COLOURS, compare_figure, region_colour, sagittal_cord_figure
from .html import write_batch_index, write_report_html
from .subject import write_subject_qc

__all__ = ["REGION_COLOURS", "compare_figure", "region_colour", "sagittal_cord_figure", "write_batch_index",
           "write_report_html", "write_subject_qc"]
