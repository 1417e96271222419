"""mtquery validate: a conformant dataset passes; each kind of breakage is reported."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
import shapely.affinity
import synth

from mtquery.datasets import demo_path
from mtquery.errors import DataError
from mtquery.schema import embedding_array
from mtquery.validate import validate


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
    assert _status(r)["finite_vectors"] == "FAIL"
    assert r.checks["finite_vectors"].failures == 1


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
