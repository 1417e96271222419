"""mkdocs hook: let mkdocstrings read the whole ``mtquery`` package from source.

The package is spread over several folders (``mtquery/``, and ``generate/``, ``eval/``, ``sql/``
mapped to ``mtquery.generate``, ``mtquery.eval``, ``mtquery.sql`` by ``package-dir`` in
pyproject.toml), while griffe, which mkdocstrings uses, finds a package in one folder. This
hook lays the package out as one tree of symbolic links in a temporary folder and points the
Python handler at it; the API pages then document the source as installed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[2]
_TREES: list[Path] = []


def _package_dirs() -> dict[str, str]:
    """``package-dir`` of pyproject.toml: dotted package -> folder."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data["tool"]["setuptools"]["package-dir"]


def source_tree(dest: Path) -> Path:
    """``dest/mtquery``: the package as Python imports it, made of links into the checkout."""
    mapping = _package_dirs()
    top = dest / "mtquery"
    top.mkdir(parents=True)
    for entry in (ROOT / mapping.get("mtquery", "mtquery")).iterdir():
        (top / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    for dotted, folder in mapping.items():
        parts = dotted.split(".")
        if len(parts) != 2 or parts[0] != "mtquery":
            continue
        link = top / parts[1]
        if not link.exists() and (ROOT / folder).is_dir():
            link.symlink_to(ROOT / folder, target_is_directory=True)
    return dest


@event_priority(100)  # before mkdocstrings' on_config, which creates the handler
def on_config(config: Any) -> Any:
    tree = source_tree(Path(tempfile.mkdtemp(prefix="mtquery-api-src-")))
    _TREES.append(tree)
    plugin = config.plugins.get("mkdocstrings")
    if plugin is not None:
        plugin.config.handlers.setdefault("python", {})["paths"] = [str(tree)]
    return config


def on_shutdown() -> None:
    while _TREES:
        shutil.rmtree(_TREES.pop(), ignore_errors=True)
