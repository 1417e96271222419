"""Bad input to ``score`` / ``classify``: one line on stderr, a non-zero exit, nothing on
stdout and nothing written (no output file, no temporary file)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import synth
from clirun import run


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("findcli")
    table = synth.make_table(n=2000, dim=16, seed=5)
    other = synth.make_table(n=300, dim=8, seed=6)
    return (synth.write(table, root / "a.parquet"), table,
            synth.write(other, root / "b.parquet"))


def outputs(d) -> list:
    return ["-o", d / "all.parquet", "--heatmap", d / "heat.tif"]


def fails(capsys, tmp_path, code: int, needle: str, *args) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    extra = outputs(out_dir)
    if args[0] == "classify":
        extra += ["--detections", out_dir / "d.geojson", "--save-model", out_dir / "m.json"]
    got, out, err = run(capsys, *args, *extra, "-q")
    assert got == code, (got, err)
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("mtquery: error: ") and "Traceback" not in err
    assert needle in err, err
    assert list(out_dir.iterdir()) == [], list(out_dir.iterdir())


def geojson(path, points) -> None:
    feats = [{"type": "Feature", "properties": {"label": lab},
              "geometry": {"type": "Point", "coordinates": [lon, lat]}}
             for lon, lat, lab in points]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))


def test_labels_that_hit_no_fragment(small, tmp_path, capsys):
    path, _, _ = small
    labels = tmp_path / "sea.geojson"
    geojson(labels, [(-30.0, 0.0, 1), (-31.0, 1.0, 0), (-32.0, 2.0, 0)])
    fails(capsys, tmp_path, 1, "0 of 3 labels fall on fragments of", "classify", "-d", path,
          "--labels", labels)


def test_one_class_only(small, tmp_path, capsys):
    path, table, _ = small
    lon = table.column("centre_lon").to_numpy()[:3]
    lat = table.column("centre_lat").to_numpy()[:3]
    labels = tmp_path / "neg.csv"
    labels.write_text("lon,lat,label\n" + "".join(f"{a},{b},0\n" for a, b in zip(lon, lat)))
    fails(capsys, tmp_path, 1, "one class only", "classify", "-d", path, "--labels", labels)
    uid = table.column("unique_id")[0].as_py()
    fails(capsys, tmp_path, 1, "one class only", "classify", "-d", path, "--positive", uid,
          "--background", 0)


def test_unknown_label_column_and_values(small, tmp_path, capsys):
    path, table, _ = small
    lon, lat = (float(table.column(c)[0].as_py()) for c in ("centre_lon", "centre_lat"))
    labels = tmp_path / "l.csv"
    labels.write_text(f"lon,lat,kind\n{lon},{lat},water\n")
    fails(capsys, tmp_path, 2, "label column 'label' is not a column of l.csv (columns: lon, "
          "lat, kind) (--label-column)", "classify", "-d", path, "--labels", labels)
    fails(capsys, tmp_path, 2, "--positive-label", "classify", "-d", path, "--labels", labels,
          "--label-column", "kind")
    fails(capsys, tmp_path, 2, "'sea' is not a value", "classify", "-d", path, "--labels",
          labels, "--label-column", "kind", "--positive-label", "sea")


def test_label_file_without_geometry_or_ids(small, tmp_path, capsys):
    path, _, _ = small
    labels = tmp_path / "names.csv"
    labels.write_text("name,label\nfarm,1\nlake,0\n")
    fails(capsys, tmp_path, 2, "no geometry", "classify", "-d", path, "--labels", labels)
    fails(capsys, tmp_path, 1, "label file not found", "classify", "-d", path, "--labels",
          tmp_path / "missing.geojson")


def test_threshold_outside_0_1(small, tmp_path, capsys):
    path, table, _ = small
    uid = table.column("unique_id")[0].as_py()
    for bad in ("1.5", "-0.1", "nan"):
        fails(capsys, tmp_path, 2, "threshold must be a probability between 0 and 1",
              "classify", "-d", path, "--positive", uid, "--threshold", bad)


def test_saved_model_of_another_dim_or_model(small, tmp_path, capsys):
    path, table, other = small
    ids = table.column("unique_id").to_pylist()
    model = tmp_path / "m16.json"
    code, _, err = run(capsys, "classify", "-d", path, "--positive", ids[0], "--positive",
                       ids[1], "--save-model", model, "-q")
    assert code == 0, err
    fails(capsys, tmp_path, 1, "fitted on 16-d embeddings", "classify", "-d", other,
          "--model", model)
    doc = json.loads(model.read_text())
    doc["coef"] = [0.01] * 60
    doc["provenance"]["embedding_model"] = "siglip"
    doc["provenance"]["dim"] = 60
    foreign = tmp_path / "siglip.json"
    foreign.write_text(json.dumps(doc))
    fails(capsys, tmp_path, 1, "fitted on siglip embeddings; demo holds spectral",
          "classify", "-d", "demo", "--model", foreign)
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    fails(capsys, tmp_path, 1, "not a model saved by classify", "classify", "-d", path,
          "--model", junk)
    fails(capsys, tmp_path, 2, "give one or the other", "classify", "-d", path, "--model", model,
          "--positive", ids[0])


def test_empty_region(small, tmp_path, capsys):
    path, table, _ = small
    uid = table.column("unique_id")[0].as_py()
    empty = "100,-10,101,-9"
    fails(capsys, tmp_path, 1, "lies in the region (bbox 100,-10,101,-9)", "score", "-d",
          path, "--id", uid, "--bbox", empty)
    fails(capsys, tmp_path, 1, "lies in the region", "classify", "-d", path, "--positive",
          uid, "--bbox", empty)
    fails(capsys, tmp_path, 1, "lies in the region", "score", "-d", path, "--id", uid,
          "--start", "2030-01-01")


def test_bad_outputs_and_queries(small, tmp_path, capsys):
    path, table, _ = small
    uid = table.column("unique_id")[0].as_py()
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    for args, needle in (
        (["--heatmap", out_dir / "h.jpg"], "heat map file ends in .tif"),
        (["--output", out_dir / "a.csv"], "output must be a file ending in .parquet"),
        (["--resolution", "-3", "--heatmap", out_dir / "h.png"], "resolution must be"),
    ):
        code, out, err = run(capsys, "score", "-d", path, "--id", uid, *args)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    code, out, err = run(capsys, "score", "-d", path)
    assert code == 2 and "give exactly one query" in err
    code, out, err = run(capsys, "score", "-d", path, "--id", "f" * 64)
    assert code == 1 and "unknown unique_id" in err
    code, out, err = run(capsys, "classify", "-d", path)
    assert code == 2 and "give labels" in err
    assert list(out_dir.iterdir()) == []


def test_vector_of_another_dim(small, tmp_path, capsys):
    path, _, _ = small
    v = tmp_path / "v.npy"
    np.save(v, np.ones(5, np.float32))
    fails(capsys, tmp_path, 1, "query vector has 5 values", "score", "-d", path, "--vector",
          v)


def test_missing_extras_are_named(small, tmp_path, capsys, monkeypatch):
    path, table, _ = small
    uid = table.column("unique_id")[0].as_py()
    for name in [m for m in sys.modules if m.split(".")[0] in ("sklearn", "rasterio")]:
        monkeypatch.setitem(sys.modules, name, None)  # as on a core-only install
    monkeypatch.setitem(sys.modules, "sklearn", None)
    fails(capsys, tmp_path, 1, "pip install 'mtquery[eval]'", "classify", "-d", path,
          "--positive", uid)
    monkeypatch.setitem(sys.modules, "rasterio", None)
    fails(capsys, tmp_path, 1, "pip install 'mtquery[eval]'", "score", "-d", path, "--id",
          uid)
