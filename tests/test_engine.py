"""Datasets, the connection factory and the SQL views."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import synth

import mtquery
from mtquery.errors import DataError, UsageError
from mtquery.io import datasets
from mtquery.query import session
from mtquery.query.session import extension_file, new_connection


def test_extensions_load_from_package_files():
    for name in ("spatial", "vss", "httpfs"):
        path = extension_file(name)
        assert path is not None and path.is_file(), name
    con = new_connection()
    loaded = {r[0] for r in con.execute(
        "SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()}
    assert {"spatial", "vss", "httpfs"} <= loaded


def test_sql_files_are_packaged():
    names = [n for n, _ in session.sql_files()]
    assert "10_embeddings.sql" in names and "20_acquisitions.sql" in names


def test_demo_views():
    s = mtquery.open_session("demo")
    types = dict(s.con.execute("SELECT column_name, data_type FROM information_schema.columns "
                               "WHERE table_name = 'embeddings'").fetchall())
    assert types["embedding"] == f"FLOAT[{s.dim}]"
    assert types["acquired_at"] == "TIMESTAMP"
    assert types["geometry"].startswith("GEOMETRY")
    n_acq = s.con.execute("SELECT count(*) FROM acquisitions").fetchone()[0]
    n_rows = s.con.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    assert n_acq >= 1 and n_rows >= n_acq
    assert s.con.execute("SELECT sum(fragments) FROM acquisitions").fetchone()[0] == n_rows
    assert s.con.execute("SELECT count(*) FROM cells").fetchone()[0] >= 1


def test_connect_returns_connection_with_macros():
    con = mtquery.connect("demo")
    d = con.execute("SELECT cosine_distance(embedding, embedding) FROM embeddings LIMIT 1")
    assert d.fetchone()[0] == pytest.approx(0, abs=1e-5)


@pytest.mark.parametrize("layout", ["fixed", "list", "array2d"])
def test_embedding_layouts(tmp_path, layout):
    t = synth.make_table(50, dim=6, seed=2, embedding_layout=layout)
    path = synth.write(t, tmp_path / "x.parquet")
    s = mtquery.open_session(path)
    assert s.dim == 6
    got = s.con.execute("SELECT embedding FROM embeddings ORDER BY source_row LIMIT 1").fetchone()
    assert list(got[0]) == pytest.approx(synth.vectors(t)[0].tolist())


def test_timestamp_forms_parse(tmp_path):
    t = synth.make_table(20, dim=4, seed=3)
    ts = ["20200717T105031", "2020-07-17T10:50:31", "2020-07-17T10:50:31Z",
          "2020-07-17 10:50:31"] * 5
    t = t.set_column(t.schema.get_field_index("timestamp"), "timestamp", pa.array(ts))
    s = mtquery.open_session(synth.write(t, tmp_path / "t.parquet"))
    got = {r[0] for r in s.con.execute("SELECT acquired_at FROM embeddings").fetchall()}
    assert got == {dt.datetime(2020, 7, 17, 10, 50, 31)}


def test_dataset_forms(tmp_path):
    d = tmp_path / "parts"
    d.mkdir()
    for i in range(3):
        synth.write(synth.make_table(30, dim=4, seed=10 + i), d / f"part_{i}.parquet")
    assert len(datasets.resolve(str(d)).sources) == 3
    assert len(datasets.resolve(str(d / "part_*.parquet")).sources) == 3
    two = [str(d / "part_0.parquet"), str(d / "part_1.parquet")]
    assert len(datasets.resolve(two).sources) == 2
    assert len(datasets.resolve(",".join(two)).sources) == 2
    s = mtquery.open_session(str(d))
    assert s.con.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 90


def test_catalog_names_resolve_to_hf():
    for name, repo in [("siglip", "Core-S2RGB-SigLIP"), ("dinov2", "Core-S2RGB-DINOv2"),
                       ("ssl4eo-s2l1c", "Core-S2L1C-SSL4EO"),
                       ("ssl4eo-s1rtc", "Core-S1RTC-SSL4EO")]:
        ds = datasets.resolve(name)
        assert ds.remote
        assert ds.sources == (f"hf://datasets/Major-TOM/{repo}/embeddings/*.parquet",)
    assert datasets.resolve("hf://datasets/x/y/*.parquet").remote


def test_default_dataset_env(monkeypatch, small_dataset):
    monkeypatch.delenv("MTQUERY_DATASET", raising=False)
    assert datasets.resolve(None).name == "demo"
    monkeypatch.setenv("MTQUERY_DATASET", small_dataset)
    assert datasets.resolve(None).sources == (small_dataset,)


def test_bad_datasets(tmp_path):
    with pytest.raises(UsageError, match="unknown dataset"):
        datasets.resolve("nosuchcatalog")
    with pytest.raises(DataError, match="no such file"):
        datasets.resolve(str(tmp_path / "missing.parquet"))
    junk = tmp_path / "junk.parquet"
    junk.write_text("this is not parquet at all")
    with pytest.raises(DataError, match="not a Parquet file"):
        datasets.resolve(str(junk))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no .parquet, .gpq or .geoparquet files"):
        datasets.resolve(str(empty))


def test_missing_standard_columns_are_derived(tmp_path):
    full = synth.make_table(10, dim=4)
    t = full.drop_columns(["grid_cell", "centre_lat"])
    path = synth.write(t, tmp_path / "nocols.parquet")
    s = mtquery.open_session(path)
    try:
        assert not s.shape.roles.standard and "grid_cell" in s.shape.roles.derived
        got = s.con.execute("SELECT grid_cell FROM embeddings ORDER BY source_row").fetchall()
    finally:
        s.close()
    assert [g for (g,) in got] == full.column("grid_cell").to_pylist()


def test_mixed_dimensions_across_files(tmp_path):
    synth.write(synth.make_table(10, dim=4, embedding_layout="list"), tmp_path / "a.parquet")
    synth.write(synth.make_table(10, dim=5, seed=1, embedding_layout="list"),
                tmp_path / "b.parquet")
    with pytest.raises(DataError, match="mixed embedding dimensions"):
        mtquery.open_session(str(tmp_path))


def test_mixed_dimensions_within_file(tmp_path):
    t = synth.make_table(10, dim=4, embedding_layout="list")
    emb = pa.array([[1.0] * (4 if i else 5) for i in range(10)], pa.list_(pa.float32()))
    t = t.set_column(t.schema.get_field_index("embedding"), "embedding", emb)
    pq.write_table(t, tmp_path / "m.parquet")
    s = mtquery.open_session(str(tmp_path / "m.parquet"))
    from mtquery.query.search import run

    with pytest.raises(DataError, match="mixed embedding dimensions|FLOAT"):
        run(s, "SELECT embedding FROM embeddings")
