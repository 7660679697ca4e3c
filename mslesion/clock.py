"""The one stopwatch of the package: named step durations for the reports' ``timings_s``."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Clock:
    """Times named steps into ``timings`` (seconds): :meth:`step` around a block, :meth:`lap` since the last lap.

    ``Clock(timings)`` starts at creation; :meth:`total` is the time since then.
    """

    def __init__(self, timings: dict[str, float] | None = None, digits: int | None = None) -> None:
        self.timings: dict[str, float] = {} if timings is None else timings
        self.digits = digits
        self.start = self.t0 = time.perf_counter()

    def _record(self, name: str, seconds: float) -> None:
        self.timings[name] = seconds if self.digits is None else round(seconds, self.digits)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Record the duration of the ``with`` block as ``timings[name]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._record(name, time.perf_counter() - t0)

    def lap(self, name: str) -> None:
        """Record the time since the previous lap (or the start) as ``timings[name]``."""
        now = time.perf_counter()
        self._record(name, now - self.t0)
        self.t0 = now

    def total(self, name: str | None = None) -> float:
        """Seconds since the clock started (also recorded as ``timings[name]`` when a name is given)."""
        seconds = time.perf_counter() - self.start
        if name is not None:
            self._record(name, seconds)
        return seconds
