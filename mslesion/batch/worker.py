"""Running one job: analysis through :class:`~mslesion.pipeline.Analyzer`, staged outputs, a log per subject.

:func:`process_job` never raises for a bad subject: it returns an outcome
dict (``status`` "done" or "failed" with a ``reason``), so one corrupt scan
cannot stop a batch.  The same function runs in-process, in a process pool
and on Dask workers; :func:`worker_analyzer` keeps one Analyzer (one loaded
model) per worker process.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import MslesionError
from ..pipeline import AnalyzeOptions, Analyzer
from .inputs import Job
from .layout import finalize, log_path, staging_dir, subject_dir

log = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"

_ANALYZERS: dict[str, Analyzer] = {}


def settings_of(options: AnalyzeOptions) -> dict:
    """The settings that make outputs differ; a rerun with other settings redoes the subject."""
    return {"model": options.model, "threshold": options.threshold, "min_peak": options.min_peak,
            "min_lesion_mm3": options.min_lesion_mm3,
            "preprocess": {k: str(v) for k, v in vars(options.preprocess).items()},
            "location": {k: str(v) for k, v in vars(options.location).items()}}


def worker_analyzer(options: AnalyzeOptions, threads: int | None = None) -> Analyzer:
    """This process's Analyzer for ``options`` (created, and the model loaded, once)."""
    key = repr(options)
    if key not in _ANALYZERS:
        _ANALYZERS[key] = Analyzer(options)
        set_threads(threads)
    return _ANALYZERS[key]


def set_threads(threads: int | None) -> None:
    """Cap torch's intra-op threads so N workers do not oversubscribe the CPUs."""
    if threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))


def process_job(analyzer: Analyzer, job: Job, deriv: Path, settings: dict) -> dict:
    """Analyse one subject into ``deriv``; returns an outcome dict, never raises for subject problems."""
    t0 = time.perf_counter()
    outcome: dict[str, Any] = {"key": job.key, "subject": job.subject, "session": job.session, "status": "failed"}
    if job.problem:
        return {**outcome, "error": "InputError", "reason": job.problem, "seconds": 0.0}
    try:
        subject_dir(deriv, job)
        stage = staging_dir(deriv, job)
    except MslesionError as exc:
        return {**outcome, "error": type(exc).__name__, "reason": str(exc), "seconds": 0.0}
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True, exist_ok=True)
    handler = _SubjectLog(stage / ".mslesion-log.txt")
    try:
        logging.getLogger("mslesion").info("%s: inputs %s", job.key, {k: str(v) for k, v in job.inputs.items()})
        t_run = time.perf_counter()
        spine = [(p, spine_contrast(p.name)) for p in job.spine]
        result = analyzer.run(dict(job.inputs), out_dir=stage, spine=spine)
        outcome["analyze_s"] = round(time.perf_counter() - t_run, 3)
        report = result.report.to_dict()
        info = {"settings": settings, "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "seconds": round(time.perf_counter() - t0, 3), "analyze_s": outcome["analyze_s"],
                "host": os.uname().nodename, "pid": os.getpid()}
        path = finalize(deriv, job, stage, report, info)
        logging.getLogger("mslesion").info("%s: done in %.1f s -> %s", job.key, time.perf_counter() - t0, path)
        outcome.update(status="done", report=str(path))
    except Exception as exc:  # isolate every subject: record and go on
        reason = str(exc) if isinstance(exc, MslesionError) else f"{type(exc).__name__}: {exc}"
        # INFO: into the subject's log; the console gets the failures table / CLI summary instead
        logging.getLogger("mslesion").info("%s failed: %s\n%s", job.key, reason, traceback.format_exc())
        outcome.update(error=type(exc).__name__, reason=reason.splitlines()[0][:500] if reason else type(exc).__name__)
    finally:
        handler.close_into(log_path(deriv, job))
        shutil.rmtree(stage, ignore_errors=True)
    outcome["seconds"] = round(time.perf_counter() - t0, 3)
    outcome["log"] = str(log_path(deriv, job))
    return outcome


def spine_contrast(name: str) -> str:
    """mslesion.spine contrast from a BIDS suffix (T2w, T2starw/T2star, T1w, STIR, PSIR); T2 if unknown."""
    suffix = name.split(".")[0].rsplit("_", 1)[-1].lower()
    contrasts = {"t2w": "t2", "t2starw": "t2s", "t2star": "t2s", "t1w": "t1", "stir": "stir", "psir": "psir"}
    return contrasts.get(suffix, "t2")


class _SubjectLog:
    """Collect the mslesion log records of one subject into a file, without changing the console output."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter(LOG_FORMAT))
        self.handler.setLevel(logging.INFO)
        me = threading.get_ident()  # Dask runs several tasks per process in threads: keep only ours
        self.handler.addFilter(lambda record: record.thread == me)
        self.logger = logging.getLogger("mslesion")
        self.old_level = self.logger.level
        self.gate = _Gate(self.logger.getEffectiveLevel())
        self.gated = [h for h in logging.getLogger().handlers if h.level < self.gate.level]
        for h in self.gated:
            h.addFilter(self.gate)
        self.logger.addHandler(self.handler)
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)

    def close_into(self, target: Path) -> None:
        """Detach, then move the finished log to ``target`` (one rename: never half a log)."""
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.old_level)
        for h in self.gated:
            h.removeFilter(self.gate)
        self.handler.close()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, target)
        except OSError as exc:
            log.warning("could not keep the log of %s: %s", target, exc)


class _Gate(logging.Filter):
    """Lets through only what the console would have shown before the subject log lowered the level."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or not record.name.startswith("mslesion")
