"""The exact-scan vector cache: built once, shared with the ANN index's sidecar on disk."""

from __future__ import annotations

import os

import numpy as np
import synth

import mtquery
from mtquery.cli import main
from mtquery.knn import QueryVector, exact_knn
from mtquery.vectorcache import open_cache


def test_index_build_shares_vectors_with_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTQUERY_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "d.parquet"
    synth.write(synth.make_table(3000, dim=16, seed=3), data)
    idx_dir = tmp_path / "idx"
    try:
        main(["index", "build", str(data), "--index-dir", str(idx_dir), "--quiet"])
    except SystemExit as exc:
        assert not exc.code
    s = mtquery.open_session(str(data))
    cache = open_cache(s.dataset, s.dim, build=False)
    assert cache is not None
    side = idx_dir / "vectors.f32"
    assert os.stat(side).st_ino == os.stat(cache.path / "vectors.f32").st_ino
    q = QueryVector(vector=np.ones(16, np.float32))
    assert (exact_knn(s, q, 5).column("unique_id").to_pylist()
            == exact_knn(s, q, 5, use_cache=False).column("unique_id").to_pylist())
