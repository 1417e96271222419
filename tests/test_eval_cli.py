"""End-to-end evaluation: the three joins, reproducibility, adapters, report, bad inputs.

Runs on the bundled demo dataset (1,000 fragments) and small files made in tmp dirs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtquery.cli import main
from mtquery.errors import DataError, UsageError
from mtquery.eval import runner
from mtquery.eval.dataset import load_labelled
from mtquery.io.datasets import demo_path

BEN = Path(__file__).parent / "data" / "bigearthnet" / "BigEarthNet-S2-Example"


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def demo_rows() -> pa.Table:
    return pq.read_table(demo_path(), columns=["unique_id", "grid_cell", "timestamp",
                                               "centre_lat", "centre_lon", "geometry"])


def _cell_label(cell: str, cells: list[str]) -> str:
    # spatially clustered, several classes whatever the demo holds: by the cell's rank
    return ("a", "b", "c")[cells.index(cell) % 3]


@pytest.fixture(scope="module")
def demo_info() -> dict:
    import mtquery

    con = mtquery.connect("demo")
    try:
        rows = con.execute("SELECT grid_cell, min(acquired_at), count(*), "
                           "count(acquired_at) FROM embeddings GROUP BY 1 ORDER BY 1").fetchall()
    finally:
        con.close()
    return {"cells": [r[0] for r in rows], "date": {r[0]: r[1] for r in rows},
            "n": sum(r[2] for r in rows), "n_dated": sum(r[3] for r in rows),
            "dim": mtquery.open_session("demo").dim}


@pytest.fixture(scope="module")
def labels_dir(tmp_path_factory, demo_rows, demo_info) -> Path:
    d = tmp_path_factory.mktemp("labels")
    rows = demo_rows.to_pydict()
    cells = demo_info["cells"]
    # by unique_id (every 2nd fragment), parquet
    ids = rows["unique_id"][::2]
    lab = [_cell_label(c, cells) for c in rows["grid_cell"][::2]]
    pq.write_table(pa.table({"unique_id": ids, "label": lab}), d / "ids.parquet")
    # by grid cell, CSV, with a date column = the acquisition day (empty when unknown)
    with open(d / "cells.csv", "w") as fh:
        fh.write("grid_cell,date,landcover\n")
        for c in cells:
            day = demo_info["date"][c]
            fh.write(f"{c},{day.date().isoformat() if day else ''},{_cell_label(c, cells)}\n")
    # single class
    pq.write_table(pa.table({"unique_id": ids, "label": ["x"] * len(ids)}), d / "one.parquet")
    # matching nothing
    pq.write_table(pa.table({"unique_id": ["nope1", "nope2"], "label": ["a", "b"]}),
                   d / "none.parquet")
    # too few
    pq.write_table(pa.table({"unique_id": ids[:6], "label": ["a", "b"] * 3}), d / "few.parquet")
    return d


def test_join_unique_id(labels_dir, demo_info):
    ds = _load(labels_dir / "ids.parquet", "unique_id")
    half = (demo_info["n"] + 1) // 2
    assert len(ds) == half and ds.classes == ["a", "b", "c"]
    assert not ds.multi_label and ds.X.shape == (half, demo_info["dim"])
    assert ds.X.dtype == np.float32
    # the vectors are those of the same rows
    t = pq.read_table(demo_path(), columns=["unique_id", "embedding"]).to_pydict()
    ref = dict(zip(t["unique_id"], t["embedding"], strict=True))
    assert np.allclose(ds.X[7], np.asarray(ref[ds.unique_id[7]], dtype=np.float32))


def _load(path, join, **kw):
    import mtquery

    s = mtquery.open_session("demo")
    try:
        return load_labelled(s, path, join=join, **kw)
    finally:
        s.close()


def test_join_grid_cell_with_date_window(labels_dir, demo_info):
    ds = _load(labels_dir / "cells.csv", "grid_cell", label_col="landcover")
    assert len(ds) == demo_info["n"]
    # fragments without a known acquisition time cannot meet a date window
    ds = _load(labels_dir / "cells.csv", "grid_cell", label_col="landcover", window_days=1)
    assert len(ds) == demo_info["n_dated"] > 0
    with pytest.raises(DataError, match="match no fragment"):
        _load(labels_dir / "cells.csv", "grid_cell", label_col="landcover",
              start="2091-01-01")
    first = min(v for v in demo_info["date"].values() if v is not None)
    ds = _load(labels_dir / "cells.csv", "grid_cell", label_col="landcover",
               start=first.date().isoformat())
    assert len(ds) == demo_info["n_dated"]


def test_join_spatial_points_and_polygons(tmp_path, demo_rows):
    import shapely

    rows = demo_rows.to_pydict()
    geoms = shapely.from_wkb(rows["geometry"])
    # points at the centres of 40 fragments (one per cell, the first): each lies in its own
    # fragment only (neighbours overlap by 10 %, not up to the centre)
    first = {}
    for i, c in enumerate(rows["grid_cell"]):
        first.setdefault(c, i)
    pick = sorted(first.values())
    pts = shapely.centroid(geoms[pick])
    with open(tmp_path / "pts.csv", "w") as fh:
        fh.write("lon,lat,label\n")
        for k, p in enumerate(pts):
            fh.write(f"{p.x},{p.y},{'even' if k % 2 == 0 else 'odd'}\n")
    ds = _load(tmp_path / "pts.csv", "spatial")
    assert len(ds) == len(pick)
    assert set(ds.unique_id) == {rows["unique_id"][i] for i in pick}
    # polygons: the convex hull of a cell's fragment centres -> exactly that cell's fragments
    # (Core windows of neighbouring cells overlap by 680 m, fragment centres sit >1 km inside)
    cells = sorted(first)[:3]
    polys = [shapely.convex_hull(shapely.union_all(shapely.centroid(
        geoms[[i for i, c in enumerate(rows["grid_cell"]) if c == cell]]))) for cell in cells]
    pq.write_table(pa.table({"geometry": shapely.to_wkb(polys).tolist(),
                             "label": ["p0", "p1", "p2"]}), tmp_path / "polys.parquet")
    ds = _load(tmp_path / "polys.parquet", "spatial")
    n_cells = sum(1 for c in rows["grid_cell"] if c in cells)
    assert len(ds) == n_cells and ds.classes == ["p0", "p1", "p2"]


def test_multi_label_list_column(tmp_path, demo_rows):
    rows = demo_rows.to_pydict()
    labs = [["a", "b"] if i % 3 == 0 else ["a"] if i % 3 == 1 else ["b"]
            for i in range(len(rows["unique_id"]))]
    pq.write_table(pa.table({"unique_id": rows["unique_id"], "labels": labs}),
                   tmp_path / "ml.parquet")
    doc = runner.linear_probe("demo", tmp_path / "ml.parquet", seeds="0", argv=["t"])
    assert doc["task"]["multi_label"] is True
    s = doc["metrics"]["splits"]["random"]["summary"]
    assert set(s["linear"]) >= {"map", "micro_f1", "macro_f1"}
    assert set(s) == {"linear", "knn/k1", "knn/k5", "knn/k20"}


@pytest.mark.slow
def test_probe_cli_reproducible_and_self_describing(labels_dir, demo_info, tmp_path, capsys):
    outs = []
    for name in ("a.json", "b.json"):
        code, out, err = run(["eval", "linear-probe", "--labels", str(labels_dir / "ids.parquet"),
                              "--split", "both", "--seeds", "0,1",
                              "--output", str(tmp_path / name)], capsys)
        assert code == 0, err
        assert "wrote" in out
        outs.append(json.loads((tmp_path / name).read_text()))
    a, b = outs
    assert a["metrics"] == b["metrics"]
    assert a["dataset"] == b["dataset"] and a["labels"] == b["labels"]
    for key in ("command", "dataset", "labels", "config", "versions", "timings_s", "models"):
        assert key in a
    assert a["dataset"]["files"][0]["rows"] == demo_info["n"] == a["dataset"]["total_rows"]
    # mtquery.vectors.store's fingerprint: resolved path, size, mtime and rows of each file
    assert set(a["dataset"]["files"][0]) == {"path", "size", "mtime_ns", "rows"}
    assert a["dataset"]["files"][0]["path"] == str(Path(demo_path()).resolve())
    assert a["dataset"]["rows_used"] == (demo_info["n"] + 1) // 2
    assert len(a["labels"]["sha256"]) == 64
    runs = a["metrics"]["splits"]["spatial"]["runs"]
    assert all(len(r["split_sha256"]) == 64 for r in runs)
    assert a["config"]["seeds"] == [0, 1]
    assert "gap_random_minus_spatial" in a["metrics"]
    assert a["metrics"]["spatial"]["h3_res"] >= 0
    assert a["timings_s"]["load_s"] >= 0


@pytest.mark.slow
def test_retrieval_cli_and_report(labels_dir, tmp_path, capsys):
    out = tmp_path / "ret.json"
    code, _, err = run(["eval", "retrieval", "--labels", str(labels_dir / "cells.csv"),
                        "--join", "grid_cell", "--label-col", "landcover", "--k", "1,10",
                        "--queries", "50", "--ann", "hnsw", "--output", str(out)], capsys)
    assert code == 0, err
    doc = json.loads(out.read_text())
    m = doc["metrics"]["metrics"]
    assert m["queries_used"] == 50
    for k in (1, 10):
        for name in ("precision", "recall", "map", "ndcg"):
            assert 0.0 <= m[f"{name}@{k}"] <= 1.0
    assert 0.0 <= doc["metrics"]["ann"]["recall@10_vs_exact"] <= 1.0
    assert "ann_latency_ms_p50" in doc["latency"]
    code, _, err = run(["eval", "linear-probe", "--labels", str(labels_dir / "ids.parquet"),
                        "--seeds", "0", "--output", str(tmp_path / "probe.json")], capsys)
    assert code == 0, err
    rep = tmp_path / "rep"
    code, text, err = run(["eval", "report", str(tmp_path / "*.json"), "--output", str(rep)],
                          capsys)
    assert code == 0, err
    assert "| probe.json |" in text and "| ret.json |" in text
    assert (rep / "report.html").read_text().count("<table>") == 2
    for png in ("probe_per_class.png", "probe_pca_rgb.png", "ret_pca_rgb.png"):
        assert (rep / png).read_bytes()[:4] == b"\x89PNG"


def test_balanced_sampling_options(labels_dir, demo_info):
    doc = runner.linear_probe("demo", labels_dir / "cells.csv", join="grid_cell",
                              label_col="landcover", seeds="0", one_per_cell=True,
                              max_per_class=10, knn=False, pca_map=False, argv=["t"])
    samp = doc["task"]["sampling"]
    assert samp["after_one_per_cell_date"] == len(demo_info["cells"])
    assert max(doc["task"]["class_counts"].values()) <= 10


def _bad_dataset(tmp_path: Path, kind: str) -> Path:
    t = pq.read_table(demo_path())
    vecs = t.column("embedding").to_pylist()
    if kind == "nan":
        vecs[5] = [float("nan")] * len(vecs[5])
    elif kind == "zero":
        vecs[5] = [0.0] * len(vecs[5])
    else:
        vecs[5] = vecs[5][:-1]
    i = t.schema.get_field_index("embedding")
    t = t.set_column(i, "embedding", pa.array(vecs, pa.list_(pa.float32())))
    p = tmp_path / f"{kind}.parquet"
    pq.write_table(t, p)
    return p


@pytest.mark.parametrize("case", ["nothing", "single", "few", "column", "nan", "zero", "dims",
                                  "join_col", "seeds", "k", "both_names"])
def test_bad_inputs_one_line_error_no_file(case, labels_dir, tmp_path, capsys):
    out = tmp_path / "res.json"
    emb = "demo"
    labels = labels_dir / "ids.parquet"
    extra: list[str] = []
    expect = {"nothing": "match no fragment", "single": "single class", "few": "at least",
              "column": "label_col 'nope' is not a column", "nan": "NaN", "zero": "are all zeros",
              "dims": "mixed embedding dim", "join_col": "needs a 'grid_cell' column",
              "seeds": "distinct integers (--seeds)", "k": "(--k)",
              "both_names": "--embeddings is the old name of --dataset"}[case]
    command = "linear-probe"
    if case == "nothing":
        labels = labels_dir / "none.parquet"
    elif case == "single":
        labels = labels_dir / "one.parquet"
    elif case == "few":
        labels = labels_dir / "few.parquet"
    elif case == "column":
        extra = ["--label-col", "nope"]
    elif case in ("nan", "zero", "dims"):
        emb = str(_bad_dataset(tmp_path, case))
        labels = labels_dir / "cells.csv"
        extra = ["--join", "grid_cell", "--label-col", "landcover"]
    elif case == "join_col":
        extra = ["--join", "grid_cell"]
    elif case == "seeds":
        extra = ["--seeds", "1,1"]
    elif case == "k":
        command, extra = "retrieval", ["--k", "0"]
    elif case == "both_names":
        extra = ["--embeddings", "demo"]
    code, _, err = run(["eval", command, "--dataset", emb, "--labels", str(labels),
                        "--output", str(out), *extra], capsys)
    assert code in (1, 2)
    assert err.count("\n") == 1 and err.startswith("mtquery: error:"), err
    assert expect in err
    assert "Traceback" not in err
    assert not out.exists()
    assert not list(tmp_path.glob(".res.json*"))


def test_library_errors_are_typed(labels_dir):
    with pytest.raises(UsageError):
        runner.linear_probe("demo", labels_dir / "ids.parquet", split="diagonal")
    with pytest.raises(DataError):
        runner.retrieval("demo", labels_dir / "one.parquet")


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"seeds": "1,1"}, "seeds"), ({"split": "diagonal"}, "split"),
    ({"max_per_class": -1}, "max_per_class"), ({"train_fraction": 1.5}, "train_fraction"),
    ({"multi_label": "maybe"}, "multi_label"), ({"label_col": "nope"}, "label_col"),
    ({"join": "grid_cell"}, "join"), ({"h3_res": 16, "split": "spatial"}, "h3_res"),
])
def test_library_errors_name_arguments_not_flags(labels_dir, kwargs, argument):
    with pytest.raises(UsageError) as info:
        runner.linear_probe("demo", labels_dir / "ids.parquet", seeds=kwargs.pop("seeds", "0"),
                            knn=False, pca_map=False, **kwargs)
    assert info.value.argument == argument
    assert argument in str(info.value) and "--" not in str(info.value)


@pytest.mark.parametrize("command", ["linear-probe", "retrieval", "report", "embed-benchmark",
                                     "derive-labels"])
def test_help_lists_the_new_option_names(command, capsys):
    code, out, _ = run(["eval", command, "--help"], capsys)
    assert code == 0
    assert "--output" in out and "-o" in out
    for old in ("--out ", "--out-dir", "--embeddings", "--date-from", "--date-to"):
        assert old not in out
    if command in ("linear-probe", "retrieval", "derive-labels"):
        assert "--dataset" in out and "-d " in out
    if command in ("linear-probe", "retrieval"):
        assert "--start" in out and "--end" in out


def test_old_option_spellings_still_work(tmp_path, capsys):
    lab = str(Path(__file__).parent / "data" / "demo_labels" / "demo_labels.parquet")
    common = ["--labels", lab, "--seeds", "0", "--no-knn"]
    code, _, err = run(["eval", "linear-probe", "-d", "demo", "--start", "2000-01-01",
                        "--end", "2100-01-01", "-o", str(tmp_path / "new.json"), *common], capsys)
    assert code == 0, err
    code, _, err = run(["eval", "linear-probe", "-e", "demo", "--date-from", "2000-01-01",
                        "--date-to", "2100-01-01", "--out", str(tmp_path / "old.json"), *common],
                       capsys)
    assert code == 0, err
    new, old = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("new", "old"))
    assert new["metrics"] == old["metrics"] and new["dataset"] == old["dataset"]
    assert old["labels"]["date_from"] == "2000-01-01"
    code, _, err = run(["eval", "retrieval", "--embeddings", "demo", "-l", lab, "--k", "1,5",
                        "--queries", "20", "--out", str(tmp_path / "ret.json")], capsys)
    assert code == 0, err
    code, _, err = run(["eval", "report", str(tmp_path / "old.json"), "--no-plots",
                        "--out-dir", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    assert (tmp_path / "rep" / "report.md").is_file()
    code, _, err = run(["eval", "report", str(tmp_path / "old.json"), "--no-plots",
                        "--out-dir", str(tmp_path / "rep"), "-o", str(tmp_path / "rep2")],
                       capsys)
    assert code == 2 and "--out-dir is the old name of --output" in err


def test_bigearthnet_adapter_real_examples(tmp_path, capsys):
    emb, lab = tmp_path / "ben.parquet", tmp_path / "ben_labels.parquet"
    code, out, err = run(["eval", "embed-benchmark", "bigearthnet", str(BEN), "--model",
                          "spectral", "--output", str(emb), "--labels-out", str(lab)], capsys)
    assert code == 0, err
    assert out.startswith("6 bigearthnet patches")
    t = pq.read_table(lab).to_pydict()
    assert len(t["unique_id"]) == 6
    assert "Pastures" in {c for ls in t["labels"] for c in ls}
    import mtquery

    s = mtquery.open_session(str(emb))
    try:
        ds = load_labelled(s, lab, join="unique_id")
    finally:
        s.close()
    assert ds.multi_label and len(ds) == 6 and ds.X.shape[1] == 60
    # real footprints: the Portuguese/Irish/Austrian/Finnish patches sit in Europe
    assert (ds.lat > 35).all() and (ds.lat < 70).all()
    code, _, err = run(["eval", "retrieval", "-d", str(emb), "-l", str(lab), "--k", "1,3",
                        "--min-class-count", "1", "--output", str(tmp_path / "r.json")], capsys)
    assert code == 0, err


def test_eurosat_adapter_fixture(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "eurosat_make", Path(__file__).parent / "data" / "eurosat" / "make_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    root = mod.make(tmp_path / "eurosat", per_class=6, size=8, seed=0)
    emb, lab = tmp_path / "es.parquet", tmp_path / "es_labels.parquet"
    code, _, err = run(["eval", "embed-benchmark", "eurosat", str(root), "--output", str(emb),
                        "--labels-out", str(lab)], capsys)
    assert code == 0, err
    doc = runner.linear_probe(str(emb), lab, seeds="0,1", split="both", argv=["t"])
    assert doc["task"]["multi_label"] is False
    assert doc["task"]["classes"] == ["AnnualCrop", "Forest", "SeaLake"]
    assert doc["models"] == ["spectral"]
    # the class spectra are far apart: the spectral baseline separates them
    assert doc["metrics"]["splits"]["random"]["summary"]["linear"]["oa"]["mean"] >= 0.9


def test_end_to_end_on_bundled_demo_with_derived_labels(tmp_path, capsys):
    lab = Path(__file__).parent / "data" / "demo_labels" / "demo_labels.parquet"
    out = tmp_path / "demo_probe.json"
    code, text, err = run(["eval", "linear-probe", "--labels", str(lab), "--split", "both",
                           "--seeds", "0", "--output", str(out)], capsys)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["task"]["classes"] == ["cloud", "land", "water"]
    assert doc["dataset"]["rows_used"] == pq.read_metadata(lab).num_rows
    assert "gap random−spatial" in text
