"""Output files that never clobber: write to a temporary file beside the target, then rename.

What is at the target decides how:
- nothing, or a regular file: a temporary file in the same directory, renamed over it only
  when the block ends without an exception (readers see the old or the new file, never half);
- a symlink: the file it points to is written that way; the link itself stays a link;
- a FIFO, character device (``/dev/stdout``, ``/dev/null``) or socket: written through in
  place, never replaced by a regular file (a rename would destroy the node);
- a directory: refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mtquery.errors import DataError, UsageError


def output_target(target: str | os.PathLike[str]) -> tuple[Path, bool]:
    """(path to write, write-through?) for an output path, following symlinks."""
    path = Path(target)
    real = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return real, False
    except OSError as exc:
        raise DataError(f"cannot write {target}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"output {target} is a directory; give a file name", "output")
    if stat.S_ISREG(st.st_mode):
        return real, False
    return real, True  # FIFO, device, socket: write through


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a path to write; it becomes ``target`` only if the block ends without an
    exception, otherwise it is removed. The target is never half-written."""
    real, through = output_target(target)
    if through:
        try:
            yield real
        except OSError as exc:
            raise _write_error(target, exc) from exc
        return
    real.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files; give the usual umask-based mode
            mode = (os.stat(real).st_mode & 0o7777) if real.exists() else 0o666 & ~_umask()
            os.chmod(tmp_path, mode)
        os.replace(tmp_path, real)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
            raise _write_error(target, exc) from exc
        raise


def _write_error(target: str | os.PathLike[str], exc: OSError) -> DataError:
    if exc.errno == errno.ENOSPC:
        return DataError(f"no space left on device writing {target}")
    return DataError(f"cannot write {target}: {exc.strerror or exc}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
