#!/usr/bin/env python
"""Re-run the examples of the README and the docs pages and paste their real output under
them, so the examples never drift from the code (``tests/test_readme.py`` checks they match).

    .venv/bin/python docs/update_readme.py                 # README.md + docs pages with examples
    .venv/bin/python docs/update_readme.py docs/query.md   # some of them

Each document runs in a fresh sandbox (a temporary folder, see ``docs/doc_examples.py``):
files the examples write never land in the checkout, and no machine path reaches the page.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from doc_examples import ROOT, Sandbox, documents, refresh  # noqa: E402


def main(argv: list[str]) -> None:
    paths = [Path(a).resolve() for a in argv] or documents()
    for path in paths:
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"{name}:", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="mtquery-docs-") as tmp:
            new = refresh(path.read_text(), Sandbox(Path(tmp)),
                          log=lambda msg: print(f"  {msg}", file=sys.stderr))
        path.write_text(new)


if __name__ == "__main__":
    main(sys.argv[1:])
