"""The default index (RaBitQ codes + calibrated depth) keeps its recall on isotropic data, and
says so, falling back to exact results, when its target cannot be met."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from clirun import run

from mtquery.synth import SynthSpec, write

pytest.importorskip("faiss")

SPEC = SynthSpec(rows=50_000, dim=128, seed=11, types=64, distribution="isotropic",
                 spread=1.0)



@pytest.fixture(scope="module")
def iso(tmp_path_factory):
    return write(tmp_path_factory.mktemp("iso") / "iso.parquet", SPEC)


def _ids(capsys, data, uid, *extra):
    code, out, err = run(capsys, "knn", "-d", data, "--id", uid, "--k", 10, "-f", "json",
                         *extra)
    assert code == 0, err
    return [r["unique_id"] for r in json.loads(out)], err


@pytest.mark.slow
def test_index_recall_on_isotropic_data(iso, capsys, monkeypatch):
    monkeypatch.setenv("MTQUERY_CACHE", "off")
    code, out, err = run(capsys, "index", "build", iso)
    assert code == 0, err
    assert "calibrated" in err
    code, out, _ = run(capsys, "index", "info", iso)
    info = json.loads(out)
    assert info["kind"] == "ivf-rabitq" and not info["in_fallback"]
    assert info["calibration"]["recall"] >= 0.95
    ids = pq.read_table(iso, columns=["unique_id"]).column(0).to_pylist()
    rng = np.random.default_rng(0)
    hits = 0
    for i in rng.choice(len(ids), 20, replace=False):
        got, err = _ids(capsys, iso, ids[i])
        want, _ = _ids(capsys, iso, ids[i], "--exact")
        assert "not used" not in err
        hits += len(set(got) & set(want))
    assert hits / 200 >= 0.95


@pytest.mark.slow
def test_unreachable_target_falls_back(iso, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MTQUERY_CACHE", "off")
    out_dir = tmp_path / "idx"
    code, _, err = run(capsys, "index", "build", iso, "-o", out_dir, "--latency-budget",
                       "0.0001")
    assert code == 0
    assert "not used by default" in err and err.count("not used by default") == 1
    code, out, _ = run(capsys, "index", "info", "--index", out_dir)
    assert json.loads(out)["in_fallback"] is True
    # a dataset whose default index is in fallback: notice + exact results
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    (data_dir / "iso.parquet").symlink_to(iso)
    code, _, err = run(capsys, "index", "build", data_dir, "--latency-budget", "0.0001")
    assert code == 0
    uid = pq.read_table(iso, columns=["unique_id"]).column(0)[7].as_py()
    got, err = _ids(capsys, data_dir, uid)
    assert err.count("\n") == 1 and "not used" in err
    want, _ = _ids(capsys, data_dir, uid, "--exact")
    assert got == want
    forced, err = _ids(capsys, data_dir, uid, "--index", data_dir / "_mtindex")
    assert "not used" not in err and len(forced) == 10
