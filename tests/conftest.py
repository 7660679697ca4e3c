"""Shared fixtures and marker handling.

Markers: ``slow`` (runs everywhere, just takes time), ``gpu`` (skipped without
CUDA), ``browser`` (skipped without Chromium), ``realdata`` (skipped without
``../shared/data``).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_browser = pytest.mark.skip(reason="needs headless Chromium")
    skip_data = pytest.mark.skip(reason=f"needs {SHARED_DATA}")
    cuda, browser, data = _has_cuda(), chromium_path() is not None, SHARED_DATA.is_dir()
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)
        if "browser" in item.keywords and not browser:
            item.add_marker(skip_browser)
        if "realdata" in item.keywords and not data:
            item.add_marker(skip_data)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; tests using it should also carry the ``realdata`` marker."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs {SHARED_DATA}")
    return SHARED_DATA
