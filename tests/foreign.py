"""The foreign-shape fixtures: embedding files in the shapes OTHER projects write
(``tests/data/<shape>/data.py``, each a seeded script), loaded so tests can loop over them.

    from foreign import GOOD, SHAPES, write_shape
    for name in GOOD:
        path = write_shape(name, tmp_path / name)   # a file, or a folder (majortom_torchgeo)

``SHAPES[name]`` is the script's ``write(out, rows=50, seed=0) -> Path``: ``out`` is a folder
the script writes into; it returns what a user would point mtquery at. ``GOOD`` are the
readable shapes, ``BAD`` the folder of files that must be refused (``module(BAD).NAMES``
maps each case to its file). ``truth(name)`` gives the rows a shape was drawn from
(``foreign_common.Rows``: place, Major TOM cell, time, lon/lat bounds, cluster, changed).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

DATA = Path(__file__).parent / "data"
#: readable shapes: name -> what it mimics
GOOD = ("majortom_torchgeo", "points_id", "gpq_date", "chips_id", "latlon_f16", "projected")
BAD = "bad_inputs"

_modules: dict[str, ModuleType] = {}


def module(name: str) -> ModuleType:
    """The loaded ``tests/data/<name>/data.py`` (loaded once)."""
    if name not in _modules:
        spec = importlib.util.spec_from_file_location(f"foreign_{name}_data",
                                                      DATA / name / "data.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _modules[name] = mod
    return _modules[name]


SHAPES: dict[str, Callable[..., Path]] = {name: module(name).write for name in (*GOOD, BAD)}


def write_shape(name: str, out: str | Path, rows: int = 50, seed: int = 0) -> Path:
    """Write shape ``name`` into the folder ``out``; the path to give mtquery."""
    return SHAPES[name](Path(out), rows=rows, seed=seed)


def truth(name: str, rows: int = 50, seed: int = 0):
    """The seeded rows shape ``name`` was drawn from (same ``rows`` and ``seed``)."""
    return module(name).truth(rows, seed)
