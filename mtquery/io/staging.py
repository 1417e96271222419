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


def publish(stage: str | Path, target: str | Path, *, on_exists: str = "error",
            name: str | Path | None = None) -> bool:
    """Rename the finished ``stage`` (a file or folder in ``.mtquery-staging/``) to
    ``target``: the one way mtquery publishes what it wrote, so a reader sees the old output
    or the new one, never a part. What happens when ``target`` is there:

    - ``"replace"``: the older target is moved aside into staging first, removed after;
    - ``"keep"``: another run published first and its output is as good as ours: ``stage``
      is discarded and False returned;
    - ``"error"``: ``stage`` is discarded and a ``DataError`` names ``name`` (a rename onto
      a non-empty folder fails; onto an empty one it replaces it).
    Returns True when ``stage`` became ``target``."""
    import errno

    from mtquery.errors import DataError

    stage, target = Path(stage), Path(target)
    label = name if name is not None else target
    old = None
    if on_exists == "replace" and (target.exists() or target.is_symlink()):
        old = new_staging(target.parent, target.name + ".old", directory=False)
        os.rename(target, old)
    try:
        os.rename(stage, target)
    except OSError as exc:
        if on_exists == "keep" and target.exists():
            discard(stage)
            return False
        discard(stage)
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise DataError(f"{label} was created by another run while this one was writing; "
                            "kept it and discarded this run's output") from exc
        if exc.errno == errno.ENOTDIR:
            raise DataError(f"{label} was replaced by a file while this run was writing; "
                            "discarded this run's output") from exc
        raise DataError(f"cannot publish {label}: {exc.strerror or exc}") from exc
    if old is not None:
        discard(old)
    tidy(target.parent)
    return True
