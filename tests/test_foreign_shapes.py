"""Issue 22 acceptance: embedding files in the shapes other projects write (tests/foreign.py,
50 seeded rows each) run through info, search, knn (exact, cached, streamed, index), the
derived grid, validate, extract, convert and the CLI, and the answers equal brute force over
the same rows read with pyarrow and numpy, and the fixtures' own truth (places, cells)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from clirun import run
from foreign import GOOD, truth, write_shape

import mtquery
from mtquery.api import query_of
from mtquery.errors import DataError
from mtquery.io.datasets import resolve
from mtquery.standard.schema import REQUIRED

ROWS = 50
K = 5
#: shape -> (file under what write_shape returns, vector column, id column or None, time
#: column or None): what the fixture script writes, stated here independently of detection
SHAPE = {
    "majortom_torchgeo": ("embeddings/part_00001-00050.parquet", "embedding", None,
                          "timestamp"),
    "points_id": ("", "embedding", "id", None),
    "gpq_date": ("", "embeddings", "id", "date"),
    "chips_id": ("", "embedding", "chips_id", "datetime"),
    "latlon_f16": ("", "vector", "fid", "acquired"),
    "projected": ("", "emb", "id", "timestamp"),
}
DIMS = {"majortom_torchgeo": 2048, "points_id": 384, "gpq_date": 768, "chips_id": 1024,
        "latlon_f16": 64, "projected": 128}
#: query rows for knn (rows of places seen more than once in every shape)
QUERY_ROWS = (0, 17)
OVERRIDE = "vector=vector,id=fid,time=acquired,lat=lat,lon=lon"


@dataclass(frozen=True)
class Source:
    """A written shape: what to give mtquery, the Parquet file, and its rows read with
    pyarrow (the ids mtquery must give them, unit vectors in float64)."""

    name: str
    path: Path
    file: Path
    ids: list[str]
    raw: np.ndarray  # (n, dim) the vectors as stored (float64)
    unit: np.ndarray  # (n, dim) unit vectors

    def row(self, uid: str) -> int:
        return self.ids.index(uid)


def read_source(name: str, path: Path) -> Source:
    sub, vec_col, id_col, _ = SHAPE[name]
    file = path / sub if sub else path
    table = pq.read_table(file)
    n = table.num_rows
    col = table.column(vec_col).combine_chunks()
    raw = np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float64).reshape(n, -1)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    if id_col:
        ids = [str(v) for v in table.column(id_col).to_pylist()]
    else:  # derived: the file relative to the folder holding the dataset's files, and row
        ids = [f"{file.name}:{i}" for i in range(n)]
    return Source(name, path, file, ids, raw, unit)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Source]:
    root = tmp_path_factory.mktemp("foreign-shapes")
    return {name: read_source(name, write_shape(name, root / name, rows=ROWS, seed=0))
            for name in GOOD}


def brute(src: Source, q: int, k: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Top-k ids and distances (1 - cosine) by numpy, the query row left out; and every
    row's distance."""
    dist = 1.0 - src.unit @ src.unit[q]
    d = dist.copy()
    d[q] = np.inf
    order = np.argsort(d, kind="stable")[:k]
    return [src.ids[i] for i in order], dist[order], dist


def assert_brute(result: pa.Table, src: Source, q: int, k: int = K) -> None:
    """``result`` is the exact top-k of row ``q`` (ids equal where no two distances tie)."""
    want_ids, want_d, dist = brute(src, q, k)
    got_ids = result.column("unique_id").to_pylist()
    got_d = np.asarray(result.column("distance").to_pylist(), np.float64)
    assert len(got_ids) == k == len(set(got_ids))
    np.testing.assert_allclose(got_d, want_d, atol=2e-4)
    for uid, d in zip(got_ids, got_d):  # each row is the row it says, at its distance
        assert abs(dist[src.row(uid)] - d) < 2e-4, uid
    others = np.sort(np.delete(dist, q))
    if np.diff(others[:k + 1]).min() > 1e-3:  # no near ties: the order is the order
        assert got_ids == want_ids


def same_rows(a: pa.Table, b: pa.Table) -> None:
    assert a.column("unique_id").to_pylist() == b.column("unique_id").to_pylist()
    np.testing.assert_allclose(a.column("distance").to_numpy(), b.column("distance").to_numpy(),
                               atol=1e-5)


def footprints(src: Source) -> np.ndarray:
    """The rows' places in lon/lat, read from the file (projected ones transformed)."""
    table = pq.read_table(src.file)
    if "geometry" not in table.column_names:  # lat/lon columns
        return shapely.points(table.column("lon").to_numpy(), table.column("lat").to_numpy())
    geoms = shapely.from_wkb(table.column("geometry").to_pylist())
    meta = json.loads(table.schema.metadata.get(b"geo", b"{}") or b"{}")
    crs = ((meta.get("columns") or {}).get("geometry") or {}).get("crs")
    if crs and crs.get("type") == "ProjectedCRS":
        from pyproj import CRS, Transformer

        tr = Transformer.from_crs(CRS.from_json_dict(crs), "OGC:CRS84", always_xy=True)
        geoms = shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(*xy.T)))
    return geoms


def place_box(name: str, row: int, margin: float = 0.2) -> tuple[float, float, float, float]:
    """A bbox well inside the grid cell of ``row``'s place (``margin`` of its size off each
    side): it meets every footprint of that place and none of another."""
    t = truth(name, ROWS)
    cell = mtquery.cell_bounds([t.cell[row]])[0]
    w, h = cell[2] - cell[0], cell[3] - cell[1]
    return (cell[0] + margin * w, cell[1] + margin * h, cell[2] - margin * w,
            cell[3] - margin * h)


def data_files(out: Path) -> list[Path]:
    """The Parquet files a writer put under ``out`` (its own ``_`` / ``.`` folders aside)."""
    if out.is_file():
        return [out]
    return sorted(p for p in out.rglob("*.parquet")
                  if not any(part.startswith(("_", ".")) for part in p.relative_to(out).parts))


# --- info -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD)
def test_info_rows_dim_bbox_and_mapping(sources, name):
    src = sources[name]
    t = truth(name, ROWS)
    info = mtquery.info(src.path)
    assert info["rows"] == ROWS
    assert info["dim"] == DIMS[name]
    # the extent: every truth centre inside it, and no wider than the footprints (projected
    # ones are 10 km UTM squares around the cell centres: a little off the lon/lat cells)
    box = info["bbox"]
    tol = 0.05 if name == "projected" else 1e-6
    tb = t.bounds
    assert box[0] <= t.lon.min() and box[1] <= t.lat.min()
    assert box[2] >= t.lon.max() and box[3] >= t.lat.max()
    assert box[0] >= tb[:, 0].min() - tol and box[1] >= tb[:, 1].min() - tol
    assert box[2] <= tb[:, 2].max() + tol and box[3] <= tb[:, 3].max() + tol
    # the roles it read and what it derived
    _, vec_col, id_col, time_col = SHAPE[name]
    cols = info["columns"]
    assert cols["vector"] == vec_col
    assert (cols["id"] == id_col) if id_col else "derived" in cols["id"]
    assert (cols["time"] == time_col) if time_col else cols["time"] == "none"
    derived = set(info["derived"])
    assert {"grid_cell", "grid_row_u", "grid_col_r", "product_id"} <= derived
    assert ("unique_id" in derived) == (id_col is None)
    if name == "projected":
        assert "32633" in cols["crs"]
    if name == "latlon_f16":
        assert "geometry" in derived and "centre_lat" not in derived
    else:
        assert {"centre_lat", "centre_lon"} <= derived
    if time_col:  # the time range of the truth
        assert info["start"][:10] == str(t.time.min())[:10]
        assert info["end"][:10] == str(t.time.max())[:10]


# --- search ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD)
def test_search_bbox_returns_the_place(sources, name):
    src = sources[name]
    t = truth(name, ROWS)
    row = 0
    box = place_box(name, row)
    found = mtquery.search(src.path, bbox=box, limit=None)
    want = {src.ids[i] for i in np.flatnonzero(t.place == t.place[row])}
    assert set(found.column("unique_id").to_pylist()) == want
    # the same as the footprints read from the file meeting the box
    meets = shapely.intersects(footprints(src), shapely.box(*box))
    assert want == {src.ids[i] for i in np.flatnonzero(meets)}
    assert set(found.column("grid_cell").to_pylist()) == {t.cell[row]}


# --- knn ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD)
def test_knn_by_id_equals_brute_force(sources, name):
    src = sources[name]
    answers = {}
    for q in QUERY_ROWS:
        answers[q] = mtquery.knn(src.path, id=src.ids[q], k=K, geometry=False)
        assert_brute(answers[q], src, q)
        assert query_of(answers[q])["unique_id"] == src.ids[q]
    q = QUERY_ROWS[0]
    again = mtquery.knn(src.path, id=src.ids[q], k=K, geometry=False)  # the cached store
    same_rows(again, answers[q])
    exact = mtquery.knn(src.path, id=src.ids[q], k=K, exact=True, geometry=False)
    same_rows(exact, answers[q])


@pytest.mark.parametrize("name", GOOD)
def test_knn_streamed_without_cache_equals_store(sources, name, monkeypatch):
    """The views' derivation (DuckDB over the files) and the store's (pyarrow batches) give
    the same ids and distances."""
    src = sources[name]
    monkeypatch.setenv("MTQUERY_CACHE", "off")
    q = QUERY_ROWS[0]
    assert_brute(mtquery.knn(src.path, id=src.ids[q], k=K, geometry=False), src, q)


@pytest.mark.parametrize("name", GOOD)
def test_knn_by_lat_lon_finds_the_place(sources, name):
    src = sources[name]
    t = truth(name, ROWS)
    for row in (0, 25):
        res = mtquery.knn(src.path, lat=float(t.lat[row]), lon=float(t.lon[row]), k=3,
                          include_self=True, geometry=False)
        asked = query_of(res)
        assert asked["grid_cell"] == t.cell[row]
        assert src.row(asked["unique_id"]) in np.flatnonzero(t.place == t.place[row])
        assert res.column("grid_cell")[0].as_py() == t.cell[row]
        assert res.column("distance")[0].as_py() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("name", GOOD)
def test_knn_with_index_equals_brute_force(sources, name, tmp_path):
    from mtquery.vectors.build import build_index

    src = sources[name]
    index = build_index(src.path, tmp_path / "idx")
    for q in QUERY_ROWS:
        res = mtquery.knn(src.path, id=src.ids[q], k=K, index=index, geometry=False)
        assert_brute(res, src, q)


# --- the derived grid -----------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD)
def test_derived_cells_and_centres(sources, name):
    src = sources[name]
    t = truth(name, ROWS)
    con = mtquery.connect(src.path)
    rows = con.execute("SELECT unique_id, grid_cell, grid_row_u, grid_col_r, centre_lat, "
                       "centre_lon, product_id, ST_AsWKB(geometry) AS g FROM embeddings"
                       ).to_arrow_table().to_pylist()
    con.close()
    assert len(rows) == ROWS
    by_id = {r["unique_id"]: r for r in rows}
    assert set(by_id) == set(src.ids)
    for i, uid in enumerate(src.ids):
        r = by_id[uid]
        assert r["grid_cell"] == t.cell[i], uid
        row_u, col_r = mtquery.latlon_to_rowcol(t.lat[i:i + 1], t.lon[i:i + 1])
        assert (r["grid_row_u"], r["grid_col_r"]) == (int(row_u[0]), int(col_r[0]))
        assert r["product_id"] is None
        # centres are lon/lat (the projected shape's too), inside their footprint
        assert abs(r["centre_lat"] - t.lat[i]) < 0.01 and abs(r["centre_lon"] - t.lon[i]) < 0.01
        geom = shapely.from_wkb(r["g"])
        centre = shapely.Point(r["centre_lon"], r["centre_lat"])
        assert geom.distance(centre) < 1e-9 or geom.contains(centre), uid
        assert mtquery.latlon_to_cell(r["centre_lat"], r["centre_lon"]) == t.cell[i]


# --- validate -------------------------------------------------------------------------------


def _statuses(report) -> dict[str, str]:
    return {c["check"]: c["status"] for c in report.as_dict()["checks"]}


@pytest.mark.parametrize("name", GOOD)
def test_validate_derived_columns_are_info(sources, name):
    from mtquery.io.validate import validate

    report = validate(str(sources[name].path))
    statuses = _statuses(report)
    assert report.ok, report.as_dict()
    assert "FAIL" not in statuses.values() and "INVALID" not in statuses.values()
    assert "INFO" in statuses.values(), statuses  # the derived columns, said
    assert report.rows == ROWS


@pytest.mark.parametrize("name", GOOD)
def test_validate_four_rows(name, tmp_path, capsys):
    from mtquery.io.validate import validate

    path = write_shape(name, tmp_path / name, rows=4)
    report = validate(str(path))
    assert report.ok, report.as_dict()
    assert report.rows == 4
    code, out, err = run(capsys, "validate", path)
    assert code == 0, err
    assert "INVALID" not in out and "VALID" in out


# --- extract --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD)
def test_extract_equals_search(sources, name, tmp_path):
    src = sources[name]
    box = place_box(name, 0)
    out = tmp_path / "ex"
    mtquery.extract(src.path, output=out, bbox=box)
    want = mtquery.search(src.path, bbox=box, limit=None, geometry=False)
    files = data_files(out)
    assert files
    table = pa.concat_tables([pq.read_table(f) for f in files])
    assert set(REQUIRED) <= set(table.column_names)
    assert sorted(table.column("unique_id").to_pylist()) == sorted(
        want.column("unique_id").to_pylist())
    # the same vectors, ids, cells and centres
    vec = np.asarray(table.column("embedding").combine_chunks().flatten().to_numpy(
        zero_copy_only=False), np.float64).reshape(table.num_rows, -1)
    for uid, v in zip(table.column("unique_id").to_pylist(), vec):
        np.testing.assert_allclose(v, src.raw[src.row(uid)], rtol=1e-6, atol=1e-7)
    got = mtquery.search(out, bbox=box, limit=None, geometry=False)
    key = lambda tb: sorted(zip(*(tb.column(c).to_pylist() for c in (  # noqa: E731
        "unique_id", "grid_cell", "timestamp"))))
    assert key(got) == key(want)
    assert not mtquery.info(out).get("derived")


# --- convert --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD)
def test_convert_writes_standard_geoparquet(sources, name, tmp_path):
    src = sources[name]
    out = tmp_path / "converted"
    mtquery.convert(src.path, out)
    files = data_files(out)
    assert files
    for f in files:
        schema = pq.read_schema(f)
        assert set(REQUIRED) <= set(schema.names), f
        assert b"geo" in (schema.metadata or {})
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == ROWS
    info = mtquery.info(out)
    assert info["rows"] == ROWS and info["dim"] == DIMS[name]
    assert not info.get("derived")
    for q in QUERY_ROWS:
        same_rows(mtquery.knn(out, id=src.ids[q], k=K, geometry=False),
                  mtquery.knn(src.path, id=src.ids[q], k=K, geometry=False))
    # the derived columns materialised as derived
    cells = lambda ds: dict(zip(*(mtquery.search(ds, limit=None, geometry=False).column(c)  # noqa: E731
                                  .to_pylist() for c in ("unique_id", "grid_cell"))))
    assert cells(out) == cells(src.path)


# --- CLI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD)
def test_cli_info_prints_the_mapping(sources, name, capsys):
    src = sources[name]
    code, out, err = run(capsys, "info", "-d", src.path)
    assert code == 0, err
    _, vec_col, _, _ = SHAPE[name]
    assert "columns" in out and vec_col in out and "derived" in out and "grid_cell" in out
    code, out, err = run(capsys, "info", "-d", src.path, "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["columns"]["vector"] == vec_col and "grid_cell" in data["derived"]


# --- --columns ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def latlon_copy(tmp_path_factory) -> Source:
    """latlon_f16 in a folder of its own: a --columns given here is remembered for it."""
    root = tmp_path_factory.mktemp("latlon-override")
    return read_source("latlon_f16", write_shape("latlon_f16", root / "latlon_f16"))


def test_columns_override_gives_the_same_answers(latlon_copy):
    src = latlon_copy
    plain = mtquery.knn(src.path, id=src.ids[0], k=K, geometry=False)
    ds = resolve(src.path, columns=OVERRIDE)
    named = mtquery.knn(ds, id=src.ids[0], k=K, geometry=False)
    same_rows(named, plain)
    assert_brute(named, src, 0)
    assert mtquery.info(ds)["columns"] == mtquery.info(src.path)["columns"]
    box = place_box("latlon_f16", 0)
    key = lambda tb: tb.column("unique_id").to_pylist()  # noqa: E731
    assert key(mtquery.search(ds, bbox=box, geometry=False)) == key(
        mtquery.search(src.path, bbox=box, geometry=False))


def test_cli_columns_override_gives_the_same_answers(latlon_copy, capsys):
    src = latlon_copy
    args = ("knn", "-d", src.path, "--id", src.ids[0], "-k", K, "--format", "json")
    code, plain, err = run(capsys, *args)
    assert code == 0, err
    code, named, err = run(capsys, *args, "--columns", OVERRIDE)
    assert code == 0, err
    strip = lambda out: [(r["unique_id"], round(r["distance"], 5))  # noqa: E731
                         for r in json.loads(out)]
    assert strip(named) == strip(plain)
    code, out, err = run(capsys, "info", "-d", src.path, "--columns", OVERRIDE)
    assert code == 0, err
    assert "fid" in out and "acquired" in out


def test_columns_naming_a_missing_column(latlon_copy, tmp_path, capsys):
    src = latlon_copy
    with pytest.raises(DataError, match="nope"):
        mtquery.knn(resolve(src.path, columns="vector=vector,id=nope"), id="1", k=K)
    out = tmp_path / "answer.json"
    code, stdout, err = run(capsys, "knn", "-d", src.path, "--columns", "vector=nope",
                            "--id", src.ids[0], "--format", "json", "-o", out)
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and "nope" in err, err
    assert not out.exists() and stdout == ""
    code, stdout, err = run(capsys, "extract", src.path, "-o", tmp_path / "ex",
                            "--columns", "time=nope")
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and "nope" in err, err
    assert not (tmp_path / "ex").exists()
    # the wrong --columns was not remembered: the file reads as before
    assert_brute(mtquery.knn(src.path, id=src.ids[0], k=K, geometry=False), src, 0)
