"""One model for many preprocessing workers: CPU workers preprocess, a consumer holding the model infers.

On a GPU, N worker processes each run :class:`~mslesion.pipeline.Analyzer`
with a :class:`RemoteSegmenter`: loading, preprocessing, mapping back to the
native grid, lesion labelling, location and writing happen in the workers
(CPU), while ``predict`` ships the preprocessed images to an
:class:`InferenceServer` thread in the parent process, which holds the only
copy of the model on the GPU and answers requests one after another.  While
one worker waits for the GPU the others preprocess, so the GPU is kept busy.
"""
from __future__ import annotations

import logging
import threading
import uuid
from multiprocessing.context import BaseContext
from typing import Any

from ..errors import ModelError
from ..pipeline import AnalyzeOptions, Analyzer
from ..preprocess import Preprocessed
from ..volume import Volume

log = logging.getLogger(__name__)


class InferenceServer:
    """A thread of the parent process that owns the model and serves ``predict`` requests."""

    def __init__(self, options: AnalyzeOptions, n_clients: int, ctx: BaseContext) -> None:
        self.analyzer = Analyzer(options)              # the model is loaded here, once
        self.requests = ctx.Queue()
        self.replies = [ctx.Queue() for _ in range(n_clients)]
        self.counter = ctx.Value("i", 0)
        self.served = 0
        self.busy_s = 0.0
        self._thread = threading.Thread(target=self._serve, name="mslesion-inference", daemon=True)
        self._thread.start()

    def spec(self) -> tuple:
        """What a worker needs to reach the server (passed to the pool initializer)."""
        return self.requests, self.replies, self.counter

    def _serve(self) -> None:
        import time

        while True:
            msg = self.requests.get()
            if msg is None:
                return
            client, req_id, contrasts, pre = msg
            t0 = time.perf_counter()
            try:
                seg = self.analyzer.segmenter_for(set(contrasts))
                prob = seg.predict(pre)
                reply: tuple[Any, str, Any, Any] = (req_id, "ok", prob,
                                                    (seg.model_id, seg.kind, seg.threshold, seg.min_peak))
            except Exception as exc:  # sent back, raised in the worker, recorded as that subject's failure
                reply = (req_id, "error", f"{type(exc).__name__}: {exc}", None)
            self.busy_s += time.perf_counter() - t0
            self.served += 1
            self.replies[client].put(reply)

    def close(self) -> None:
        self.requests.put(None)
        self._thread.join(timeout=30)


class RemoteSegmenter:
    """Segmenter protocol, answered by the :class:`InferenceServer`."""

    def __init__(self, spec: tuple) -> None:
        requests, replies, counter = spec
        with counter.get_lock():
            self.client = counter.value % len(replies)
            counter.value += 1
        self.requests, self.reply = requests, replies[self.client]
        self.model_id, self.kind, self.threshold, self.min_peak = "pending", "remote", 0.5, 0.0

    def predict(self, pre: Preprocessed) -> Volume:
        req_id = uuid.uuid4().hex
        self.requests.put((self.client, req_id, sorted(pre.images), pre))
        while True:
            got_id, status, payload, meta = self.reply.get()
            if got_id == req_id:  # a reply meant for a worker that died before it arrived is dropped
                break
        if status != "ok":
            raise ModelError("inference-server", payload)
        self.model_id, self.kind, self.threshold, self.min_peak = meta
        return payload
