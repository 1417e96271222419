"""The released-layout fixture maker (tests/data/released/make_data.py, a script), importable:
``from released import make_data``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "released_make_data", Path(__file__).parent / "data" / "released" / "make_data.py")
make_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_data)

#: the release's repository, as the files are laid out under the mirror's root
REPO = "Major-TOM/Core-S2RGB-SigLIP"
