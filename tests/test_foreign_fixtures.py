"""The foreign-shape fixture scripts (tests/data/<shape>/data.py, loaded by tests/foreign.py)
write what they say: the intended columns and types, row counts, CRS metadata, places on
real Major TOM cells, clustered vectors, repeated acquisitions with a change, the bad cases;
and the same bytes again for the same seed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from foreign import BAD, DATA, GOOD, SHAPES, module, truth, write_shape
from pyproj import Transformer

from mtquery.standard.grid import latlon_to_cell

ROWS = 50

#: shape -> (file under what write returns, {column: type}, vector column, time column)
EXPECT = {
    "majortom_torchgeo": ("embeddings/part_00001-00050.parquet", {
        "embedding": pa.list_(pa.float64()), "centre_lon": pa.int64(),
        "centre_lat": pa.int64(), "timestamp": pa.timestamp("ns"), "geometry": pa.binary(),
    }, "embedding", "timestamp"),
    "points_id": ("", {
        "id": pa.string(), "embedding": pa.list_(pa.float32()), "geometry": pa.binary(),
    }, "embedding", None),
    "gpq_date": ("", {
        "id": pa.int64(), "date": pa.date32(), "embeddings": pa.list_(pa.float32()),
        "geometry": pa.binary(),
    }, "embeddings", "date"),
    "chips_id": ("", {
        "chips_id": pa.string(), "datetime": pa.timestamp("us", tz="UTC"),
        "embedding": pa.list_(pa.float32(), 1024), "geometry": pa.binary(),
        "bbox": module("chips_id").BBOX,
    }, "embedding", "datetime"),
    "latlon_f16": ("", {
        "fid": pa.int64(), "lat": pa.float64(), "lon": pa.float64(), "acquired": pa.string(),
        "vector": pa.list_(pa.float16(), 64),
    }, "vector", "acquired"),
    "projected": ("", {
        "id": pa.string(), "timestamp": pa.string(), "emb": pa.list_(pa.float32()),
        "geometry": pa.binary(),
    }, "emb", "timestamp"),
}
DIMS = {"majortom_torchgeo": 2048, "points_id": 384, "gpq_date": 768, "chips_id": 1024,
        "latlon_f16": 64, "projected": 128}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("foreign")
    return {name: write_shape(name, root / name, rows=ROWS, seed=0) for name in SHAPES}


def _file(name: str, written: dict):
    sub = EXPECT[name][0]
    return written[name] / sub if sub else written[name]


def _geo(table: pa.Table) -> dict | None:
    raw = (table.schema.metadata or {}).get(b"geo")
    return json.loads(raw) if raw else None


def test_every_shape_is_registered():
    assert set(SHAPES) == {*GOOD, BAD} == {*EXPECT, BAD}
    assert all((DATA / name / "data.py").is_file() for name in SHAPES)


@pytest.mark.parametrize("name", GOOD)
def test_columns_types_rows(name, written):
    path = _file(name, written)
    assert path.is_file()
    table = pq.read_table(path)
    _, cols, vec, _ = EXPECT[name]
    assert {f.name: f.type for f in table.schema} == cols
    assert table.num_rows == ROWS
    dims = set(pa.compute.list_value_length(table.column(vec)).to_pylist())
    assert dims == {DIMS[name]}
    assert table.column(vec).null_count == 0


def test_file_layouts(written):
    assert written["majortom_torchgeo"].is_dir()
    assert written["gpq_date"].suffix == ".gpq"
    assert pq.ParquetFile(written["points_id"]).metadata.row_group(0).column(
        1).compression == "ZSTD"
    names = set(pq.read_schema(_file("majortom_torchgeo", written)).names)
    assert not names & {"unique_id", "product_id", "grid_cell"}


def test_crs_metadata(written):
    geo = {n: _geo(pq.read_table(_file(n, written))) for n in GOOD}
    col = {n: g["columns"]["geometry"] for n, g in geo.items() if g}
    assert geo["latlon_f16"] is None
    assert "crs" in col["majortom_torchgeo"] and col["majortom_torchgeo"]["crs"] is None
    assert "crs" not in col["points_id"]  # absent: OGC:CRS84 by the spec
    assert col["gpq_date"]["crs"]["id"] == {"authority": "EPSG", "code": 4326}
    assert col["chips_id"]["crs"]["id"] == {"authority": "OGC", "code": "CRS84"}
    assert col["chips_id"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    assert col["projected"]["crs"]["id"] == {"authority": "EPSG", "code": 32633}
    assert col["points_id"]["geometry_types"] == ["Point"]


def test_majortom_without_geo_metadata(tmp_path):
    out = module("majortom_torchgeo").write(tmp_path, rows=5, geo=False)
    table = pq.read_table(out / EXPECT["majortom_torchgeo"][0])
    assert _geo(table) is None and table.num_rows == 5
    assert table.schema.field("geometry").metadata is None


def _centres(name: str, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) of each row's place as the file gives it."""
    if name == "latlon_f16":
        return table.column("lon").to_numpy(), table.column("lat").to_numpy()
    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    c = shapely.get_coordinates(shapely.centroid(geoms))
    if name == "projected":
        back = Transformer.from_crs("EPSG:32633", "OGC:CRS84", always_xy=True)
        return back.transform(c[:, 0], c[:, 1])
    return c[:, 0], c[:, 1]


@pytest.mark.parametrize("name", GOOD)
def test_places_are_the_real_cells(name, written):
    table = pq.read_table(_file(name, written))
    r = truth(name, ROWS, 0)
    lon, lat = _centres(name, table)
    assert (latlon_to_cell(lat, lon) == r.cell).all()
    if name == "majortom_torchgeo":
        assert (table.column("centre_lon").to_numpy() == np.round(lon)).all()


@pytest.mark.parametrize("name", GOOD)
def test_vectors_are_clustered(name, written):
    table = pq.read_table(_file(name, written))
    r = truth(name, ROWS, 0)
    col = table.column(EXPECT[name][2]).combine_chunks()
    x = col.flatten().to_numpy(zero_copy_only=False).astype(np.float64).reshape(ROWS, -1)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    nn = sim.argmax(1)
    assert (r.cluster[nn] == r.cluster).mean() >= 0.9
    assert len(np.unique(r.cluster)) >= 3


@pytest.mark.parametrize("name", [n for n in GOOD if EXPECT[n][3]])
def test_repeated_acquisitions_with_a_change(name, written):
    table = pq.read_table(_file(name, written))
    times = np.asarray(table.column(EXPECT[name][3]).cast(pa.string()).to_pylist())
    r = truth(name, ROWS, 0)
    per_place = {p: set(times[r.place == p]) for p in np.unique(r.place)}
    assert sum(len(t) >= 2 for t in per_place.values()) >= 2
    assert r.changed.any()
    changed_places = set(r.place[r.changed])
    assert all(len(per_place[p]) >= 2 for p in changed_places)


def test_bad_inputs(written):
    out, names = written[BAD], module(BAD).NAMES
    assert sorted(p.name for p in out.iterdir()) == sorted(names.values())
    assert (out / names["zero_bytes"]).stat().st_size == 0
    two = pq.read_table(out / names["two_vectors"])
    assert {f.name for f in two.schema if pa.types.is_list(f.type)} == {"features", "vector"}
    no = pq.read_table(out / names["no_vector"])
    assert no.num_rows == ROWS and not any(pa.types.is_list(f.type) for f in no.schema)
    ragged = pq.read_table(out / names["ragged"]).column("embedding")
    assert len(set(pa.compute.list_value_length(ragged).to_pylist())) == 2
    empty = pq.read_table(out / names["empty"])
    assert empty.num_rows == 0 and pa.types.is_list(empty.schema.field("embedding").type)
    ng = pq.read_table(out / names["not_geometry"])
    assert ng.schema.field("geometry").type == pa.string() and _geo(ng) is None
    assert set(ng.column("geometry").to_pylist()) == {"hello"}
    assert ng.num_rows == ROWS


def _bytes(path) -> dict[str, bytes]:
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(f.relative_to(path) if path.is_dir() else f.name): f.read_bytes()
            for f in files if f.is_file()}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_same_seed_same_bytes(name, written, tmp_path):
    again = write_shape(name, tmp_path / "again", rows=ROWS, seed=0)
    assert _bytes(again) == _bytes(written[name])
    other = write_shape(name, tmp_path / "other", rows=ROWS, seed=1)
    assert _bytes(other) != _bytes(written[name])


@pytest.mark.parametrize("name", ["points_id", BAD])
def test_command_line(name, tmp_path):
    done = subprocess.run([sys.executable, str(DATA / name / "data.py"), str(tmp_path / "o"),
                           "--rows", "7", "--seed", "3"], capture_output=True, text=True,
                          check=True)
    path = write_shape(name, tmp_path / "lib", rows=7, seed=3)
    assert done.stdout.strip() == str(tmp_path / "o" / path.relative_to(tmp_path / "lib"))
    assert _bytes(path) == _bytes(tmp_path / "o" / path.relative_to(tmp_path / "lib"))
