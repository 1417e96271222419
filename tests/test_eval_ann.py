"""eval retrieval --ann index: the dataset's own mtquery index compared with exact search."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mtquery.cli import main
from mtquery.io.datasets import demo_path

LABELS = Path(__file__).parent / "data" / "demo_labels" / "demo_labels.parquet"


def _run(args):
    try:
        main(args)
    except SystemExit as exc:
        return exc.code or 0
    return 0


@pytest.mark.slow
def test_retrieval_against_mtquery_index(tmp_path, capsys):
    data = tmp_path / "demo.parquet"
    shutil.copy(demo_path(), data)
    out = tmp_path / "r.json"
    args = ["eval", "retrieval", "-d", str(data), "-l", str(LABELS), "--queries", "50",
            "--k", "1,10", "--ann", "index", "--output", str(out)]
    assert _run(args) == 1  # no index yet: one clear error, no results file
    assert "mtquery index build" in capsys.readouterr().err and not out.exists()
    assert _run(["index", "build", str(data), "--quiet"]) == 0
    assert _run(args) == 0
    doc = json.loads(out.read_text())
    def find(d, key):
        if isinstance(d, dict):
            for k, v in d.items():
                if k == key:
                    return v
                got = find(v, key)
                if got is not None:
                    return got
        return None

    assert find(doc, "recall@10_vs_exact") >= 0.9
