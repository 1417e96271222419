"""Exactly the local files a dataset argument names.

- A glob the user wrote (``*``, ``?``, ``[...]``, ``**``) is expanded here, once: directory
  symlinks are followed, but a directory already walked is never walked again (two symlink
  loops end in microseconds, not in a 10-minute recursion), hidden names are skipped unless the
  pattern spells them.
- The same real file is read once, however many names (links, ``..``, two globs) reach it.
- DuckDB globs every path it is handed; ``duckdb_path`` escapes ``*``, ``?`` and ``[`` so a
  file named ``a[b].parquet`` is read, not ``ab.parquet`` beside it.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

GLOB_CHARS = frozenset("*?[")
_ESCAPE = re.compile(r"([*?\[])")


def has_glob(text: str) -> bool:
    return any(ch in text for ch in GLOB_CHARS)


def duckdb_path(path: str) -> str:
    """A local path as DuckDB must be handed it to open exactly that file: each glob character
    in a class of its own (``a[b].parquet`` -> ``a[[]b].parquet``)."""
    return _ESCAPE.sub(r"[\1]", path) if has_glob(path) else path


def unique_files(paths: Iterable[Path]) -> list[Path]:
    """``paths`` in order, each real file once (the first name that reaches it is kept)."""
    seen: set[str] = set()
    out = []
    for p in paths:
        real = os.path.realpath(p)
        if real not in seen:
            seen.add(real)
            out.append(p)
    return out


#: what a folder's data files are called (Parquet and GeoParquet)
SUFFIXES = (".parquet", ".gpq", ".geoparquet")


def walk_files(root: Path, suffixes: tuple[str, ...] = SUFFIXES) -> list[Path]:
    """Visible files ending in one of ``suffixes`` under ``root``, sorted, directory symlinks
    followed once (no loops), each real file once."""
    found = _match(Path(root), ["**", "*"], set())
    return unique_files(sorted(p for p in found if p.name.lower().endswith(suffixes)))


def expand_glob(pattern: str) -> list[Path]:
    """The files a glob pattern matches (``**`` spans folders), sorted, each real file once."""
    pattern = os.path.expanduser(pattern)
    parts = Path(pattern).parts
    root_parts: list[str] = []
    for part in parts:
        if has_glob(part):
            break
        root_parts.append(part)
    rest = list(parts[len(root_parts):])
    root = Path(*root_parts) if root_parts else Path(".")
    found = _match(root, rest, set()) if rest else iter([root] if root.is_file() else [])
    rel = not Path(pattern).is_absolute() and not root_parts
    return unique_files(sorted(Path(os.path.relpath(p)) if rel else p for p in found))


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError:
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _visible(name: str, seg: str) -> bool:
    return not name.startswith(".") or seg.startswith(".")


def _dir_key(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _match(folder: Path, segs: list[str], walked: set) -> Iterator[Path]:
    """Paths under ``folder`` matching the segments; ``walked`` holds (segment position,
    device, inode) of every folder a ``**`` has descended into, so none is entered twice."""
    seg, rest = segs[0], segs[1:]
    if seg == "**":
        key = _dir_key(folder)
        if key is None or (len(segs), *key) in walked:
            return
        walked.add((len(segs), *key))
        if rest:
            yield from _match(folder, rest, walked)  # ** matching no folder
        for e in sorted(_entries(folder), key=lambda e: e.name):
            if _visible(e.name, "") and _is_dir(e):
                yield from _match(Path(e.path), segs, walked)
            elif not rest and _visible(e.name, "") and _is_file(e):
                yield Path(e.path)
        return
    if not has_glob(seg):
        child = folder / seg
        if not rest:
            if child.is_file():
                yield child
        elif child.is_dir():
            yield from _match(child, rest, walked)
        return
    for e in sorted(_entries(folder), key=lambda e: e.name):
        if not _visible(e.name, seg) or not fnmatch.fnmatchcase(e.name, seg):
            continue
        if not rest:
            if _is_file(e):
                yield Path(e.path)
        elif _is_dir(e):
            yield from _match(Path(e.path), rest, walked)
