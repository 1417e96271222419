"""``score``: the similarity of every fragment of a region to a query equals a brute-force
cosine over the Parquet rows (max abs difference 1e-5), whole dataset and bbox / time
filtered, from the vector cache, streamed without one, from an index's float16 store, and
from a released-layout dataset over HTTP within the read budget; its GeoParquet, GeoTIFF and
PNG outputs open with geopandas / rasterio in EPSG:4326."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
import synth
from clirun import run

import mtquery
from mtquery.find.kernel import store_dot
from mtquery.find.score import scored_count
from mtquery.io import remote
from mtquery.io.cost import ReadRefused
from mtquery.standard.schema import embedding_array

BOX = (-6.0, 42.0, 4.0, 48.0)
START, END = "2019-06-01", "2021-12-31"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    table = synth.make_table(n=6000, dim=24, seed=3)
    path = synth.write(table, tmp_path_factory.mktemp("score") / "s.parquet",
                       row_group_size=1000)
    return path, table


def acquired(ts: str) -> dt.datetime:
    if ts.endswith("Z"):
        return dt.datetime.fromisoformat(ts[:-1])
    return dt.datetime.strptime(ts, "%Y%m%dT%H%M%S")


def region_mask(table: pa.Table, bbox=None, start=None, end=None) -> np.ndarray:
    keep = np.ones(table.num_rows, bool)
    if bbox is not None:
        geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
        keep &= shapely.intersects(geoms, shapely.box(*bbox))
    if start is not None:
        lo = dt.datetime.fromisoformat(start)
        hi = dt.datetime.fromisoformat(end) + dt.timedelta(days=1)
        when = [acquired(t) for t in table.column("timestamp").to_pylist()]
        keep &= np.array([lo <= w < hi for w in when])
    return keep


def brute(table: pa.Table, q: np.ndarray) -> dict[str, float]:
    x = synth.vectors(table).astype(np.float64)
    s = (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    return dict(zip(table.column("unique_id").to_pylist(), s))


def check_equal(got: pa.Table, want: dict[str, float], mask_ids: list[str]) -> None:
    ids = got.column("unique_id").to_pylist()
    assert sorted(ids) == sorted(mask_ids)
    diff = np.abs(got.column("score").to_numpy() - np.array([want[i] for i in ids]))
    assert diff.max() <= 1e-5, diff.max()
    s = got.column("score").to_numpy()
    assert np.all(s[:-1] >= s[1:])  # highest first


@pytest.mark.parametrize("backend", ["cache", "stream"])
def test_score_equals_brute_force(data, backend, monkeypatch):
    path, table = data
    if backend == "stream":
        monkeypatch.setenv("MTQUERY_CACHE", "off")
    vec = synth.vectors(table)
    q = vec[17] + 0.5 * vec[400]
    want = brute(table, q)
    ids = table.column("unique_id").to_numpy(zero_copy_only=False)
    events = []
    got = mtquery.score(path, vector=q, progress=events.append)
    check_equal(got, want, list(ids))
    assert scored_count(got) == table.num_rows
    assert set(got.column_names) >= {"unique_id", "geometry", "score", "grid_cell",
                                     "timestamp", "product_id", "centre_lat", "centre_lon"}
    mine = [e for e in events if e.task == "scoring fragments"]
    assert sum(e.advance for e in mine) == table.num_rows
    assert mine[-1].total == table.num_rows and mine[-1].unit == "fragments"
    keep = region_mask(table, BOX, START, END)
    assert 0 < keep.sum() < table.num_rows
    got = mtquery.score(path, vector=q, bbox=BOX, start=START, end=END)
    check_equal(got, want, list(ids[keep]))
    top = mtquery.score(path, vector=q, bbox=BOX, start=START, end=END, limit=5)
    assert top.column("unique_id").to_pylist() == got.column("unique_id").to_pylist()[:5]
    assert scored_count(top) == int(keep.sum())


def test_score_by_examples_matches_knn_query(data):
    path, table = data
    uids = table.column("unique_id").to_pylist()
    got = mtquery.score(path, ids=[uids[3], uids[9]], not_ids=[uids[50]], bbox=BOX)
    knn = mtquery.knn(path, ids=[uids[3], uids[9]], not_ids=[uids[50]], bbox=BOX, k=5,
                      exact=True)
    # the same query vector: knn's neighbours are score's best rows (examples aside)
    best = [u for u in got.column("unique_id").to_pylist() if u not in uids[:10] + [uids[50]]]
    assert best[:5] == knn.column("unique_id").to_pylist()


def test_index_float16_store_scores(data, tmp_path):
    from mtquery.vectors.build import BuildParams, build_index
    from mtquery.vectors.store import load_store

    pytest.importorskip("faiss")
    path, table = data
    copy = tmp_path / "copy.parquet"
    shutil.copy(path, copy)
    where = build_index(str(copy), params=BuildParams(sidecar="float16", nlist=16))
    store = load_store(where / "store")
    assert store.dtype == "float16"
    q = synth.vectors(table)[5]
    q = q / np.linalg.norm(q)
    exact16 = np.asarray(store.matrix(), np.float32) @ q  # NumPy's own half conversion
    got = store_dot(store, q)
    assert np.abs(got - exact16).max() <= 1e-6
    ids = np.array([1, 2, 3, 700, 701, 5000, 5999])
    assert np.abs(store_dot(store, q, ids) - exact16[ids]).max() <= 1e-6
    from mtquery.find import kernel

    kernel_min = kernel.MIN_SHARE
    try:  # several threads, each its share of the file: the same scores
        kernel.MIN_SHARE = 500
        assert np.array_equal(store_dot(store, q, threads=3), got)
        assert np.abs(store_dot(store, q, ids, threads=2) - got[ids]).max() <= 1e-6
    finally:
        kernel.MIN_SHARE = kernel_min
    scored = mtquery.score(str(copy), vector=q)
    want = brute(table, q)
    diff = [abs(s - want[u]) for u, s in zip(scored.column("unique_id").to_pylist(),
                                              scored.column("score").to_pylist())]
    assert max(diff) <= 2e-3  # float16 rounding of the stored vectors


def test_float16_kernel_exact_for_subnormal_and_invalid_rows(tmp_path):
    from mtquery.vectors.store import fingerprint, write_store

    n, dim = 300, 16
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x[:, 3] *= 1e-6  # float16 subnormals once normalised
    x[:, 4] = 0.0
    x[7] = 0.0  # an invalid (zero) vector
    t = synth.make_table(n=n, dim=dim, seed=1)
    t = t.set_column(t.schema.get_field_index("embedding"), "embedding", embedding_array(x))
    f = tmp_path / "sub.parquet"
    pq.write_table(t, f)
    (tmp_path / "st").mkdir()
    store = write_store(tmp_path / "st", fingerprint([f]), "float16")
    q = rng.normal(size=dim)
    got = store_dot(store, q)
    ref = np.asarray(store.matrix(), np.float64) @ q
    assert np.isnan(got[7]) and np.isnan(ref[7])
    ok = np.arange(n) != 7
    assert np.abs(got[ok] - ref[ok]).max() <= 1e-5


# ---------------------------------------------------------------- outputs


def test_outputs_open_with_their_crs(data, tmp_path):
    import geopandas
    import rasterio

    path, table = data
    q = synth.vectors(table)[0]
    out, tif = tmp_path / "all.parquet", tmp_path / "heat.tif"
    got = mtquery.score(path, vector=q, bbox=BOX, output=out, heatmap=tif)
    g = geopandas.read_parquet(out)
    assert g.crs.to_epsg() == 4326 and len(g) == got.num_rows
    assert set(g["unique_id"]) == set(got.column("unique_id").to_pylist())
    with rasterio.open(tif) as r:
        assert r.crs.to_epsg() == 4326
        assert r.nodata == -9999.0 and r.count == 1
        band = r.read(1)
        left, bottom, right, top = r.bounds
        geoms = shapely.from_wkb(got.column("geometry").to_numpy(zero_copy_only=False))
        x0, y0, x1, y1 = shapely.total_bounds(geoms)
        assert left <= x0 and bottom <= y0 and right >= x1 and top >= y1
        lat = got.column("centre_lat").to_numpy()
        lon = got.column("centre_lon").to_numpy()
        rows, cols = rasterio.transform.rowcol(r.transform, lon, lat)
        vals = band[np.asarray(rows), np.asarray(cols)]
        assert (vals != -9999.0).all()  # every fragment's pixel holds a value
        assert (vals >= got.column("score").to_numpy() - 1e-6).all()  # the max there
        assert (band == -9999.0).any()  # and nodata where there is none
    png = tif.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_heatmap_raster_for_a_web_layer(data):
    path, table = data
    got = mtquery.score(path, vector=synth.vectors(table)[0], bbox=BOX)
    heat = mtquery.heatmap_raster(got)
    h, w = heat.values.shape
    assert heat.label == "score" and heat.fragments == got.num_rows
    assert np.isfinite(heat.values).any() and np.isnan(heat.values).any()
    x0, y0, x1, y1 = heat.bounds
    assert x0 <= got.column("centre_lon").to_numpy().min() and y1 >= got.column(
        "centre_lat").to_numpy().max()
    rgba = heat.rgba()
    assert rgba.shape == (h, w, 4) and (rgba[..., 3][np.isnan(heat.values)] == 0).all()
    assert heat.png_bytes()[:4] == b"\x89PNG"
    coarse = mtquery.heatmap_raster(got, resolution=200.0)
    assert coarse.values.size < heat.values.size


# ---------------------------------------------------------------- over HTTP


def _sent(srv, fn):
    remote.clear_footer_cache()
    srv.reset()
    out = fn()
    return out, srv.bytes_sent


def test_region_score_over_http_equals_brute_force(release, capsys):
    srv, urls, paths = release
    local = pa.concat_tables([pq.read_table(p) for p in paths])
    t = pq.read_table(paths[2], columns=["centre_lat", "centre_lon"]).slice(3000, 1)
    lat, lon = float(t.column(0)[0].as_py()), float(t.column(1)[0].as_py())
    box = (lon - 0.3, lat - 0.3, lon + 0.3, lat + 0.3)
    q = np.asarray(local.column("embedding")[100].as_py(), np.float32)
    got, n = _sent(srv, lambda: mtquery.score(",".join(urls), vector=q, bbox=box))
    total = sum(p.stat().st_size for p in paths)
    assert n <= 0.35 * total, n / total
    keep = region_mask(local, box)
    vec = np.asarray(local.column("embedding").combine_chunks().flatten(), np.float64
                     ).reshape(local.num_rows, -1)
    want = dict(zip(local.column("unique_id").to_pylist(),
                    (vec @ q) / (np.linalg.norm(vec, axis=1) * np.linalg.norm(q))))
    ids = local.column("unique_id").to_numpy(zero_copy_only=False)
    check_equal(got, want, list(ids[keep]))
    # the CLI: same rows, the query by point; the whole dataset is refused before reading
    code, out, err = run(capsys, "score", "-d", ",".join(urls), "--lat", lat, "--lon", lon,
                         "--bbox", ",".join(map(str, box)), "-f", "json", "--top", 3, "-q")
    assert code == 0, err
    assert json.loads(out)["scored"] == int(keep.sum())
    with pytest.raises(ReadRefused):
        mtquery.score(",".join(urls), vector=q)
    (code, out, err), n = _sent(srv, lambda: run(capsys, "score", "-d", ",".join(urls),
                                                 "--lat", lat, "--lon", lon))
    assert code == 1 and "would read" in err and len(err.strip().splitlines()) == 1
    assert n <= 0.10 * total


def test_score_cli_writes_and_prints(data, tmp_path, capsys):
    path, table = data
    uid = table.column("unique_id")[0].as_py()
    out, tif = tmp_path / "o.parquet", tmp_path / "h.tif"
    code, stdout, err = run(capsys, "score", "-d", path, "--id", uid, "--bbox",
                            ",".join(map(str, BOX)), "-o", out, "--heatmap", tif, "--top", 4)
    assert code == 0, err
    assert "fragments scored" in stdout and f"wrote {out}" in stdout
    assert f"wrote {tif.with_suffix('.png')}" in stdout
    assert pq.read_metadata(out).num_rows == int(region_mask(table, BOX).sum())
    code, stdout, err = run(capsys, "score", "-d", path, "--id", uid, "-f", "json", "--top",
                            2, "-q")
    doc = json.loads(stdout)
    assert code == 0 and doc["scored"] == table.num_rows and len(doc["top"]) == 2
    assert doc["top"][0]["unique_id"] == uid and doc["top"][0]["score"] == pytest.approx(1.0)


def test_damaged_store_blocks_are_found(tmp_path, capsys):
    """A flipped byte in the vector cache: one notice, the cache rebuilt, the right scores;
    in an index's store: one line naming the damaged file."""
    from mtquery.io.cache import cache_path
    from mtquery.io.datasets import resolve

    table = synth.make_table(n=3000, dim=16, seed=9)
    path = synth.write(table, tmp_path / "d.parquet")
    q = synth.vectors(table)[1]
    mtquery.score(path, vector=q)  # builds the cache
    vec = cache_path(resolve(path)) / "vectors.f32"
    with open(vec, "r+b") as fh:
        fh.seek(40_000)
        b = fh.read(1)
        fh.seek(40_000)
        fh.write(bytes([b[0] ^ 0x40]))
    got = mtquery.score(path, vector=q)
    check_equal(got, brute(table, q), table.column("unique_id").to_pylist())
    from mtquery.vectors.build import BuildParams, build_index

    pytest.importorskip("faiss")
    where = build_index(path, params=BuildParams(nlist=16))
    with open(where / "store" / "vectors.f32", "r+b") as fh:
        fh.seek(100_000)
        b = fh.read(1)
        fh.seek(100_000)
        fh.write(bytes([b[0] ^ 0x40]))
    capsys.readouterr()  # the notice about the cache, above
    code, out, err = run(capsys, "score", "-d", path, "--vector", _npy(tmp_path, q), "-q")
    assert code == 1 and "vectors.f32" in err and "checksum mismatch" in err, err
    assert len(err.strip().splitlines()) == 1


def _npy(tmp_path, q):
    p = tmp_path / "q.npy"
    np.save(p, q)
    return p
