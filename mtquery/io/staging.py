"""Staging folders: where a run writes before it publishes by rename.

Every run that publishes a directory or file (optimize, index build, the vector cache,
extract) stages inside one hidden folder per parent directory, ``.mtquery-staging/``, under a
name ending in the writer's process id. Dataset resolution never reads hidden folders, so a
run killed half-way leaves nothing a later read takes for data, and the next run removes what
dead processes left (``sweep``). Leftovers of older versions (``.NAME.tmp-PID``,
``.NAME.old-PID``, ``.build-*``) are swept as well.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

STAGING = ".mtquery-staging"
_PID = re.compile(r"-(\d+)-[0-9a-f]{8}$")
_LEGACY = re.compile(r"^\..+\.(?:tmp|old)-(\d+)$")


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def sweep(parent: str | Path) -> int:
    """Remove staging left in ``parent`` by processes that no longer run; returns how many."""
    parent = Path(parent)
    removed = 0
    folder = parent / STAGING
    try:
        entries = list(folder.iterdir()) if folder.is_dir() else []
    except OSError:
        entries = []
    for entry in entries:
        m = _PID.search(entry.name)
        if m is None or not pid_alive(int(m.group(1))):
            _remove(entry)
            removed += 1
    try:
        folder.rmdir()  # only when empty
    except OSError:
        pass
    try:
        legacy = [p for p in parent.iterdir() if p.name.startswith(".")]
    except OSError:
        legacy = []
    for entry in legacy:
        m = _LEGACY.match(entry.name)
        if (m and not pid_alive(int(m.group(1)))) or entry.name.startswith(".build-"):
            _remove(entry)
            removed += 1
    return removed


def new_staging(parent: str | Path, name: str, directory: bool = True) -> Path:
    """A fresh staging path in ``parent/.mtquery-staging/`` (a directory, or a path for a
    file when ``directory`` is False), after sweeping what dead runs left there."""
    parent = Path(parent)
    sweep(parent)
    folder = parent / STAGING
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{os.getpid()}-{secrets.token_hex(4)}"
    if directory:
        path.mkdir()
    return path


def discard(path: str | Path) -> None:
    """Remove a staging path and, when it is empty, its staging folder."""
    path = Path(path)
    _remove(path)
    tidy(path.parent.parent)


def tidy(parent: str | Path) -> None:
    """Remove ``parent``'s staging folder when nothing is left in it."""
    try:
        (Path(parent) / STAGING).rmdir()
    except OSError:
        pass
