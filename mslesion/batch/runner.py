"""``run_batch``: every subject of a dataset, resumable, in parallel or on a Dask cluster."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator

from ..atomic import write_text
from ..errors import ModelError, OutputError
from ..inputs import prepare_out_dir
from ..pipeline import AnalyzeOptions, Analyzer
from .inputs import Job, discover
from .layout import (
    WORK_DIR,
    clean_leftovers,
    completion_problem,
    dataset_name,
    read_report,
    report_path,
    write_dataset_description,
)
from .tables import cohort_row, table_text, write_cohort, write_failures
from .worker import process_job, set_threads, settings_of, worker_analyzer

log = logging.getLogger(__name__)
LOCK_NAME = ".mslesion-batch.lock"


@dataclass
class BatchOptions:
    """How to run a batch (what to compute is :class:`~mslesion.pipeline.AnalyzeOptions`)."""

    workers: int = 1
    scheduler: str | None = None          # "tcp://host:port" of a Dask scheduler
    quiet: bool = False                   # no progress bar
    longitudinal: bool = False            # compare consecutive sessions of each subject
    check_inputs: bool = True             # resume only if the inputs' sha256 still match
    shared_inference: bool | None = None  # None: on when workers > 1 and the model runs on a GPU
    threads_per_worker: int | None = None  # torch threads per worker (default: CPUs / workers)
    max_attempts: int = 2                 # a subject whose worker process dies this often is a failure


@dataclass
class BatchResult:
    deriv: Path
    rows: list[dict]
    failures: list[dict]
    done: int = 0
    skipped: int = 0
    seconds: float = 0.0
    outcomes: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0


def run_batch(source: str | Path, deriv: str | Path, options: AnalyzeOptions | None = None,
              batch: BatchOptions | None = None) -> BatchResult:
    """Analyse every subject/session of ``source`` (BIDS folder or CSV manifest) into ``deriv``."""
    t_start = time.perf_counter()
    options = options or AnalyzeOptions()
    batch = batch or BatchOptions()
    jobs = discover(source)  # bad input: error before anything is created
    deriv = prepare_out_dir(deriv).resolve()
    with _Lock(deriv):
        clean_leftovers(deriv)
        write_dataset_description(deriv, Path(source))
        settings = settings_of(options)
        todo = [j for j in jobs if j.problem or completion_problem(deriv, j, settings, batch.check_inputs) is not None]
        skipped = len(jobs) - len(todo)
        log.info("%d subjects/sessions: %d to do, %d already complete", len(jobs), len(todo), skipped)
        outcomes: list[dict] = [process_job(None, j, deriv, settings) for j in todo if j.problem]  # type: ignore[arg-type]
        runnable = [j for j in todo if not j.problem]
        extra: dict = {}
        bar = _progress(len(todo), batch.quiet, initial=len(outcomes))
        try:
            for outcome in _execute(runnable, deriv, options, batch, settings, extra):
                outcomes.append(outcome)
                bar.update(1)
                bar.set_postfix(failed=sum(o["status"] != "done" for o in outcomes), refresh=False)
        finally:
            bar.close()
        failures = [{k: o.get(k) for k in ("subject", "session", "key", "error", "reason", "log")}
                    for o in sorted(outcomes, key=lambda o: o["key"]) if o["status"] != "done"]
        failed = {f["key"] for f in failures}  # a subject that failed now has no row, even with an older report
        rows = [cohort_row(rep, report_path(deriv, j)) for j in jobs if not j.problem and j.key not in failed
                and (rep := read_report(deriv, j)) is not None and (rep.get("batch") or {}).get("settings") == settings]
        if batch.longitudinal:
            from .longitudinal import COLUMNS, compare_sessions

            extra["longitudinal"] = compare_sessions(jobs, deriv, failures, options)
            write_text(deriv / "longitudinal.csv", table_text(extra["longitudinal"], COLUMNS))
        write_cohort(deriv / "cohort.csv", rows)
        write_failures(deriv / "failures.csv", failures)
        _batch_index(deriv, rows, failures, dataset_name(Path(source)))
        shutil.rmtree(deriv / WORK_DIR, ignore_errors=True)  # only empty staging folders are left by now
    done = sum(o["status"] == "done" for o in outcomes)
    return BatchResult(deriv, rows, failures, done, skipped, time.perf_counter() - t_start, outcomes, extra)


def _execute(jobs: list[Job], deriv: Path, options: AnalyzeOptions, batch: BatchOptions, settings: dict,
             extra: dict) -> Iterator[dict]:
    if not jobs:
        return iter(())
    if batch.scheduler:
        from .dask_run import run_on_dask

        return run_on_dask(jobs, deriv, options, settings, batch.scheduler, batch.threads_per_worker)
    if batch.workers <= 1:
        return _run_here(jobs, deriv, options, settings)
    return _run_pool(jobs, deriv, options, batch, settings, extra)


def _run_here(jobs: list[Job], deriv: Path, options: AnalyzeOptions, settings: dict) -> Iterator[dict]:
    analyzer = Analyzer(options)  # model errors abort the batch here, before any subject
    for job in jobs:
        yield process_job(analyzer, job, deriv, settings)


# ---- process pool -------------------------------------------------------------------------------
_POOL: dict = {}


def _init_pool(options: AnalyzeOptions, threads: int, shared_spec: tuple | None) -> None:
    """Pool initializer: one Analyzer (one model load) per worker process."""
    try:
        if shared_spec is not None:
            from .shared import RemoteSegmenter

            # CPU workers: the GPU is the parent's (one CUDA context, one model); brain extraction runs here
            pre = replace(options.preprocess, device=options.preprocess.device or "cpu")
            _POOL["analyzer"] = Analyzer(replace(options, preprocess=pre), segmenter=RemoteSegmenter(shared_spec))
            set_threads(threads)
        else:
            _POOL["analyzer"] = worker_analyzer(options, threads)
    except Exception as exc:  # re-raised by each task, so the parent aborts with the real reason
        _POOL["error"] = exc


def _pool_task(job: Job, deriv: Path, settings: dict) -> dict:
    if "error" in _POOL:
        raise _POOL["error"]
    return process_job(_POOL["analyzer"], job, deriv, settings)


def _run_pool(jobs: list[Job], deriv: Path, options: AnalyzeOptions, batch: BatchOptions, settings: dict,
              extra: dict) -> Iterator[dict]:
    n = min(batch.workers, len(jobs))
    threads = batch.threads_per_worker or max(1, (os.cpu_count() or 1) // n)
    ctx = get_context("spawn")  # no fork of a process that may hold CUDA or torch threads
    server = None
    if _use_shared(options, batch):
        from .shared import InferenceServer

        server = InferenceServer(options, n, ctx)
        log.info("shared inference: %d preprocessing workers feed one model in the parent process", n)
    pending, attempts = deque(jobs), {j.key: 0 for j in jobs}
    try:
        while pending:
            with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_pool,
                                     initargs=(options, threads, server.spec() if server else None)) as pool:
                inflight: dict = {}
                broken: list[Job] = []
                while (pending or inflight) and not broken:
                    while pending and len(inflight) < n:  # at most n in flight: a dead worker's suspects are few
                        job = pending.popleft()
                        inflight[pool.submit(_pool_task, job, deriv, settings)] = job
                    finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        job = inflight.pop(fut)
                        try:
                            yield fut.result()
                        except BrokenProcessPool:
                            broken.append(job)
                        except ModelError:
                            raise
                        except Exception as exc:
                            yield _failed(job, exc)
                broken += list(inflight.values())
            for job in broken:  # a worker died (killed, out of memory, segfault): retry, then give up
                attempts[job.key] += 1
                if attempts[job.key] >= batch.max_attempts:
                    yield _failed(job, RuntimeError(f"worker process died {attempts[job.key]} times on this subject "
                                                    "(killed, out of memory or crashed)"))
                else:
                    log.warning("%s: worker process died; retrying", job.key)
                    pending.appendleft(job)
    finally:
        if server is not None:
            extra["inference"] = {"served": server.served, "busy_s": round(server.busy_s, 3)}
            server.close()


def _use_shared(options: AnalyzeOptions, batch: BatchOptions) -> bool:
    if batch.shared_inference is not None:
        return batch.shared_inference
    if options.model == "baseline" or options.device not in ("auto", "cuda"):
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _failed(job: Job, exc: BaseException) -> dict:
    return {"key": job.key, "subject": job.subject, "session": job.session, "status": "failed",
            "error": type(exc).__name__, "reason": str(exc)[:500], "log": ""}


# ---- helpers ------------------------------------------------------------------------------------
def _progress(total: int, quiet: bool, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="subject", desc="mslesion batch", disable=quiet or total == 0,
                file=sys.stderr, dynamic_ncols=True, smoothing=0.2)


def _batch_index(deriv: Path, rows: list[dict], failures: list[dict], title: str) -> None:
    try:
        from ..qc import write_batch_index
    except ImportError:
        log.info("mslesion.qc.write_batch_index not available: no index.html")
        return
    try:
        write_batch_index(deriv, rows, failures, title)
    except Exception as exc:  # the tables are written; a broken overview page must not fail the batch
        log.warning("could not write %s/index.html: %s", deriv, exc)


class _Lock:
    """Refuse a second batch writing into the same folder; a lock left by a killed batch is taken over."""

    def __init__(self, deriv: Path) -> None:
        self.path = deriv / LOCK_NAME
        self.mine = f"{socket.gethostname()} {os.getpid()}"

    def __enter__(self) -> "_Lock":
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._holder_alive():
                    raise OutputError(self.path.parent, f"another mslesion batch is writing here "
                                                        f"({self.path.read_text().strip()}); remove {self.path} if not")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(self.mine + "\n")
            return self
        raise OutputError(self.path.parent, "cannot take the batch lock")

    def _holder_alive(self) -> bool:
        try:
            host, pid = self.path.read_text().split()
        except (OSError, ValueError):
            return False
        if host != socket.gethostname():
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError):
            return True
        return True

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)
