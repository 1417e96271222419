"""Cross-model alignment: the same fragments in two datasets of different models."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import synth

import mtquery
from mtquery.cli import main
from mtquery.errors import DataError
from mtquery.query.align import align
from mtquery.standard.schema import embedding_array


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("align")
    a = synth.make_table(300, dim=16, seed=4)
    pb = pa.array([[0, 211 * (i % 5), 224, 211 * (i % 5) + 224] for i in range(300)],
                  pa.list_(pa.int64()))
    a = a.set_column(a.schema.get_field_index("pixel_bbox"), "pixel_bbox", pb)
    x = synth.vectors(a)
    proj = np.random.default_rng(1).normal(size=(16, 24)).astype(np.float32)
    b = a.slice(0, 250)  # the other model covers 250 of the 300 fragments, in another order
    b = b.set_column(b.schema.get_field_index("embedding"), "embedding",
                     embedding_array(np.tanh(x[:250] @ proj)))
    b = b.set_column(b.schema.get_field_index("unique_id"), "unique_id",
                     pa.array([f"other-{i}" for i in range(250)]))
    b = b.take(pa.array(np.random.default_rng(2).permutation(250)))
    return synth.write(a, d / "a.parquet"), synth.write(b, d / "b.parquet")


def test_align_pairs_every_shared_fragment(two_models):
    a, b = two_models
    s = mtquery.open_session(a)
    t = align(s, b, limit=None)
    assert t.num_rows == 250
    row_of = {u: i for i, u in enumerate(
        synth.pq.read_table(a, columns=["unique_id"]).column(0).to_pylist())}
    for ua, ub in zip(t.column("unique_id").to_pylist(),
                      t.column("other_unique_id").to_pylist()):
        assert ub == f"other-{row_of[ua]}"  # the same fragment, whatever the row order
    agree = t.column("agreement@10").to_numpy()
    assert np.all((agree >= 0) & (agree <= 1)) and agree.mean() > 0.2  # related models agree


def test_sql_macro_and_cli(two_models, capsys):
    a, b = two_models
    con = mtquery.connect(a)
    n = con.execute("SELECT count(*) FROM aligned(?)", [b]).fetchone()[0]
    assert n == 250
    try:
        main(["align", "-d", a, "--other", b, "--limit", "5", "-f", "json"])
    except SystemExit as exc:
        assert not exc.code
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 5 and rows[0]["other_unique_id"].startswith("other-")


def test_no_counterpart_is_one_clear_error(two_models, tmp_path):
    a, _ = two_models
    other = synth.write(synth.make_table(20, dim=8, seed=99), tmp_path / "x.parquet")
    with pytest.raises(DataError, match="counterpart"):
        align(mtquery.open_session(a), other)
