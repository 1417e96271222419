"""The examples of the README and the docs pages are true: each console and pycon block is run
again (in a sandbox, see docs/doc_examples.py) and must print what the page shows, volatile
numbers (durations, rates) masked; SQL blocks must return rows; no pasted output carries a
machine path."""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))

from doc_examples import Sandbox, blocks, documents, normalise, same  # noqa: E402

DOCS = documents()
#: documents whose examples take long (a torch model, an index build): the slow marker
SLOW = {"docs/query.md", "docs/generate.md"}


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _diff(expected: str, actual: str) -> str:
    return "\n".join(difflib.unified_diff(normalise(expected).splitlines(),
                                          normalise(actual).splitlines(),
                                          "page", "fresh run", lineterm=""))


@pytest.mark.parametrize("path", [
    pytest.param(p, id=_name(p), marks=[pytest.mark.slow] if _name(p) in SLOW else [])
    for p in DOCS])
def test_examples_print_what_the_page_shows(path, tmp_path):
    sandbox = Sandbox(tmp_path / "work")
    for block in blocks(path.read_text()):
        if block.mode == "static":
            continue
        fresh = sandbox.run(block)  # no-check blocks run too: later blocks use their files
        if block.mode in ("check", "slow"):
            assert same(block.body, fresh), (
                f"{_name(path)} line {block.line}: the output differs from a fresh run "
                f"(docs/update_readme.py {_name(path)} pastes it)\n{_diff(block.body, fresh)}")


def test_readme_and_docs_have_checked_examples():
    names = {_name(p) for p in DOCS}
    assert {"README.md", "docs/query.md", "docs/sql.md"} <= names
    readme = blocks((ROOT / "README.md").read_text())
    assert len([b for b in readme if b.mode in ("check", "slow")]) >= 4


MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|home|tmp|root|Users|var|private|opt|usr|srv)/")


@pytest.mark.parametrize("path", DOCS, ids=_name)
def test_no_machine_path_in_pasted_output(path):
    for block in blocks(path.read_text()):
        output = [ln for ln in block.body.splitlines()
                  if not ln.startswith(("$ ", ">>> ", "... "))]
        bad = [ln for ln in output if MACHINE_PATH.search(ln)]
        assert not bad, f"{_name(path)} line {block.line}: {bad[0]}"


def _sql_blocks() -> list[tuple[str, str]]:
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        out += [(_name(path), b) for b in re.findall(r"```sql\n(.*?)```", path.read_text(), re.S)]
    return out


def test_sql_examples_return_rows():
    import mtquery

    con = mtquery.connect("demo")
    some_id = con.execute("SELECT unique_id FROM embeddings ORDER BY unique_id LIMIT 1"
                          ).fetchone()[0]
    statements = [(name, s.strip()) for name, body in _sql_blocks()
                  for s in body.split(";") if s.strip()]
    assert len(statements) >= 3
    for name, stmt in statements:
        params = {"id": some_id} if "$id" in stmt else None
        rows = con.execute(stmt, params).fetchall() if params else con.execute(stmt).fetchall()
        assert rows, f"{name}: no rows from {stmt!r}"
