"""Atomic output: write to a temporary file beside the target, then rename.

A reader (or a resumed batch) therefore sees either the complete old file,
the complete new file, or nothing - never half a file.
"""
from __future__ import annotations

import contextvars
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import nibabel as nib

from .errors import OutputError

#: temp files carry this marker so a cleanup pass can recognise leftovers.
TMP_MARK = ".mslesion-tmp-"


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


#: permissions of finished files (mkstemp would leave them private, 0600).
FILE_MODE = _umask_mode()
#: while an :func:`output_group` is open, finished temp files wait here instead of being renamed.
_GROUP: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar("mslesion_group", default=None)


def _suffix(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".tar.gz"):
        if name.endswith(ext):
            return ext
    return path.suffix


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path in the target's folder; on success rename it onto target."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{TMP_MARK}", suffix=_suffix(target), dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(target.parent, f"cannot write here ({exc.strerror or exc})") from exc
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, FILE_MODE)
        group = _GROUP.get()
        if group is not None:
            group.append((tmp_path, target))
        else:
            os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextmanager
def output_group(folder: str | Path, previous: tuple[str, ...] = ()) -> Iterator[None]:
    """Commit every file written inside the block together, or none of them.

    On entry the outputs ``previous`` of an earlier run (list the completion
    marker, e.g. report.json, first) and stale temp files are deleted, so a
    crash can never leave two runs' files side by side.  Files written inside
    stay as temp files until the block ends without error; they are then
    renamed into place in the order they were written, so the last one written
    marks completion.  On error the temp files are deleted.
    """
    folder = Path(folder)
    try:
        for name in previous:
            (folder / name).unlink(missing_ok=True)
        remove_stale_temps(folder)
    except OSError as exc:
        raise OutputError(folder, f"cannot remove the previous outputs ({exc.strerror or exc})") from exc
    staged: list[tuple[Path, Path]] = []
    token = _GROUP.set(staged)
    try:
        yield
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _GROUP.reset(token)
    try:
        for tmp, target in staged:
            os.replace(tmp, target)
    except OSError as exc:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise OutputError(folder, f"cannot move the finished outputs into place ({exc.strerror or exc})") from exc


def readable_path(target: str | Path) -> Path:
    """Where ``target``'s content can be read now: inside an :func:`output_group` a file written in the
    group is still its temp file (renamed when the group ends); otherwise ``target`` itself."""
    group = _GROUP.get()
    if group:
        want = Path(target).resolve()
        for tmp, staged in reversed(group):  # the last write of a target is the one renamed into place
            if staged.resolve() == want:
                return tmp
    return Path(target)


def write_text(target: str | Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes(target: str | Path, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_json(target: str | Path, obj: object) -> Path:
    return write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_nifti(target: str | Path, img: nib.Nifti1Image) -> Path:
    with atomic_path(target) as tmp:
        nib.save(img, str(tmp))
    return Path(target)


def remove_stale_temps(folder: str | Path) -> int:
    """Delete temp files left by a killed run. Returns how many were removed."""
    folder = Path(folder)
    n = 0
    if folder.is_dir():
        for p in folder.rglob(f"*{TMP_MARK}*"):
            if p.is_file():
                p.unlink(missing_ok=True)
                n += 1
    return n


def _json_default(obj: object) -> object:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
