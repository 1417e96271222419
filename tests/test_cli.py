"""The CLI: outputs, and every bad input -> one stderr line, exit 2 (usage) or 1 (data),
no traceback, no partial output file."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import synth
from clirun import run


def run_cli(args, capsys):
    return run(capsys, *args)


def test_cell_json(capsys):
    code, out, _ = run_cli(["cell", "--lat", "40.5829", "--lon", "-111.6556", "-f", "json"],
                           capsys)
    assert code == 0
    row = json.loads(out)[0]
    assert row["grid_cell"] == "451U_946L" and row["utm_epsg"] == 32612


def test_info_json(capsys):
    code, out, _ = run_cli(["info", "demo", "--format", "json"], capsys)
    assert code == 0
    info = json.loads(out)
    for key in ("rows", "dim", "bbox", "start", "end", "files", "bytes", "description"):
        assert key in info
    assert len(info["bbox"]) == 4 and info["rows"] > 0


def test_info_demo_describes_vectors(capsys):
    code, out, _ = run_cli(["info", "demo"], capsys)
    assert code == 0
    assert "Demo dataset" in out


def test_search_formats(capsys, small_dataset, tmp_path):
    base = ["search", "-d", small_dataset, "--bbox", "-10,40,10,50", "--limit", "5"]
    code, out, _ = run_cli(base + ["-f", "json"], capsys)
    rows = json.loads(out)
    assert code == 0 and len(rows) == 5 and "unique_id" in rows[0]
    code, out, _ = run_cli(base + ["-f", "csv"], capsys)
    assert code == 0 and out.splitlines()[0].startswith('"unique_id"')
    target = tmp_path / "r.parquet"
    code, _, _ = run_cli(base + ["-f", "parquet", "-o", str(target)], capsys)
    assert code == 0 and pq.read_table(target).num_rows == 5
    code, out, _ = run_cli(base, capsys)
    assert code == 0 and "unique_id" in out


def test_search_show_sql_binds_values(capsys, small_dataset):
    code, _, err = run_cli(["search", "-d", small_dataset, "--bbox", "1,41,2,42", "--start",
                            "2019-01-01", "--show-sql", "-f", "json"], capsys)
    assert code == 0
    assert "ST_MakeEnvelope(?, ?, ?, ?)" in err and "2019" not in err.split("-- parameters")[0]


def test_knn_json_and_env_default(capsys, monkeypatch, small_dataset):
    t = pq.read_table(small_dataset)
    uid = t.column("unique_id")[0].as_py()
    monkeypatch.setenv("MTQUERY_DATASET", small_dataset)
    code, out, _ = run_cli(["knn", "--id", uid, "--k", "4", "-f", "json"], capsys)
    rows = json.loads(out)
    assert code == 0 and len(rows) == 4
    assert set(rows[0]) == {"rank", "unique_id", "grid_cell", "timestamp", "product_id",
                            "centre_lat", "centre_lon", "distance"}
    assert uid not in [r["unique_id"] for r in rows]


def test_knn_vector_file(capsys, small_dataset, tmp_path):
    import numpy as np

    vec = tmp_path / "q.npy"
    np.save(vec, np.ones(8))
    code, out, _ = run_cli(["knn", "-d", small_dataset, "--vector", str(vec), "-k", "2",
                            "-f", "json"], capsys)
    assert code == 0 and len(json.loads(out)) == 2
    np.save(vec, np.ones(5))
    code, _, err = run_cli(["knn", "-d", small_dataset, "--vector", str(vec)], capsys)
    assert code == 1 and "5 values" in err


def test_sql_with_params(capsys):
    code, out, _ = run_cli(["sql", "SELECT count(*) AS n FROM embeddings WHERE grid_cell <> ?",
                            "-p", "nope", "-f", "json"], capsys)
    assert code == 0 and json.loads(out)[0]["n"] > 0


def _mixed_dims(tmp_path):
    synth.write(synth.make_table(10, dim=4, embedding_layout="list"), tmp_path / "a.parquet")
    synth.write(synth.make_table(10, dim=5, seed=2, embedding_layout="list"),
                tmp_path / "b.parquet")
    return str(tmp_path)


def _no_columns(tmp_path):
    path = tmp_path / "nocols.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), path)
    return str(path)


def _not_parquet(tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_text("hello")
    return str(path)


BAD = [
    (["knn", "--lat", "95", "--lon", "0"], 2, "latitude"),
    (["knn", "--lat", "10", "--lon", "-200"], 2, "longitude"),
    (["cell", "--lat", "-91", "--lon", "0"], 2, "latitude"),
    (["search", "--bbox", "1,2,3"], 2, "bbox"),
    (["search", "--bbox", "a,b,c,d"], 2, "bbox"),
    (["search", "--bbox", "5,0,1,1"], 2, "bbox"),
    (["search", "--start", "2020-13-45"], 2, "date"),
    (["search", "--start", "yesterday"], 2, "date"),
    (["search", "--start", "2021-01-01", "--end", "2020-01-01"], 2, "after"),
    (["knn", "--lat", "0.5", "--lon", "0.5"], 1, "km away"),
    (["knn", "--lat", "41.0", "--lon", "-104.0", "--k", "0"], 2, "k must be a positive"),
    (["knn", "--id", "0" * 64], 1, "unknown unique_id"),
    (["knn"], 2, "exactly one query"),
    (["knn", "--lat", "1"], 2, "go together"),
    (["info", "nosuchname"], 2, "unknown dataset"),
    (["search", "-d", "/nonexistent/x.parquet"], 1, "no such file"),
    (["search", "--cell", "12X_3Q"], 2, "grid cell"),
    (["search", "--limit", "0"], 2, "limit"),
    (["search", "-f", "parquet"], 2, "--output"),
    (["search", "-f", "xml"], 2, "format"),
    (["sql", "SELECT * FROM nosuchtable"], 1, "nosuchtable"),
    (["validate", "/nonexistent.parquet"], 1, "no such file"),
    (["cell", "--lat", "abc", "--lon", "0"], 2, "--lat"),
]


@pytest.mark.parametrize("args,code,needle", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_inputs(capsys, args, code, needle, tmp_path):
    out_file = tmp_path / "out.json"
    got, out, err = run_cli([*args, *(["-o", str(out_file)] if args[0] in ("search", "knn")
                                      and "-f" not in args else [])], capsys)
    assert got == code, err
    assert needle.lower() in err.lower()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out_file.exists()


@pytest.mark.parametrize("make,needle", [(_mixed_dims, "mixed embedding dimensions"),
                                         (_no_columns, "no vector column"),
                                         (_not_parquet, "not a Parquet file")])
def test_bad_data(capsys, tmp_path, make, needle):
    ds = make(tmp_path)
    out_file = tmp_path / "out.json"
    code, _, err = run_cli(["search", "-d", ds, "-f", "json", "-o", str(out_file)], capsys)
    assert code == 1 and needle in err and "Traceback" not in err
    assert not out_file.exists()


def test_real_entry_point_exit_codes():
    exe = [sys.executable, "-m", "mtquery"]
    ok = subprocess.run([*exe, "cell", "--lat", "0.001", "--lon", "0.001"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "0U_0R" in ok.stdout
    bad = subprocess.run([*exe, "knn", "--lat", "100", "--lon", "0"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("mtquery: error:")


def test_missing_optional_dependency_names_the_extra(capsys, monkeypatch, small_dataset):
    monkeypatch.setitem(sys.modules, "faiss", None)  # as on a core-only install
    code, _, err = run_cli(["index", "build", small_dataset, "--quiet"], capsys)
    assert code == 1 and "pip install 'mtquery[index]'" in err and "Traceback" not in err


@pytest.mark.parametrize("cmd,flags", [
    (["knn"], ["--dataset", "--output", "--start", "--end"]),
    (["search"], ["--dataset", "--output", "--start", "--end"]),
    (["sql"], ["--dataset", "--output", "--read-only"]),
    (["info"], ["--dataset"]),
    (["validate"], ["--dataset"]),
    (["optimize"], ["--dataset", "--output", "--start", "--end"]),
    (["index", "build"], ["--dataset", "--output"]),
    (["generate"], ["--output"]),
    (["eval", "linear-probe"], ["--dataset", "--output"]),
    (["eval", "retrieval"], ["--dataset", "--output"]),
])
def test_help_lists_the_one_convention(capsys, cmd, flags):
    code, out, _ = run_cli([*cmd, "--help"], capsys)
    assert code == 0
    for flag in flags:
        assert flag in out, f"{' '.join(cmd)} --help lacks {flag}"
    for old in ("--embeddings", "--out ", "--date-from", "--date-to", "--index-dir"):
        assert old not in out


def test_old_spellings_still_work(capsys, small_dataset, tmp_path):
    idx = tmp_path / "idx"
    code, _, err = run_cli(["index", "build", small_dataset, "--index-dir", str(idx), "-q"],
                           capsys)
    assert code == 0 and (idx / "manifest.json").is_file(), err
    code, _, err = run_cli(["index", "build", small_dataset, "--index-dir", str(idx), "-o",
                            str(idx), "-q"], capsys)
    assert code == 2 and "old name" in err
