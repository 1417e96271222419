"""Scale: optimize (layout, validation, sort order, safety), the ANN index (build, load,
staleness, bad input), filtered kNN through the index vs the exact scan, shard merge."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtquery import open_session
from mtquery.errors import DataError, UsageError
from mtquery.io.datasets import resolve
from mtquery.io.explain import row_groups_kept
from mtquery.io.optimize import optimize
from mtquery.synth import SynthSpec, write
from mtquery.vectors.build import BuildParams, build_index
from mtquery.vectors.index import load_index
from mtquery.vectors.shards import ShardHits, merge_topk, open_shards, search_shards

pytest.importorskip("faiss")

SPEC = SynthSpec(rows=3000, dim=32, latent=16, types=8, subtypes=4, seed=7)
RG = 250
BBOX = "-100,30,-80,45"  # part of the North America region


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("raw") / "random.parquet", SPEC, row_group_size=RG)


@pytest.fixture(scope="module")
def opt(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("opt") / "optimized"
    optimize([str(raw)], out, row_group_size=RG, rows_per_file=2000)
    return out


@pytest.fixture(scope="module")
def index(opt) -> Path:
    return build_index(str(opt), params=BuildParams(seed=1))


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from mtquery.cli import main

    code = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ optimize


def test_optimize_keeps_rows_and_validates(raw, opt):
    from mtquery.io.validate import validate

    manifest = json.loads((opt / "_optimize.json").read_text())
    files = sorted(opt.glob("*.parquet"))
    assert [f.name for f in files] == ["part-00000.parquet", "part-00001.parquet"]
    assert manifest["rows"] == SPEC.rows == sum(pq.ParquetFile(f).metadata.num_rows
                                                for f in files)
    ids_in = set(pq.read_table(raw, columns=["unique_id"]).column(0).to_pylist())
    ids_out = pq.read_table(opt, columns=["unique_id"]).column(0).to_pylist()
    assert len(ids_out) == len(ids_in) and set(ids_out) == ids_in
    report = validate([str(opt)])
    assert report.ok, report.as_dict()
    pf = pq.ParquetFile(files[0])
    assert all(pf.metadata.row_group(g).num_rows <= RG for g in range(pf.metadata.num_row_groups))
    assert pf.schema_arrow.field("embedding").type == pa.list_(pa.float32(), SPEC.dim)
    geo = json.loads(pf.schema_arrow.metadata[b"geo"])
    assert geo["version"] == "1.1.0"
    assert geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"


def test_optimize_sort_order_and_vectors(raw, opt):
    session = open_session(str(opt))
    rows = session.con.execute(
        "SELECT ST_Hilbert(centre_lon, centre_lat, {'min_x': -180, 'min_y': -90, "
        "'max_x': 180, 'max_y': 90}::BOX_2D) AS h, acquired_at, unique_id, bbox, "
        "ST_XMin(geometry) AS x0 FROM embeddings ORDER BY source_file, source_row"
    ).fetchall()
    keys = [(r[0], r[1], r[2]) for r in rows]
    assert keys == sorted(keys)
    assert all(abs(r[3]["xmin"] - r[4]) < 1e-9 for r in rows)
    # same vector for the same id, bit for bit
    a = pq.read_table(raw, columns=["unique_id", "embedding"])
    b = pq.read_table(opt, columns=["unique_id", "embedding"])
    va = dict(zip(a.column(0).to_pylist(), a.column(1).to_pylist(), strict=True))
    for uid, vec in list(zip(b.column(0).to_pylist(), b.column(1).to_pylist(),
                             strict=True))[:50]:
        assert va[uid] == vec
    session.close()


def test_optimize_prunes_row_groups(raw, opt):
    bbox = [-100.0, 30.0, -80.0, 45.0]
    kept, total = row_groups_kept(sorted(opt.glob("*.parquet")), bbox)
    assert kept < total / 2
    assert row_groups_kept([raw], bbox) == (total, total)  # no covering column: no pruning
    from mtquery.query.filters import Filters, parse_bbox
    from mtquery.query.search import search

    f = Filters(bbox=parse_bbox(BBOX))
    a = search(open_session(str(raw)), f, None).column("unique_id").to_pylist()
    b = search(open_session(str(opt)), f, None).column("unique_id").to_pylist()
    assert sorted(a) == sorted(b) and a


def test_optimize_explain_cli(opt, capsys):
    code, out, _ = _cli(capsys, "optimize", str(opt), "--explain", "--bbox", BBOX)
    assert code == 0
    assert "row groups kept by bbox statistics" in out and "READ_PARQUET" in out


def test_optimize_float16(raw, tmp_path):
    out = tmp_path / "f16"
    optimize([str(raw)], out, row_group_size=1000, float16=True, validate=False)
    pf = pq.ParquetFile(next(out.glob("*.parquet")))
    assert pf.schema_arrow.field("embedding").type == pa.list_(pa.float16(), SPEC.dim)
    s = open_session(str(out))
    assert s.dim == SPEC.dim
    assert s.con.execute("SELECT count(*) FROM embeddings").fetchone()[0] == SPEC.rows


def test_optimize_never_overwrites(raw, opt, tmp_path, capsys):
    with pytest.raises(UsageError, match="not empty"):
        optimize([str(raw)], opt)
    with pytest.raises(UsageError, match="holds the input"):
        optimize([str(raw)], raw.parent)
    code, _, err = _cli(capsys, "optimize", str(raw), "-o", str(raw.parent))
    assert code == 2 and "never" in err and "Traceback" not in err


def test_optimize_failure_leaves_nothing(raw, tmp_path, monkeypatch):
    import mtquery.io.optimize as mo

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mo, "_convert", boom)
    out = tmp_path / "never"
    with pytest.raises(RuntimeError):
        optimize([str(raw)], out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]


# ------------------------------------------------------------------ index


def _exact(idx, q, k, allowed=None):
    return idx.exact(q, k, allowed)


def test_index_build_and_recall(opt, index):
    idx = load_index(index, resolve(str(opt)))
    m = idx.manifest
    assert m["rows"] == SPEC.rows and m["dim"] == SPEC.dim
    # tiny and 32-d: per-row id + RaBitQ factors (~20 B) weigh; at 768-d it is ~7 % (bench)
    assert m["resident_bytes"] <= 0.35 * m["float32_vector_bytes"]
    rng = np.random.default_rng(3)
    hits = 0
    for i in rng.choice(SPEC.rows, 40, replace=False):
        q = np.asarray(idx.vectors[i])
        ids, sc = idx.search(q, 10)
        ei, es = _exact(idx, q, 10)
        hits += len(set(ids.tolist()) & set(ei.tolist()))
        assert np.all(np.diff(sc) <= 1e-6)
    assert hits / 400 >= 0.95


def test_index_filtered_paths_satisfy_filter(index):
    idx = load_index(index)
    rng = np.random.default_rng(4)
    allowed = np.sort(rng.choice(SPEC.rows, 1200, replace=False))
    for i in rng.choice(SPEC.rows, 10, replace=False):
        q = np.asarray(idx.vectors[i])
        ei, _ = _exact(idx, q, 10, allowed)
        for limit in (0, 10**9):  # IVF + selector (oversampled) / exact pre-filter
            ids, _ = idx.search(q, 10, allowed=allowed, prefilter_max=limit)
            assert np.isin(ids, allowed).all()
            assert len(set(ids.tolist()) & set(ei.tolist())) >= 9
    ids, sc = idx.search(np.asarray(idx.vectors[0]), 10, allowed=np.empty(0, np.int64))
    assert len(ids) == 0


def test_knn_cli_index_matches_exact(opt, index, capsys, monkeypatch):
    monkeypatch.setenv("MTQUERY_CACHE", "off")
    row = pq.read_table(opt, columns=["centre_lat", "centre_lon"]).slice(100, 1).to_pylist()[0]
    base = ["knn", "-d", str(opt), "--lat", str(row["centre_lat"]), "--lon",
            str(row["centre_lon"]), "-f", "json"]
    for extra in ([], ["--bbox", BBOX], ["--bbox", BBOX, "--start", "2019-01-01",
                                         "--end", "2022-12-31"]):
        code, out, err = _cli(capsys, *base, *extra)
        assert code == 0, err
        code2, out2, err2 = _cli(capsys, *base, *extra, "--exact")
        assert code2 == 0, err2
        a, b = json.loads(out), json.loads(out2)
        assert [r["unique_id"] for r in a] == [r["unique_id"] for r in b]
        assert np.allclose([r["distance"] for r in a], [r["distance"] for r in b], atol=1e-5)
        if extra:
            lo0, la0, lo1, la1 = map(float, BBOX.split(","))
            assert all(lo0 - 0.1 <= r["centre_lon"] <= lo1 + 0.1 and
                       la0 - 0.1 <= r["centre_lat"] <= la1 + 0.1 for r in a)


def test_knn_cli_filter_selecting_nothing(opt, index, capsys):
    row = pq.read_table(opt, columns=["unique_id"]).slice(5, 1).to_pylist()[0]
    code, out, err = _cli(capsys, "knn", "-d", str(opt), "--id", row["unique_id"],
                          "--bbox", "10,-60,11,-59", "-f", "json")
    assert code == 0, err
    assert json.loads(out) == []


def test_index_bad_inputs(raw, opt, index, tmp_path, capsys):
    import shutil

    ds = resolve(str(opt))
    # another dataset
    with pytest.raises(DataError, match="another dataset"):
        load_index(index, resolve(str(raw)))
    code, _, err = _cli(capsys, "knn", "-d", str(raw), "--index", str(index), "--vector",
                        str(_vec(tmp_path, SPEC.dim)))
    assert code == 1 and "another dataset" in err and "Traceback" not in err
    # dimension mismatch
    idx = load_index(index, ds)
    with pytest.raises(DataError, match="32-d"):
        idx.search(np.ones(SPEC.dim + 1, np.float32), 10)
    code, _, err = _cli(capsys, "knn", "-d", str(opt), "--vector",
                        str(_vec(tmp_path, SPEC.dim + 3)))
    assert code == 1 and "values" in err
    # truncated index file
    bad = tmp_path / "bad_index"
    shutil.copytree(index, bad)
    with open(bad / "ivf.faiss", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(DataError, match="truncated"):
        load_index(bad, ds)
    (bad / "manifest.json").write_text('{"format": "mtquery-ann/1", "kin')
    with pytest.raises(DataError, match="manifest.json is damaged"):  # its checksum
        load_index(bad)
    # not an index
    with pytest.raises(DataError, match="no index"):
        load_index(tmp_path)


def test_index_stale_after_change(raw, tmp_path, capsys):
    import shutil

    data = tmp_path / "d"
    data.mkdir()
    shutil.copy(raw, data / "a.parquet")
    path = build_index(str(data), params=BuildParams(nprobe=4))
    assert path == data / "_mtindex"
    load_index(path, resolve(str(data)))
    st = (data / "a.parquet").stat()
    os.utime(data / "a.parquet", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(DataError, match="stale"):
        load_index(path, resolve(str(data)))
    code, _, err = _cli(capsys, "knn", "-d", str(data), "--vector",
                        str(_vec(tmp_path, SPEC.dim)))
    assert code == 1 and "stale" in err and "--exact" in err
    code, out, err = _cli(capsys, "knn", "-d", str(data), "--vector",
                          str(_vec(tmp_path, SPEC.dim)), "--exact", "-f", "json")
    assert code == 0, err and len(json.loads(out)) == 10
    code, _, err = _cli(capsys, "index", "info", str(data))
    assert code == 1 and "stale" in err


def _vec(tmp_path: Path, dim: int) -> Path:
    p = tmp_path / f"q{dim}.npy"
    np.save(p, np.random.default_rng(dim).normal(size=dim).astype(np.float32))
    return p


# ------------------------------------------------------------------ shards


def test_merge_topk_exact_and_ties():
    a = ShardHits(0, np.array([5, 1, 9]), np.array([0.9, 0.5, 0.1]))
    b = ShardHits(1, np.array([105, 101]), np.array([0.9, 0.7]))
    c = ShardHits(2, np.array([], np.int64), np.array([]))
    ids, sc = merge_topk([b, c, a], 4)
    assert ids.tolist() == [5, 105, 101, 1]
    assert np.allclose(sc, [0.9, 0.9, 0.7, 0.5])
    ids, _ = merge_topk([a], 10)
    assert ids.tolist() == [5, 1, 9]
    with pytest.raises(UsageError):
        merge_topk([a], 0)


def test_shard_search_equals_global_exact(raw, tmp_path):
    from mtquery.vectors.shards import build_per_file

    table = pq.read_table(raw)
    d = tmp_path / "shards"
    d.mkdir()
    cuts = [0, 700, 1900, 2500, SPEC.rows]
    for i in range(4):
        pq.write_table(table.slice(cuts[i], cuts[i + 1] - cuts[i]), d / f"s{i}.parquet")
    paths = build_per_file(str(d), nprobe=64)
    assert [p.name for p in paths] == [f"s{i}.parquet.mtindex" for i in range(4)]
    assert build_per_file(str(d), nprobe=64) == paths  # resumable: fresh shards kept
    shards = open_shards(paths)
    full = build_index(str(d), tmp_path / "full", BuildParams(nprobe=8))
    whole = load_index(full)
    rng = np.random.default_rng(5)
    allowed = np.sort(rng.choice(SPEC.rows, 600, replace=False))
    for i in rng.choice(SPEC.rows, 10, replace=False):
        q = np.asarray(whole.vectors[i])
        exact = lambda idx, qq, kk, al: idx.exact(qq, kk, al)  # noqa: E731
        ids, sc = search_shards(shards, q, 10, search=exact, threads=2)
        ei, es = whole.exact(q, 10)
        assert ids.tolist() == ei.tolist() and np.allclose(sc, es, atol=1e-6)
        ids, _ = search_shards(shards, q, 10, allowed=allowed, search=exact)
        ei, _ = whole.exact(q, 10, allowed)
        assert ids.tolist() == ei.tolist()
        ids, _ = search_shards(shards, q, 10)  # ANN per shard + merge
        assert len(set(ids.tolist()) & set(whole.exact(q, 10)[0].tolist())) >= 9
    # knn() serves a dataset with per-file indexes from its shards, rows and all
    from mtquery.query.knn import knn
    from mtquery.query.vector import QueryVector
    from mtquery.vectors.exact import exact_knn

    s = open_session(str(d))
    q = QueryVector(vector=np.asarray(whole.vectors[3]))
    got = knn(s, q, 10)
    want = exact_knn(s, q, 10, use_cache=False)
    assert len(set(got.column("unique_id").to_pylist())
               & set(want.column("unique_id").to_pylist())) >= 9
    assert got.column_names == want.column_names


def test_search_index_interface(index):
    from mtquery.vectors.index import search_index

    idx = load_index(index)
    q = np.asarray(idx.vectors[11])
    ids, dist = search_index(idx, q, 5)
    assert ids[0] == 11 and dist[0] < 1e-5 and np.all(np.diff(dist) >= -1e-9)
    mask = np.zeros(idx.rows, bool)
    mask[::3] = True
    ids, _ = search_index(idx, q, 5, mask)
    assert (ids % 3 == 0).all() and len(ids) == 5
    ids2, _ = search_index(idx, q, 5, np.flatnonzero(mask))
    assert ids.tolist() == ids2.tolist()
    with pytest.raises(DataError):
        search_index(idx, q, 5, np.zeros(3, bool))
