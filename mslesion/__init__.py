"""mslesion: find multiple-sclerosis lesions in brain and spinal-cord MRI."""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import InputError, ModelError, MslesionError, OutputError  # noqa: E402
from .volume import Volume  # noqa: E402


def __getattr__(name: str):  # lazy: keep `import mslesion` light
    if name in {"Analyzer", "AnalyzeOptions", "AnalysisResult", "analyze"}:
        from . import pipeline

        return getattr(pipeline, name)
    if name in {"load_volume", "save_volume"}:
        from . import io

        return getattr(io, name)
    if name == "evaluate":
        from .metrics import evaluate

        return evaluate
    raise AttributeError(name)


__all__ = ["__version__", "Volume", "InputError", "OutputError", "ModelError", "MslesionError",
           "Analyzer", "AnalyzeOptions", "AnalysisResult", "analyze", "load_volume", "save_volume", "evaluate"]
