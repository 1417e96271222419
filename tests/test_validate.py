"""mtquery validate: a conformant dataset passes; each kind of breakage is reported."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
import shapely.affinity
import synth

from mtquery.errors import DataError
from mtquery.io.datasets import demo_path
from mtquery.io.validate import validate
from mtquery.standard.schema import embedding_array


def _status(report):
    return {c["check"]: c["status"] for c in report.as_dict()["checks"]}


def test_demo_and_synthetic_are_valid(small_dataset):
    for path in (str(demo_path()), small_dataset):
        r = validate([path])
        assert r.ok, r.as_dict()


def _write(tmp_path, table, name="x.parquet"):
    path = tmp_path / name
    pq.write_table(table, path)
    return str(path)


def _replace(table, name, array):
    return table.set_column(table.schema.get_field_index(name), name, array)


def test_missing_geo_metadata(tmp_path):
    t = synth.make_table(20, dim=4).replace_schema_metadata({})
    r = validate([_write(tmp_path, t)])
    assert _status(r)["geo_metadata"] == "FAIL" and not r.ok


def test_nan_vector(tmp_path):
    t = synth.make_table(20, dim=4)
    m = synth.vectors(t).copy()
    m[3, 1] = np.nan
    r = validate([_write(tmp_path, _replace(t, "embedding", embedding_array(m)))])
    assert _status(r)["vectors"] == "FAIL"
    assert r.checks["vectors"].failures == 1


def test_geometry_outside_cell(tmp_path):
    t = synth.make_table(20, dim=4)
    g = shapely.from_wkb(t.column("geometry").to_numpy(zero_copy_only=False))
    g[0] = shapely.affinity.translate(g[0], 1.0, 0.0)  # 1 degree east: far outside its cell
    t = _replace(t, "geometry", pa.array(shapely.to_wkb(g), pa.binary()))
    r = validate([_write(tmp_path, t)])
    assert _status(r)["geometry_in_cell"] == "FAIL"
    assert r.checks["geometry_in_cell"].failures == 1


def test_invalid_geometry(tmp_path):
    t = synth.make_table(20, dim=4)
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
    wkb = t.column("geometry").to_pylist()
    wkb[2] = shapely.to_wkb(bowtie)
    r = validate([_write(tmp_path, _replace(t, "geometry", pa.array(wkb, pa.binary())))])
    assert _status(r)["geometry_valid"] == "FAIL"


def test_cell_rowcol_mismatch(tmp_path):
    t = synth.make_table(20, dim=4)
    rows = t.column("grid_row_u").to_numpy().copy()
    rows[0] += 1
    r = validate([_write(tmp_path, _replace(t, "grid_row_u", pa.array(rows, pa.int16())))])
    assert _status(r)["cell_rowcol"] == "FAIL"


def test_duplicate_ids_across_files(tmp_path):
    t = synth.make_table(20, dim=4)
    a = _write(tmp_path, t, "a.parquet")
    b = _write(tmp_path, t.slice(0, 3), "b.parquet")
    r = validate([a, b])
    assert _status(r)["unique_id"] == "FAIL" and r.checks["unique_id"].failures == 3


def test_mixed_dimensions(tmp_path):
    a = _write(tmp_path, synth.make_table(10, dim=4), "a.parquet")
    b = _write(tmp_path, synth.make_table(10, dim=6, seed=3), "b.parquet")
    r = validate([a, b])
    assert _status(r)["dimension"] == "FAIL"
    assert "mixed embedding dimensions" in r.checks["dimension"].example


def test_wrong_columns(tmp_path):
    t = synth.make_table(10, dim=4).drop_columns(["utm_crs"])
    t = _replace(t, "centre_lat", pa.array(["x"] * 10))
    r = validate([_write(tmp_path, t)])
    assert _status(r)["columns"] == "FAIL" and r.checks["columns"].failures == 2


def test_array2d_layout_is_accepted(tmp_path):
    t = synth.make_table(10, dim=4, embedding_layout="array2d")
    assert validate([_write(tmp_path, t)]).ok


def test_not_parquet(tmp_path):
    p = tmp_path / "a.parquet"
    p.write_bytes(b"nope")
    with pytest.raises(DataError):
        validate([str(p)])


def test_bundled_demo_uses_own_pixel_order():
    assert validate([str(demo_path())]).pixel_bbox_order == "own"


# ---------------------------------------------------------------- reliability


def _corrupt_zstd_page(path, row_group=1, column="embedding"):
    """Break the zstd frame of one data page (the footer stays readable)."""
    md = pq.ParquetFile(path).metadata
    names = [md.schema.column(i).path.split(".")[0] for i in range(md.num_columns)]
    cc = md.row_group(row_group).column(names.index(column))
    start = cc.dictionary_page_offset or cc.data_page_offset
    data = bytearray(path.read_bytes())
    at = data.find(b"\x28\xb5\x2f\xfd", cc.data_page_offset, start + cc.total_compressed_size)
    assert at > 0, "no zstd frame found"
    for k in range(at + 4, at + 12):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_page_is_a_failing_check_naming_the_file(tmp_path):
    path = tmp_path / "broken.parquet"
    pq.write_table(synth.make_table(600, dim=16, seed=2), path, compression="zstd",
                   row_group_size=200)
    _corrupt_zstd_page(path)
    good = _write(tmp_path, synth.make_table(50, dim=16, seed=9), "good.parquet")
    r = validate([str(path), good])  # 0.1: OSError "ZSTD decompression failed" raw
    assert not r.ok and _status(r)["readable"] == "FAIL"
    ex = r.checks["readable"].example
    assert str(path) in ex and "row group 1" in ex and "\n" not in ex
    assert r.checks["readable"].failures == 200
    assert r.rows == 650
    assert _status(r)["dimension"] == "PASS"  # the other row groups and files were checked


def test_unopenable_file_is_one_line(tmp_path):
    path = tmp_path / "broken.parquet"
    pq.write_table(synth.make_table(50, dim=4), path)
    data = bytearray(path.read_bytes())
    data[-40:-8] = b"\xff" * 32  # the footer
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as err:
        validate([str(path)])
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("value", [0.0, np.inf, -np.inf, np.nan])
def test_vectors_without_direction_are_flagged(tmp_path, value):
    t = synth.make_table(20, dim=4)
    m = synth.vectors(t).copy()
    if value == 0.0:
        m[5] = 0.0  # 0.1 passed an all-zero vector
        m[7] = 0.0
    else:
        m[5, 1] = value
        m[7, 3] = value
    r = validate([_write(tmp_path, _replace(t, "embedding", embedding_array(m)))])
    # zero vectors (no data, as the reference embeds them) warn; NaN / inf is corrupt: fail
    check, status = ("zero_vectors", "WARN") if value == 0.0 else ("vectors", "FAIL")
    assert _status(r)[check] == status and r.ok == (value == 0.0)
    assert r.checks[check].failures == 2
    assert t.column("unique_id")[5].as_py() in r.checks[check].example


def _with_timestamps(values, n=20):
    t = synth.make_table(n, dim=4)
    ts = t.column("timestamp").to_pylist()
    ts[: len(values)] = values
    return _replace(t, "timestamp", pa.array(ts, pa.string()))


@pytest.mark.parametrize("bad", ["unknown", "", "2020-02-30", "20200230T105031", None,
                                 "infinity"])
def test_placeholder_timestamps_warn(tmp_path, bad):
    t = _with_timestamps([bad, bad])
    r = validate([_write(tmp_path, t)])
    assert _status(r)["timestamp"] == "WARN"  # 0.1: no check at all
    assert r.ok  # a warning does not make the file invalid
    c = r.checks["timestamp"]
    assert c.failures == 2 and t.column("unique_id")[0].as_py() in c.example
    assert "20200717T105031" in c.example and "ISO 8601" in c.example
    d = {x["check"]: x for x in r.as_dict()["checks"]}["timestamp"]
    assert d["status"] == "WARN" and d["failures"] == 2


def test_real_timestamps_pass(tmp_path):
    good = ["20200717T105031", "2020-07-17", "2020-07-17T10:50:31Z",
            "2020-07-17T10:50:31.250+02:00", "2020-07-17 10:50:31"]
    r = validate([_write(tmp_path, _with_timestamps(good))])
    assert _status(r)["timestamp"] == "PASS", r.checks["timestamp"].example
    assert r.checks["timestamp"].checked == 20



@pytest.mark.parametrize("layout", ["list", "array2d"])
def test_ragged_column_counts_the_rarer_lengths(tmp_path, layout):
    t = synth.make_table(40, dim=8, seed=4)
    rng = np.random.default_rng(1)
    vec = [list(rng.random(6 if i in (5, 30) else 8).astype(np.float32)) for i in range(40)]
    typ = pa.list_(pa.float32())
    arr = pa.array(vec, typ) if layout == "list" else pa.array([[v] for v in vec],
                                                               pa.list_(typ))
    t = _replace(t, "embedding", arr)
    path = tmp_path / "ragged.parquet"
    pq.write_table(t, path, row_group_size=16)
    r = validate([str(path)])  # 0.1: all 40 rows of the batch failed, lengths unnamed
    c = r.checks["dimension"]
    assert c.status == "FAIL" and c.failures == 2
    assert c.example.startswith("mixed embedding dimensions: 8 (38 rows")
    assert f"6 (2 rows, e.g. unique_id {t.column('unique_id')[5]}" in c.example
    assert r.as_dict()["dims"] == [6, 8]


def test_null_vector_has_no_direction(tmp_path):
    t = synth.make_table(20, dim=4, embedding_layout="list")
    emb = t.column("embedding").to_pylist()
    emb[4] = None
    t = _replace(t, "embedding", pa.array(emb, pa.list_(pa.float32())))
    r = validate([_write(tmp_path, t)])
    assert _status(r)["vectors"] == "FAIL" and r.checks["vectors"].failures == 1
    assert _status(r)["dimension"] == "PASS"
    assert t.column("unique_id")[4].as_py() in r.checks["vectors"].example
