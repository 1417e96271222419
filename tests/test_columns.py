"""Column roles (mtquery.io.columns, io.roles, io.derive): the detection rules on their own,
--columns remembered, and files of other shapes read over HTTP (a real server on 127.0.0.1)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from foreign import write_shape
from rangeserver import RangeServer

import mtquery
from mtquery.errors import DataError, UsageError
from mtquery.io.columns import STANDARD, detect, id_root, parse_override
from mtquery.io.datasets import resolve
from mtquery.standard.grid import latlon_to_cell

STD_TYPES = {"unique_id": "VARCHAR", "embedding": "FLOAT[]", "timestamp": "VARCHAR",
             "product_id": "VARCHAR", "grid_cell": "VARCHAR", "geometry": "GEOMETRY",
             "centre_lat": "FLOAT", "centre_lon": "FLOAT"}


def test_a_standard_schema_is_read_as_it_is():
    assert detect(STD_TYPES) is STANDARD


@pytest.mark.parametrize("types,vector", [
    ({"emb": "FLOAT[]", "geometry": "BLOB"}, "emb"),
    ({"x": "DOUBLE[2048]", "bbox": "DOUBLE[4]", "geometry": "BLOB"}, "x"),
    ({"q": "TINYINT[]", "pixel_bbox": "BIGINT[]", "geometry": "BLOB"}, "q"),
    ({"embedding": "FLOAT[]", "features": "FLOAT[]", "geometry": "BLOB"}, "embedding"),
    ({"e": "FLOAT[1][64]", "geometry": "BLOB"}, "e"),  # Array2D(1, dim)
])
def test_the_vector_is_the_embedding_or_the_only_candidate(types, vector):
    assert detect(types).vector == vector


def test_two_candidates_name_both_and_the_option():
    with pytest.raises(DataError, match=r"features, vector.*--columns vector="):
        detect({"features": "FLOAT[]", "vector": "DOUBLE[]", "geometry": "BLOB"})


def test_roles_of_other_shapes():
    r = detect({"chips_id": "VARCHAR", "datetime": "TIMESTAMP WITH TIME ZONE",
                "embedding": "FLOAT[1024]", "geometry": "GEOMETRY('OGC:CRS84')"})
    assert (r.id, r.time, r.geometry, r.crs) == ("chips_id", "datetime", "geometry", None)
    assert "grid_cell" in r.derived and "unique_id" not in r.derived
    r = detect({"fid": "BIGINT", "lat": "DOUBLE", "lon": "DOUBLE", "vector": "FLOAT[]"})
    assert (r.lat, r.lon, r.geometry) == ("lat", "lon", None) and "geometry" in r.derived
    # torchgeo's rounded integer centres beside a footprint are not centres
    r = detect({"embedding": "DOUBLE[]", "centre_lat": "BIGINT", "centre_lon": "BIGINT",
                "timestamp": "TIMESTAMP_NS", "geometry": "GEOMETRY"})
    assert r.lat is None and r.id is None and "unique_id" in r.derived


def test_a_projected_crs_is_transformed_and_wgs84_is_not():
    r = detect({"emb": "FLOAT[]", "geometry": "GEOMETRY('EPSG:32633')"})
    assert r.crs == "EPSG:32633"
    r = detect({"emb": "FLOAT[]", "geometry": "BLOB"},
               {"primary_column": "geometry", "columns": {"geometry": {"crs": {
                   "id": {"authority": "EPSG", "code": 4326}, "type": "GeographicCRS",
                   "name": "WGS 84"}}}})
    assert r.crs is None and not r.notices
    r = detect({"emb": "FLOAT[]", "geometry": "BLOB"})  # plain Parquet WKB: no CRS
    assert r.crs is None and r.notices


@pytest.mark.parametrize("text,needle", [("vector", "role=column"), ("colour=x", "roles"),
                                         ("id=a,id=b", "twice")])
def test_bad_override_spellings(text, needle):
    with pytest.raises(UsageError, match=needle):
        parse_override(text)


def test_override_names_missing_columns_and_non_vectors():
    types = {"emb": "FLOAT[]", "name": "VARCHAR", "geometry": "BLOB"}
    with pytest.raises(DataError, match="no column 'nope'.*emb, name, geometry"):
        detect(types, override={"vector": "nope"})
    with pytest.raises(DataError, match="not a list of numbers"):
        detect(types, override={"vector": "name"})
    assert detect(types, override={"id": "name", "time": ""}).id == "name"


def test_id_root_is_the_folder_of_the_files():
    assert id_root(["/a/b/x.parquet"]) == "/a/b/"
    assert id_root(["/a/b/2020/x.parquet", "/a/b/2021/x.parquet"]) == "/a/b/"


def test_columns_are_remembered_for_the_same_files(tmp_path):
    src = write_shape("latlon_f16", tmp_path / "d")
    t = pq.read_table(src)
    renamed = t.rename_columns(["key", "y", "x", "when", "v"])
    path = tmp_path / "renamed.parquet"
    pq.write_table(renamed, path)
    with pytest.raises(DataError, match="no place"):
        mtquery.info(str(path))
    ds = resolve(str(path), columns="id=key,lat=y,lon=x,time=when")
    first = mtquery.info(ds)
    assert first["columns"]["id"] == "key"
    again = mtquery.info(str(path))  # remembered: no --columns this time
    assert again["columns"] == first["columns"] and again["rows"] == t.num_rows
    cells = mtquery.search(str(path)).column("grid_cell").to_pylist()
    want = latlon_to_cell(t.column("lat").to_numpy(), t.column("lon").to_numpy())
    assert sorted(cells) == sorted(want.tolist())


def test_int8_vectors(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(-127, 127, size=(20, 16)).astype(np.int8)
    t = pa.table({"id": [f"r{i}" for i in range(20)],
                  "emb": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 16),
                  "lat": rng.uniform(40, 41, 20), "lon": rng.uniform(10, 11, 20)})
    path = tmp_path / "q.parquet"
    pq.write_table(t, path)
    got = mtquery.knn(str(path), id="r0", k=3)
    xf = x.astype(np.float32)
    xf /= np.linalg.norm(xf, axis=1, keepdims=True)
    sims = xf[1:] @ xf[0]
    assert got.column("unique_id").to_pylist() == [f"r{i + 1}" for i in np.argsort(-sims)[:3]]


def test_files_of_other_shapes_over_http(tmp_path):
    root = tmp_path / "site"
    local = write_shape("gpq_date", root / "g")
    with RangeServer(root) as srv:
        url = srv.url(f"g/{local.name}")
        info = mtquery.info(url)
        assert info["columns"]["vector"] == "embeddings" and info["rows"] == 50
        uid = mtquery.search(str(local), limit=1).column("unique_id")[0].as_py()
        want = mtquery.knn(str(local), id=uid, k=5).column("unique_id").to_pylist()
        assert mtquery.knn(url, id=uid, k=5).column("unique_id").to_pylist() == want
        manifest = mtquery.convert(url, tmp_path / "std")
    assert manifest["rows"] == 50 and manifest["tool"] == "mtquery convert"
    assert mtquery.knn(str(tmp_path / "std"), id=uid, k=5).column(
        "unique_id").to_pylist() == want
    meta = json.loads(pq.ParquetFile(next((tmp_path / "std").glob("*.parquet"))).schema_arrow
                      .metadata[b"geo"])
    assert meta["primary_column"] == "geometry"


@pytest.mark.parametrize("kind", ["polygon", "point"])
def test_geoarrow_geometries(tmp_path, kind):
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng(3)
    lon, lat = rng.uniform(10, 11, 30), rng.uniform(45, 46, 30)
    geoms = (shapely.points(lon, lat) if kind == "point" else
             [shapely.box(x - 0.02, y - 0.02, x + 0.02, y + 0.02) for x, y in zip(lon, lat)])
    x = rng.normal(size=(30, 16)).astype("float32")
    df = gpd.GeoDataFrame({"id": [f"g{i}" for i in range(30)], "embedding": list(x)},
                          geometry=geoms, crs="EPSG:4326")
    path = tmp_path / "ga.parquet"
    df.to_parquet(path, geometry_encoding="geoarrow")
    got = mtquery.search(str(path)).sort_by("unique_id")
    order = np.argsort([f"g{i}" for i in range(30)])
    assert np.allclose(got.column("centre_lat").to_numpy(), lat[order])
    assert got.column("grid_cell").to_pylist() == latlon_to_cell(lat[order], lon[order]).tolist()
    assert mtquery.knn(str(path), lat=lat[5], lon=lon[5], k=1).num_rows == 1


def test_footprints_wider_than_a_fragment_are_found_at_their_edge(tmp_path):
    import shapely

    # 60 km squares: a box near an edge lies more than 10 km from the centre
    rng = np.random.default_rng(5)
    lon, lat = np.array([10.0, 12.0]), np.array([45.0, 47.0])
    geoms = [shapely.box(x - 0.4, y - 0.27, x + 0.4, y + 0.27) for x, y in zip(lon, lat)]
    t = pa.table({"id": ["a", "b"], "emb": pa.array(list(rng.normal(size=(2, 8))),
                                                    pa.list_(pa.float32())),
                  "geometry": pa.array(shapely.to_wkb(geoms))})
    path = tmp_path / "wide.parquet"
    pq.write_table(t, path)
    edge = (10.35, 45.2, 10.38, 45.25)  # inside "a", ~30 km from its centre
    assert mtquery.search(str(path), bbox=edge).column("unique_id").to_pylist() == ["a"]
    got = mtquery.knn(str(path), lat=45.22, lon=10.36, k=1, include_self=True)
    assert got.column("unique_id").to_pylist() == ["a"]  # the footprint holding the point


def test_serve_and_eval_on_a_file_of_another_shape(tmp_path, capsys):
    from clirun import run
    from webclient import get

    from mtquery.web.server import start

    path = str(write_shape("chips_id", tmp_path / "c"))
    rows = mtquery.search(path, limit=None, geometry=False)
    uid = rows.column("unique_id")[0].as_py()
    want = mtquery.knn(path, id=uid, k=3).column("unique_id").to_pylist()
    server = start(path)
    try:
        status, _, body = get(server, "/api/knn", {"id": uid, "k": 3})
        assert status == 200, body
        got = [row["unique_id"] for row in json.loads(body)]
    finally:
        server.stop()
    assert got == want
    labels = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"unique_id": rows.column("unique_id"),
                             "label": rows.column("grid_cell")}), labels)
    code, out, err = run(capsys, "eval", "retrieval", "-d", path, "-l", labels, "--join",
                         "unique_id", "--k", "1,5", "--queries", "10")
    assert code == 0, err
    assert json.loads(out)["task"]["n_samples"] == rows.num_rows
