"""Loading a subject's images and preparing an output folder: the first and last steps every command shares.

A low module (it imports only :mod:`mslesion.io` and the errors), so the pipeline, the longitudinal
comparison, the location report, the spine and the batch runner can all use it without importing
each other.
"""
from __future__ import annotations

from pathlib import Path

from .errors import InputError, OutputError
from .io import check_same_space, load_volume
from .volume import Volume

#: the brain contrasts ``analyze`` takes ('flair' is required)
CONTRASTS = ("flair", "t1", "t2", "t1post")


def load_inputs(paths: dict[str, str | Path | None]) -> dict[str, Volume]:
    """Load and cross-check the given contrasts; 'flair' is required."""
    unknown = set(paths) - set(CONTRASTS)
    if unknown:
        raise InputError(None, f"unknown contrast(s) {sorted(unknown)}; expected {list(CONTRASTS)}")
    flair = paths.get("flair")
    if not flair:
        raise InputError(None, "a FLAIR image is required")
    post = paths.get("t1post")
    if post and not paths.get("t1"):
        raise InputError(post, "a post-contrast T1 is compared with the pre-contrast T1: pass --t1 too")
    vols = {name: load_volume(p, role=name.upper()) for name, p in paths.items() if p}
    for name, vol in vols.items():
        if name != "flair":
            check_same_space(vols["flair"], vol, name.upper())
    return vols


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create the output folder and prove it is writable; an existing file in its place is refused."""
    out = Path(out_dir)
    for place in (out, *out.parents):
        if place.exists() or place.is_symlink():
            if not place.is_dir():
                where = "" if place == out else f" (in the output path {out})"
                raise OutputError(place, f"is a file, not a folder{where}; give a folder for the outputs")
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".mslesion-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(out, f"output folder cannot be written ({exc.strerror or exc})") from exc
    return out
