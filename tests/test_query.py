"""search and knn against brute force (shapely / pyarrow / numpy)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow.compute as pc
import pytest
import shapely
import synth

import mtquery
from mtquery.errors import DataError, UsageError
from mtquery.query.filters import Filters, parse_bbox, parse_time_range
from mtquery.query.resolve import QueryVector, query_from_id, query_from_point
from mtquery.query.search import search
from mtquery.vectors.exact import exact_knn


def _acquired(table):
    out = []
    for t in table.column("timestamp").to_pylist():
        if "-" in t:
            out.append(dt.datetime.fromisoformat(t.replace("Z", "")))
        else:
            out.append(dt.datetime.strptime(t, "%Y%m%dT%H%M%S"))
    return np.array(out, dtype="datetime64[us]")


def _brute_mask(table, bbox=None, start=None, end=None):
    mask = np.ones(table.num_rows, bool)
    if bbox:
        geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
        mask &= shapely.intersects(geoms, shapely.box(*bbox))
    acq = _acquired(table)
    if start:
        mask &= acq >= np.datetime64(start)
    if end:
        mask &= acq < np.datetime64(end) + np.timedelta64(1, "D")
    return mask


@pytest.mark.parametrize("bbox,start,end", [
    ((-2.0, 44.0, 1.0, 46.5), None, None),
    ((-2.0, 44.0, 1.0, 46.5), "2020-01-01", "2021-06-30"),
    (None, "2019-03-01", "2019-03-31"),
    ((5.0, 41.0, 5.3, 41.2), "2018-01-01", "2023-12-31"),
])
def test_search_equals_brute_force(big_dataset, big_table, bbox, start, end):
    s = mtquery.open_session(big_dataset)
    f = Filters(bbox=parse_bbox(",".join(map(str, bbox)) if bbox else None),
                time=parse_time_range(start, end))
    got = search(s, f, limit=None)
    want = set(pc.filter(big_table.column("unique_id"),
                         _brute_mask(big_table, bbox, start, end)).to_pylist())
    assert set(got.column("unique_id").to_pylist()) == want
    assert len(want) > 0


def test_search_cell_and_limit(big_dataset, big_table):
    s = mtquery.open_session(big_dataset)
    cell = big_table.column("grid_cell")[0].as_py()
    got = search(s, Filters(cell=cell), limit=None)
    want = pc.sum(pc.equal(big_table.column("grid_cell"), cell)).as_py()
    assert got.num_rows == want
    assert search(s, Filters(), limit=7).num_rows == 7


def _brute_knn(table, q, k, mask=None, exclude=None):
    x = synth.vectors(table).astype(np.float64)
    sims = (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    ids = np.array(table.column("unique_id").to_pylist())
    keep = np.ones(len(ids), bool) if mask is None else mask.copy()
    if exclude is not None:
        keep &= ids != exclude
    order = np.argsort(-np.where(keep, sims, -np.inf), kind="stable")[:k]
    return ids[order].tolist(), 1 - sims[order]


@pytest.mark.parametrize("use_cache", [True, False], ids=["vector-cache", "streamed"])
def test_knn_equals_numpy_brute_force(big_dataset, big_table, use_cache):
    s = mtquery.open_session(big_dataset)
    rng = np.random.default_rng(0)
    for _ in range(3):
        q = rng.normal(size=32).astype(np.float32)
        got = exact_knn(s, QueryVector(vector=q), k=20, use_cache=use_cache)
        ids, dist = _brute_knn(big_table, q, 20)
        assert got.column("unique_id").to_pylist() == ids
        assert np.allclose(got.column("distance").to_numpy(), dist, atol=1e-5)
        assert got.column("rank").to_pylist() == list(range(1, 21))


@pytest.mark.parametrize("use_cache", [True, False], ids=["vector-cache", "streamed"])
def test_knn_by_id_excludes_self_and_filters(big_dataset, big_table, use_cache):
    s = mtquery.open_session(big_dataset)
    uid = big_table.column("unique_id")[123].as_py()
    query = query_from_id(s, uid)
    got = exact_knn(s, query, k=10, use_cache=use_cache)
    ids, _ = _brute_knn(big_table, query.vector, 10, exclude=uid)
    assert got.column("unique_id").to_pylist() == ids
    with_self = exact_knn(s, query, k=3, include_self=True, use_cache=use_cache)
    assert with_self.column("unique_id")[0].as_py() == uid
    bbox = (-2.0, 44.0, 1.0, 46.5)
    f = Filters(bbox=parse_bbox("-2,44,1,46.5"), time=parse_time_range("2020-01-01", None))
    got = exact_knn(s, query, k=10, filters=f, use_cache=use_cache)
    mask = _brute_mask(big_table, bbox, "2020-01-01", None)
    ids, _ = _brute_knn(big_table, query.vector, 10, mask=mask, exclude=uid)
    assert got.column("unique_id").to_pylist() == ids


def test_knn_id_prefix(big_dataset, big_table):
    s = mtquery.open_session(big_dataset)
    uid = big_table.column("unique_id")[5].as_py()
    assert query_from_id(s, uid[:16]).unique_id == uid
    with pytest.raises(DataError, match="unknown unique_id"):
        query_from_id(s, "f" * 64)


@pytest.mark.parametrize("use_cache", [True, False])
def test_knn_empty_filter_gives_empty_result(small_dataset, use_cache):
    s = mtquery.open_session(small_dataset)
    q = QueryVector(vector=np.ones(8, np.float32))
    got = exact_knn(s, q, 5, Filters(bbox=parse_bbox("100,0,101,1")), use_cache=use_cache)
    assert got.num_rows == 0


def test_vector_cache_follows_file_changes(tmp_path):
    from mtquery.io.cache import stat_key as fingerprint

    path = tmp_path / "c.parquet"
    synth.write(synth.make_table(200, dim=8, seed=1), path)
    s = mtquery.open_session(str(path))
    q = QueryVector(vector=np.ones(8, np.float32))
    first = exact_knn(s, q, 3).column("unique_id").to_pylist()
    key = fingerprint([path])
    synth.write(synth.make_table(200, dim=8, seed=2), path)  # rewritten in place
    s = mtquery.open_session(str(path))
    assert fingerprint([path]) != key
    second = exact_knn(s, q, 3).column("unique_id").to_pylist()
    assert second == exact_knn(s, q, 3, use_cache=False).column("unique_id").to_pylist()
    assert first != second


def test_point_query_latest_then_nearest(tmp_path):
    t = synth.make_table(40, dim=4, seed=4)
    # make three fragments cover the same point at two dates
    geoms = shapely.from_wkb(t.column("geometry").to_numpy(zero_copy_only=False))
    p = shapely.centroid(geoms[0])
    cover = shapely.intersects(geoms, p)
    assert cover.sum() >= 1
    s = mtquery.open_session(synth.write(t, tmp_path / "p.parquet"))
    q = query_from_point(s, shapely.get_y(p), shapely.get_x(p))
    acq = _acquired(t)
    latest = acq[cover].max()
    assert q.unique_id in np.array(t.column("unique_id").to_pylist())[cover & (acq == latest)]


def test_point_not_covered_says_how_far(small_dataset):
    s = mtquery.open_session(small_dataset)
    with pytest.raises(DataError, match="nearest fragment centre is .* km away"):
        query_from_point(s, -60.0, 100.0)


def test_bad_k_and_dims(small_dataset):
    s = mtquery.open_session(small_dataset)
    with pytest.raises(UsageError):
        exact_knn(s, QueryVector(vector=np.ones(8, np.float32)), k=0)
    with pytest.raises(DataError):
        exact_knn(s, QueryVector(vector=np.ones(3, np.float32)), k=2)
