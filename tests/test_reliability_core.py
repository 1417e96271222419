"""Reliability of the query side: each test reproduces a failure of mtquery 0.1 (kept as a
regression test): outputs that clobbered, unbounded k through the index, staging read as
data, time zones, internal errors where a one-line message belongs, invalid vectors, glob
characters in file names, and `mtquery sql --read-only`."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import synth
from clirun import run

import mtquery


def run_cli(args, capsys):
    return run(capsys, *args)


# ---------------------------------------------------------------- 1. outputs never clobber


def test_output_through_symlink_keeps_the_link(capsys, small_dataset, tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    code, _, err = run_cli(["search", "-d", small_dataset, "--limit", "3", "-f", "json",
                            "-o", link], capsys)
    assert code == 0, err
    assert link.is_symlink()  # 0.1 replaced the link by a regular file
    assert len(json.loads(real.read_text())) == 3


def test_output_to_fifo_writes_through(small_dataset, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    proc = subprocess.run([sys.executable, "-m", "mtquery", "search", "-d", small_dataset,
                           "--limit", "2", "-f", "json", "-o", str(fifo)],
                          capture_output=True, text=True, timeout=120)
    out, _ = reader.communicate(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(out)) == 2  # 0.1: the reader got 0 bytes, the FIFO became a file
    assert fifo.is_fifo()


def test_output_to_dev_full_is_a_clear_error_and_keeps_the_device(capsys, small_dataset):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    code, _, err = run_cli(["search", "-d", small_dataset, "--limit", "3", "-f", "json",
                            "-o", "/dev/full"], capsys)
    assert code == 1 and "no space left" in err and err.count("\n") == 1
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")


def test_output_to_dev_null(capsys, small_dataset):
    code, _, err = run_cli(["search", "-d", small_dataset, "-f", "csv", "-o", "/dev/null"],
                           capsys)
    assert code == 0, err
    assert not os.path.isfile("/dev/null")


# ---------------------------------------------------------------- 2. bounded k


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    pytest.importorskip("faiss")
    from mtquery.vectors.build import BuildParams, build_index

    path = tmp_path_factory.mktemp("idx") / "d.parquet"
    synth.write(synth.make_table(6000, dim=16, seed=5), path)
    build_index(str(path), params=BuildParams(nprobe=4))
    return path


def test_large_k_through_the_index_is_exact(indexed):
    from mtquery.query.knn import knn
    from mtquery.query.vector import QueryVector
    from mtquery.vectors.exact import exact_knn

    s = mtquery.open_session(str(indexed))
    q = QueryVector(vector=np.random.default_rng(0).normal(size=16).astype(np.float32))
    got = knn(s, q, 3000)  # 0.1: 1,147 rows, 38 % right, exit 0
    want = exact_knn(s, q, 3000, use_cache=False)
    assert got.column("unique_id").to_pylist() == want.column("unique_id").to_pylist()


def test_huge_k_is_bounded_by_the_rows(indexed, capsys):
    vec = indexed.parent / "q.npy"
    np.save(vec, np.ones(16, np.float32))
    code, out, err = run_cli(["knn", "-d", indexed, "--vector", vec, "--k", "1000000000",
                              "-f", "csv", "-o", indexed.parent / "all.csv"], capsys)
    assert code == 0, err  # 0.1: grew to 24 GB and was killed
    assert len((indexed.parent / "all.csv").read_text().splitlines()) == 6000 + 1


# ---------------------------------------------------------------- 3. staging is never data


def test_staging_inside_a_dataset_is_not_read(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    synth.write(synth.make_table(300, dim=8, seed=1), data / "a.parquet")
    stage = data / ".mtquery-staging" / "opt-999999-abcdef01"
    stage.mkdir(parents=True)
    synth.write(synth.make_table(300, dim=8, seed=1), stage / "part-0.parquet")
    legacy = data / ".out.tmp-999999"
    legacy.mkdir()
    (legacy / "half.parquet").write_bytes(b"PAR1 half written")
    info = mtquery.info(str(data))
    assert info["rows"] == 300  # 0.1: 600, and a half-written file made it unreadable


def test_next_run_sweeps_dead_staging(tmp_path):
    from mtquery.io.staging import STAGING, new_staging

    dead = tmp_path / STAGING / "x-999999-0123abcd"
    dead.mkdir(parents=True)
    (tmp_path / ".old.tmp-999999").mkdir()
    live = new_staging(tmp_path, "y")
    assert not dead.exists() and not (tmp_path / ".old.tmp-999999").exists()
    assert live.is_dir()


# ---------------------------------------------------------------- 4. UTC everywhere


def _tz_dataset(path):
    t = synth.make_table(20, dim=8, seed=3)
    ts = pa.array([dt.datetime(2019, 6, 1, 0, 30, tzinfo=dt.timezone.utc)] * 20,
                  pa.timestamp("us", tz="UTC"))
    t = t.set_column(t.schema.get_field_index("timestamp"), "timestamp", ts)
    pq.write_table(t, path)
    return path


@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Kolkata", "UTC"])
def test_timestamptz_in_any_local_zone(tmp_path, tz):
    path = _tz_dataset(tmp_path / "tz.parquet")
    env = {**os.environ, "TZ": tz}
    proc = subprocess.run([sys.executable, "-m", "mtquery", "search", "-d", str(path),
                           "--start", "2019-06-01", "--end", "2019-06-01", "-f", "json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 20  # 0.1 under New York: 0 rows
    assert rows[0]["timestamp"].startswith("2019-06-01T00:30:00")


def test_offsets_are_applied(small_dataset):
    from mtquery.query.filters import parse_time

    assert parse_time("2019-06-01T02:00:00+05:00")[0] == dt.datetime(2019, 5, 31, 21, 0)
    s = mtquery.open_session(small_dataset)
    got = s.con.execute("SELECT timezone('UTC', TRY_CAST('2019-06-01T02:00:00+05:00' AS "
                        "TIMESTAMPTZ))").fetchone()[0]
    assert got == dt.datetime(2019, 5, 31, 21, 0)


# ---------------------------------------------------------------- 6. one-line errors


@pytest.mark.parametrize("args,code,words", [
    (["search", "--end", "9999-12-31", "--limit", "1"], 0, None),
    (["search", "--limit", "99999999999999999999"], 2, "limit"),
])
def test_edge_values(capsys, args, code, words):
    got, _, err = run_cli(args, capsys)
    assert got == code, err
    assert "internal error" not in err and "Traceback" not in err
    if words:
        assert words in err and err.count("\n") == 1


def test_text_file_as_vector(capsys, tmp_path):
    f = tmp_path / "v.npy"
    f.write_text("0.1 0.2 0.3\n")
    code, _, err = run_cli(["knn", "--vector", f], capsys)
    assert code == 1 and "not a .npy file" in err and "pickle" not in err


# ---------------------------------------------------------------- 7. invalid vectors


def test_knn_counts_skipped_invalid_vectors(tmp_path, caplog):
    from mtquery.vectors.store import skipped_of

    t = synth.make_table(200, dim=8, seed=4)
    vec = np.asarray(t.column("embedding").to_pylist(), dtype=np.float32)
    vec[:3] = 0
    vec[3] = np.nan
    from mtquery.standard.schema import embedding_array

    t = t.set_column(t.schema.get_field_index("embedding"), "embedding",
                     embedding_array(vec))
    path = tmp_path / "z.parquet"
    pq.write_table(t, path)
    for use_cache in (True, False):
        from mtquery.query.vector import QueryVector
        from mtquery.vectors.exact import exact_knn

        s = mtquery.open_session(str(path))
        got = exact_knn(s, QueryVector(vector=np.ones(8, np.float32)), 500,
                        use_cache=use_cache)
        assert got.num_rows == 196 and skipped_of(got) == 4
    con = mtquery.connect(str(path))
    nulls = con.execute("SELECT count(*) FROM embeddings WHERE cosine_distance(embedding, "
                        "embedding) IS NULL").fetchone()[0]
    assert nulls == 4  # 0.1: distance 2, "most dissimilar"


# ---------------------------------------------------------------- 8. names with glob chars


def test_file_name_with_glob_characters(tmp_path, capsys):
    path = tmp_path / "star[1].parquet"
    synth.write(synth.make_table(50, dim=8, seed=1), path)
    code, out, err = run_cli(["info", path, "-f", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["rows"] == 50


# ---------------------------------------------------------------- 9. sql --read-only


def test_sql_read_only(capsys, small_dataset, tmp_path):
    target = tmp_path / "leak.csv"
    code, _, err = run_cli(["sql", "-d", small_dataset, "--read-only",
                            f"COPY (SELECT 1) TO '{target}'"], capsys)
    assert code == 1 and not target.exists() and err.count("\n") == 1
    code, _, err = run_cli(["sql", "-d", small_dataset, "--read-only",
                            "SELECT * FROM read_csv('/etc/hostname')"], capsys)
    assert code == 1
    code, out, err = run_cli(["sql", "-d", small_dataset, "--read-only", "-f", "json",
                              "SELECT count(*) AS n FROM embeddings"], capsys)
    assert code == 0 and json.loads(out)[0]["n"] == 500
    code, _, _ = run_cli(["sql", "-d", small_dataset, f"COPY (SELECT 1) TO '{target}'"],
                         capsys)
    assert code == 0 and target.exists()  # without --read-only: a full DuckDB
