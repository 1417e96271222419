"""Remote reading through DuckDB httpfs against a real HTTP server on 127.0.0.1 with Range."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import synth
from rangeserver import RangeServer

import mtquery
from mtquery.io.cost import ReadRefused, read_budget
from mtquery.io.datasets import demo_path
from mtquery.query.filters import Filters, parse_bbox
from mtquery.query.search import search
from mtquery.query.vector import QueryVector
from mtquery.vectors.exact import exact_knn


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    shutil.copy(demo_path(), root / "demo.parquet")
    synth.write(synth.make_table(20_000, dim=16, seed=5), root / "big.parquet",
                row_group_size=2_000)
    with RangeServer(root) as srv:
        yield srv


def test_remote_views_and_search(server):
    local = mtquery.open_session("demo")
    remote = mtquery.open_session(server.url("demo.parquet"))
    assert remote.dataset.remote and remote.dim == local.dim
    n = remote.con.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    assert n == local.con.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    f = Filters(bbox=parse_bbox("-180,-90,180,90"))
    with pytest.raises(ReadRefused):  # the whole dataset: cost first
        search(remote, f, limit=None)
    with read_budget(allow_full_scan=True):
        assert search(remote, f, limit=None).num_rows == n
    assert server.range_requests > 0


def test_remote_knn_equals_local(server, tmp_path):
    url = server.url("big.parquet")
    remote = mtquery.open_session(url)
    q = QueryVector(vector=np.random.default_rng(1).normal(size=16).astype(np.float32))
    with read_budget(allow_full_scan=True):
        got = exact_knn(remote, q, 10)
    local_path = tmp_path / "big.parquet"
    synth.write(synth.make_table(20_000, dim=16, seed=5), local_path, row_group_size=2_000)
    want = exact_knn(mtquery.open_session(str(local_path)), q, 10)
    assert got.column("unique_id").to_pylist() == want.column("unique_id").to_pylist()


def test_remote_reads_only_needed_bytes(server):
    before = server.bytes_sent
    s = mtquery.open_session(server.url("big.parquet"))
    s.con.execute("SELECT count(*), min(grid_cell) FROM embeddings").fetchall()
    sent = server.bytes_sent - before
    size = (server.root / "big.parquet").stat().st_size
    assert sent < size * 0.6  # the embedding column chunks are never fetched


def test_remote_missing_file_is_a_clear_error(server):
    from mtquery.errors import DataError

    with pytest.raises(DataError):
        mtquery.open_session(server.url("nope.parquet"))
