"""Reliability of ``info``: it reported the dimension of the first row of a ragged embedding
column (kept as a regression test); the check must stay cheap on consistent data."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import synth

from mtquery import info as dataset_info
from mtquery import open_session
from mtquery.errors import DataError
from mtquery.query.info import embedding_dims


def _ragged(path, n=50, short=(7, 23, 31), layout="list", row_group_size=20):
    t = synth.make_table(n, dim=8, seed=1)
    rng = np.random.default_rng(0)
    vec = [rng.random(6 if i in short else 8).astype(np.float32) for i in range(n)]
    if layout == "list":
        arr = pa.array([list(v) for v in vec], pa.list_(pa.float32()))
    else:  # Array2D (1, dim)
        arr = pa.array([[list(v)] for v in vec], pa.list_(pa.list_(pa.float32())))
    t = t.set_column(t.schema.get_field_index("embedding"), "embedding", arr)
    pq.write_table(t, path, row_group_size=row_group_size)
    return t


@pytest.mark.parametrize("layout", ["list", "array2d"])
def test_ragged_column_is_reported(tmp_path, layout):
    path = tmp_path / "ragged.parquet"
    t = _ragged(path, layout=layout)
    with pytest.raises(DataError) as err:
        dataset_info(str(path))  # 0.1: {"dim": 8, ...}, the first row's length
    msg = str(err.value)
    assert msg.startswith("mixed embedding dimensions")
    assert "8 (47 rows)" in msg and "6 (3 rows" in msg and "\n" not in msg
    ids = t.column("unique_id").to_pylist()
    assert any(ids[i] in msg for i in (7, 23, 31))  # an example of the rarer length
    assert str(path) in msg


def test_consistent_lists_are_fine_and_cheap(tmp_path):
    path = tmp_path / "list.parquet"
    synth.write(synth.make_table(60, dim=8, seed=2, embedding_layout="list"), path)
    assert dataset_info(str(path))["dim"] == 8
    session = open_session(str(path))
    try:
        assert embedding_dims(session) == {8: 60}
    finally:
        session.close()


def test_null_embeddings_are_not_a_dimension(tmp_path):
    t = synth.make_table(30, dim=8, seed=2, embedding_layout="list")
    emb = t.column("embedding").to_pylist()
    emb[3] = None
    t = t.set_column(t.schema.get_field_index("embedding"), "embedding",
                     pa.array(emb, pa.list_(pa.float32())))
    path = tmp_path / "nulls.parquet"
    pq.write_table(t, path)
    assert dataset_info(str(path))["dim"] == 8


def test_fixed_size_is_one_dimension_by_type(small_dataset):
    session = open_session(small_dataset)
    try:
        assert embedding_dims(session) == {8: 500}
    finally:
        session.close()
