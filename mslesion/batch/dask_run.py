"""Run a batch on an existing Dask distributed cluster (``--scheduler tcp://host:port``).

Each task analyses one subject on a worker and writes its outputs straight to
the derivatives folder, which must therefore be on a file system the workers
share with the client.  Each worker process keeps one Analyzer (one model
load) across its tasks.  The client only collects the small outcome dicts and
assembles the cohort table when every task is done.  The workers need the
same mslesion installation as the client.
"""
from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Iterator

from ..errors import ModelError, OutputError
from ..pipeline import AnalyzeOptions
from .inputs import Job
from .worker import process_job, worker_analyzer

log = logging.getLogger(__name__)


def dask_task(job: Job, deriv: str, options: AnalyzeOptions, settings: dict, threads: int | None) -> dict:
    """What a Dask worker runs for one subject."""
    analyzer = worker_analyzer(options, threads)
    return process_job(analyzer, job, Path(deriv), settings)


def run_on_dask(jobs: list[Job], deriv: Path, options: AnalyzeOptions, settings: dict, scheduler: str,
                threads: int | None = None) -> Iterator[dict]:
    """Submit one task per job to the scheduler at ``scheduler``; yield outcomes as they finish."""
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise OutputError(Path(deriv), "--scheduler needs dask distributed: pip install 'mslesion[dask]'") from exc
    try:
        client = Client(scheduler, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise OutputError(Path(deriv), f"cannot reach the Dask scheduler {scheduler} ({exc})") from exc
    run_id = uuid.uuid4().hex[:8]
    try:
        futures = {}
        for job in jobs:
            fut = client.submit(dask_task, job, str(deriv), options, settings, threads,
                                key=f"mslesion-{job.key}-{run_id}", pure=False, retries=1)
            futures[fut] = job
        log.info("submitted %d subjects to %s", len(futures), scheduler)
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                yield fut.result()
            except ModelError:
                client.cancel(list(futures))
                raise
            except Exception as exc:  # KilledWorker, lost worker, ...
                yield {"key": job.key, "subject": job.subject, "session": job.session, "status": "failed",
                       "error": type(exc).__name__, "reason": str(exc)[:500], "log": ""}
    finally:
        client.close()
