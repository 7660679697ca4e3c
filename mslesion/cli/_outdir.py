"""Output-folder handling shared by the commands that write one."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def removed_if_failed(out: Path) -> Iterator[None]:
    """Leave no trace of a failed run: remove ``out`` if this run created it and it is still empty."""
    created = not out.exists()
    try:
        yield
    except BaseException:
        if created:
            try:
                out.rmdir()
            except OSError:
                pass
        raise
