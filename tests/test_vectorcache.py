"""The exact scan's vector store: the index's own store when an index exists (vectors on
disk once), else the cache; the cache is an optimisation only."""

from __future__ import annotations

import os

import numpy as np
import pytest
import synth

import mtquery
from mtquery.cli import main
from mtquery.io.cache import cache_path, cached_store
from mtquery.query.knn import knn
from mtquery.query.vector import QueryVector
from mtquery.vectors.exact import exact_knn

pytest.importorskip("faiss")


def _run(argv):
    try:
        main(argv)
    except SystemExit as exc:
        assert not exc.code


def test_exact_scan_reads_the_index_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MTQUERY_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "d.parquet"
    synth.write(synth.make_table(3000, dim=16, seed=3), data)
    _run(["index", "build", str(data), "--quiet"])
    s = mtquery.open_session(str(data))
    q = QueryVector(vector=np.ones(16, np.float32))
    got = knn(s, q, 5, exact=True)
    assert not (tmp_path / "cache").exists()  # no second copy of the vectors
    assert (got.column("unique_id").to_pylist()
            == exact_knn(s, q, 5, use_cache=False).column("unique_id").to_pylist())


def test_cache_keyed_by_resolved_path(tmp_path, monkeypatch):
    monkeypatch.setenv("MTQUERY_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    synth.write(synth.make_table(500, dim=8, seed=1), tmp_path / "d.parquet")
    rel = mtquery.open_session("d.parquet")
    absolute = mtquery.open_session(str(tmp_path / "d.parquet"))
    assert cache_path(rel.dataset) == cache_path(absolute.dataset)
    assert cached_store(rel.dataset, 8) is not None
    assert cached_store(absolute.dataset, 8, build=False) is not None


@pytest.mark.parametrize("where", ["under-a-file", "read-only"])
def test_unusable_cache_falls_back_to_streaming(tmp_path, monkeypatch, caplog, where):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    if where == "under-a-file":
        root = blocker / "cache"
    else:
        root = tmp_path / "ro"
        root.mkdir()
        os.chmod(root, 0o500)
        if os.access(root, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: a read-only directory is still writable")
    monkeypatch.setenv("MTQUERY_CACHE", str(root))
    data = tmp_path / "d.parquet"
    synth.write(synth.make_table(500, dim=8, seed=1), data)
    s = mtquery.open_session(str(data))
    q = QueryVector(vector=np.ones(8, np.float32))
    with caplog.at_level("WARNING", logger="mtquery"):
        got = exact_knn(s, q, 5)
    assert got.num_rows == 5
    assert "vector cache unavailable" in caplog.text
    assert (got.column("unique_id").to_pylist()
            == exact_knn(s, q, 5, use_cache=False).column("unique_id").to_pylist())


def test_concurrent_builders_both_succeed(tmp_path, monkeypatch):
    """Two processes building the same cache: one publishes, the other uses its store."""
    import subprocess
    import sys

    monkeypatch.setenv("MTQUERY_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "d.parquet"
    synth.write(synth.make_table(20000, dim=32, seed=2), data)
    code = ("import sys, numpy as np, mtquery; from mtquery.vectors.exact import exact_knn;"
            "from mtquery.query.resolve import QueryVector;"
            f"s = mtquery.open_session({str(data)!r});"
            "t = exact_knn(s, QueryVector(vector=np.ones(32, np.float32)), 3);"
            "print(','.join(t.column('unique_id').to_pylist()))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert len({o[0] for o in outs}) == 1
    leftovers = list((tmp_path / "cache" / "vectors").glob(".mtquery-staging*"))
    assert not leftovers
