"""The README's SQL and Python examples run as written (on the bundled demo)."""

from __future__ import annotations

import re
from pathlib import Path

import mtquery

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_sql_examples_run():
    con = mtquery.connect("demo")
    some_id = con.execute("SELECT unique_id FROM embeddings LIMIT 1").fetchone()[0]
    statements = [s.strip() for b in _blocks("sql") for s in b.split(";") if s.strip()]
    assert len(statements) >= 3
    for stmt in statements:
        params = {"id": some_id} if "$id" in stmt else None
        con.execute(stmt, params).fetchall() if params else con.execute(stmt).fetchall()


def test_python_example_runs():
    for block in _blocks("python"):
        exec(compile(block, "README.md", "exec"), {})
