"""The embedding metadata block (mtquery.io.embmeta): its fields, reading it back, refusing a
malformed one in one line, and every writer carrying it (generate, optimize, extract,
parquet results); ``info`` prints it."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clirun import run

import mtquery
from mtquery.errors import DataError
from mtquery.io.datasets import demo_path
from mtquery.io.embmeta import (
    EXTENSION,
    KEY,
    block,
    carried,
    describe,
    dtype_name,
    of_files,
    read_block,
    summary,
    with_block,
)
from mtquery.io.optimize import optimize

DATA = Path(__file__).parent / "data"


def _blk_of(path: Path) -> dict | None:
    return read_block(pq.read_schema(path).metadata)


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet"))


def _demo_with(tmp_path: Path, name: str, blk: dict | None = None, raw: bytes | None = None,
               rows: slice | None = None) -> Path:
    """A copy of the demo (or some of its rows) with a block (or raw bytes under KEY)."""
    table = pq.read_table(demo_path())
    if rows is not None:
        table = table.slice(rows.start, rows.stop - rows.start)
    meta = dict(table.schema.metadata or {})
    if blk is not None:
        meta = dict(with_block(table.schema, blk).metadata)
    if raw is not None:
        meta[KEY] = raw
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), path)
    return path


# ---------------------------------------------------------------- the block itself


def test_block_fields_follow_the_stac_embeddings_extension():
    blk = block(768, "float32", model="siglip", weights="hf-hub:timm/x @ main",
                normalisation="l2", grid_km=10.0,
                roles={"vector": "emb", "id": "chip", "time": "acq", "place": "geometry"})
    assert blk["stac_extensions"] == [EXTENSION]
    assert blk["emb:type"] == "chip" and blk["emb:dimensions"] == 768
    assert blk["data_type"] == "float32"
    assert blk["emb:chip_layout"] == {"layout_type": "named_grid", "grid_id": "major-tom",
                                      "mtquery:spacing_km": 10.0}
    assert blk["emb:postprocessing"] == {"format": "mtquery:normalisation", "expression": "l2"}
    assert describe(blk) == {
        "column": "embedding", "dim": 768, "dtype": "float32", "model": "siglip",
        "weights": "hf-hub:timm/x @ main", "normalisation": "l2", "grid": "major-tom",
        "grid_km": 10.0,
        "roles": {"vector": "emb", "id": "chip", "time": "acq", "place": "geometry"}}
    assert summary(blk).startswith("768 x float32 in 'embedding'; model siglip")
    # what is not known is left out, not guessed
    bare = block(16, grid_km=None)
    assert not {"mtquery:model", "emb:postprocessing", "emb:chip_layout",
                "mtquery:roles"} & set(bare)
    assert describe(bare)["model"] is None and describe(bare)["grid_km"] is None


@pytest.mark.parametrize("given, name", [
    ("float32", "float32"), ("float", "float32"), ("double", "float64"),
    ("halffloat", "float16"), ("<f2", "float16"), ("int8", "int8"),
    (pa.list_(pa.float16(), 8), "float16"), (pa.list_(pa.float64()), "float64"),
    (pa.list_(pa.list_(pa.float32(), 4)), "float32"),
])
def test_dtype_names(given, name):
    assert dtype_name(given) == name


def test_with_block_keeps_geo_and_read_block_round_trips(tmp_path):
    table = pq.read_table(demo_path())
    blk = block(60, model="spectral", normalisation="none")
    schema = with_block(table.schema, blk)
    assert schema.metadata[b"geo"] == table.schema.metadata[b"geo"]
    assert read_block(schema.metadata) == blk
    path = tmp_path / "x.parquet"
    pq.write_table(table.replace_schema_metadata(schema.metadata), path)
    assert _blk_of(path) == blk
    assert read_block(None) is None and read_block({b"geo": b"{}"}) is None
    # a newer block replaces the older one
    assert read_block(with_block(schema, block(60)).metadata) == block(60)


GOOD = block(8, model="m", weights="w", normalisation="l2", roles={"vector": "v"})


@pytest.mark.parametrize("raw, words", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (json.dumps({**GOOD, "emb:dimensions": 0}).encode(), "emb:dimensions"),
    (json.dumps({**GOOD, "emb:dimensions": "768"}).encode(), "emb:dimensions"),
    (json.dumps({**GOOD, "data_type": "float128"}).encode(), "data_type"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "mtquery:column"}).encode(),
     "mtquery:column"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "mtquery:version"}).encode(),
     "mtquery:version"),
    (json.dumps({**GOOD, "mtquery:model": "siglip"}).encode(), "mtquery:model"),
    (json.dumps({**GOOD, "emb:chip_layout": {"layout_type": "named_grid",
                                             "mtquery:spacing_km": -1}}).encode(),
     "emb:chip_layout"),
    (json.dumps({**GOOD, "mtquery:roles": {"vector": 3}}).encode(), "mtquery:roles"),
    (json.dumps({**GOOD, "emb:postprocessing": "l2"}).encode(), "emb:postprocessing"),
])
def test_malformed_block_is_one_line_naming_the_problem(raw, words):
    with pytest.raises(DataError) as err:
        read_block({KEY: raw})
    text = str(err.value)
    assert "\n" not in text and words in text and KEY.decode() in text


def test_block_refuses_what_it_cannot_describe():
    with pytest.raises(DataError, match="emb:dimensions"):
        block(0)
    with pytest.raises(DataError, match="data type"):
        block(8, "complex64")


def test_blocks_of_several_files():
    a = block(8, model="m1", weights="w1", normalisation="l2")
    b = block(8, model="m2", normalisation="l2")
    assert of_files([a, a]) == (a, None)
    assert of_files([None, None]) == (None, None)
    blk, note = of_files([a, None])
    assert blk == a and note.startswith("1 of 2 file(s)")
    assert "2 different" in of_files([a, b])[1]
    # a writer copying them keeps what they agree on, with its own dimension and type
    both = carried([a, b], 8, "float16")
    assert describe(both)["model"] is None and describe(both)["normalisation"] == "l2"
    assert both["data_type"] == "float16"
    same = carried([a, a], 8, "float32", model="ignored")
    assert describe(same)["model"] == "m1" and describe(same)["weights"] == "w1"
    # inputs without blocks: what the writer knows
    new = carried([None], 8, "float32", model="spectral", weights="none")
    assert describe(new)["model"] == "spectral" and describe(new)["grid_km"] == 10.0


# ---------------------------------------------------------------- the writers


def test_optimize_writes_a_block_and_copies_its_inputs(tmp_path):
    out = tmp_path / "plain"
    m = optimize([str(demo_path())], out, validate=False)
    blk = _blk_of(_parts(out)[0])
    assert blk == m["embedding_block"]
    d = describe(blk)
    assert (d["dim"], d["dtype"], d["column"], d["grid_km"]) == (60, "float32", "embedding",
                                                                 10.0)
    half = tmp_path / "half"
    optimize([str(demo_path())], half, float16=True, rows_per_file=1000,
             row_group_size=500, validate=False)
    assert len(_parts(half)) == 3
    assert {_blk_of(p)["data_type"] for p in _parts(half)} == {"float16"}

    roles = {"vector": "emb", "id": "chip_id", "time": "acq", "place": "geometry"}
    given = block(60, model="my-model", weights="my-weights @ r1", normalisation="l2",
                  roles=roles)
    src = _demo_with(tmp_path, "in/a.parquet", given)
    copied = tmp_path / "copied"
    optimize([str(src)], copied, float16=True, validate=False)
    got = describe(_blk_of(_parts(copied)[0]))
    assert got == {**describe(given), "dtype": "float16"}
    assert pq.read_schema(_parts(copied)[0]).metadata[b"geo"]  # geo kept beside it


def test_optimize_of_inputs_of_two_models_names_no_model(tmp_path):
    a = _demo_with(tmp_path, "in/a.parquet", block(60, model="m1", normalisation="l2"),
                   rows=slice(0, 1000))
    b = _demo_with(tmp_path, "in/b.parquet", block(60, model="m2", normalisation="l2"),
                   rows=slice(1000, 2475))
    out = tmp_path / "out"
    optimize([str(a), str(b)], out, validate=False)
    got = describe(_blk_of(_parts(out)[0]))
    assert got["model"] is None and got["normalisation"] == "l2"


def test_extract_carries_the_block(tmp_path):
    given = block(60, model="my-model", weights="w", normalisation="none")
    src = _demo_with(tmp_path, "src/demo.parquet", given)
    out = tmp_path / "region"
    m = mtquery.extract(str(src), output=out, bbox="-76,37,-75,38")
    assert m["rows"] > 0
    assert describe(_blk_of(_parts(out)[0])) == describe(given)
    # a catalog dataset without a block: the block names the catalog's model
    out2 = tmp_path / "region2"
    mtquery.extract("demo", output=out2, bbox="-76,37,-75,38")
    assert describe(_blk_of(_parts(out2)[0]))["model"] == "spectral"


def test_parquet_results_carry_a_block_when_they_hold_vectors(tmp_path):
    from mtquery.cli.output import write_rows

    vecs = np.arange(12, dtype=np.float32).reshape(3, 4)
    with_vecs = pa.table({"unique_id": ["a", "b", "c"],
                          "embedding": pa.array(vecs.tolist(), pa.list_(pa.float32()))})
    write_rows(with_vecs, "parquet", tmp_path / "v.parquet")
    blk = _blk_of(tmp_path / "v.parquet")
    assert describe(blk)["dim"] == 4 and describe(blk)["dtype"] == "float32"
    write_rows(with_vecs.drop_columns(["embedding"]), "parquet", tmp_path / "n.parquet")
    assert _blk_of(tmp_path / "n.parquet") is None
    ragged = pa.table({"embedding": pa.array([[1.0], [1.0, 2.0]], pa.list_(pa.float32()))})
    write_rows(ragged, "parquet", tmp_path / "r.parquet")
    assert _blk_of(tmp_path / "r.parquet") is None  # no single dimension to describe


def test_query_results_as_parquet(tmp_path, capsys):
    out = tmp_path / "s.parquet"
    code, _, err = run(capsys, "sql", "SELECT unique_id, embedding, ST_AsWKB(geometry) AS "
                       "geometry FROM embeddings LIMIT 5", "-d", "demo", "--format", "parquet",
                       "-o", out)
    assert code == 0, err
    t = pq.read_table(out)
    assert b"geo" in t.schema.metadata
    assert describe(read_block(t.schema.metadata))["dim"] == 60
    code, _, err = run(capsys, "search", "-d", "demo", "--bbox", "-76,37,-75,38", "--format",
                       "parquet", "-o", tmp_path / "n.parquet")
    assert code == 0, err
    assert _blk_of(tmp_path / "n.parquet") is None  # rows without vectors: no block


@pytest.mark.skipif(importlib.util.find_spec("rasterio") is None, reason="needs rasterio")
def test_generate_shards_carry_the_model_and_optimize_reads_the_manifest(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "core_virginia_make", DATA / "core_virginia" / "make_data.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    maker.build(tmp_path / "core", n_cells=1)
    from mtquery.generate.pipeline import generate

    out = tmp_path / "gen"
    generate("spectral", [str(tmp_path / "core")], str(out), thumbnails=False)
    (shard,) = _parts(out)
    got = describe(_blk_of(shard))
    assert got["model"] == "spectral" and got["normalisation"] == "none"
    assert got["weights"] == "none (no weights)" and got["grid_km"] == 10.0
    assert got["dim"] == 60 and got["dtype"] == "float32"
    # a shard without a block (an older run): optimize names the model of the run's manifest
    t = pq.read_table(shard)
    meta = {k: v for k, v in t.schema.metadata.items() if k != KEY}
    pq.write_table(t.replace_schema_metadata(meta), shard)
    assert _blk_of(shard) is None
    opt = tmp_path / "opt"
    optimize([str(out)], opt, validate=False)
    assert describe(_blk_of(_parts(opt)[0]))["model"] == "spectral"


# ---------------------------------------------------------------- info reads it back


def test_info_reads_the_block_back(tmp_path, capsys):
    given = block(60, model="my-model", weights="w @ 1", normalisation="l2")
    src = _demo_with(tmp_path, "d/demo.parquet", given)
    assert mtquery.info(str(src))["embedding"] == given
    assert mtquery.info("demo")["embedding"] is None  # the bundled demo has none
    code, out, err = run(capsys, "info", src)
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if "embedding" in ln)
    assert "my-model" in line  # the table may cut the rest at the terminal's width
    code, out, _ = run(capsys, "info", src, "--format", "json")
    assert json.loads(out)["embedding"] == given
    # files that differ: the first file's block and a note
    shutil.copy(demo_path(), tmp_path / "d" / "other.parquet")
    info = mtquery.info(str(tmp_path / "d"))
    assert info["embedding"] == given and "1 of 2" in info["embedding_note"]


def test_info_refuses_a_malformed_block_in_one_line(tmp_path, capsys):
    bad = _demo_with(tmp_path, "bad.parquet", raw=b'{"emb:dimensions": -3}')
    code, out, err = run(capsys, "info", bad)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "bad.parquet" in err and KEY.decode() in err


def test_convert_records_the_column_roles_it_read(tmp_path):
    from foreign import write_shape

    src = write_shape("chips_id", tmp_path / "src")
    out = tmp_path / "std"
    mtquery.convert(str(src), out)
    blk = _blk_of(_parts(out)[0])
    roles = describe(blk)["roles"]
    assert roles["vector"] == "embedding" and roles["id"] == "chips_id"
    assert roles["time"] == "datetime"
    assert describe(blk)["dim"] == 1024 and describe(blk)["dtype"] == "float32"
    # the converted dataset is standard: its own reads need no roles, the block keeps them
    assert mtquery.info(str(out))["embedding"]["mtquery:roles"] == roles
