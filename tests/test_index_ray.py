"""Issue 23: per-file shards built on Ray (a local 2-CPU Ray, as the generation tests use)
are the local engine's: same shard files, same answers of knn over the shards; a fresh shard
is kept; a bad engine or address is one line."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from clirun import run

ray = pytest.importorskip("ray")
pytest.importorskip("faiss")

from mtquery.synth import SynthSpec, write  # noqa: E402
from mtquery.vectors.shards import build_per_file, open_shards, search_shards  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, object_store_memory=300_000_000, include_dashboard=False,
             logging_level=logging.ERROR, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards") / "local"
    d.mkdir()
    for i in range(3):
        write(d / f"s{i}.parquet", SynthSpec(rows=6000, dim=32, seed=40 + i, types=16,
                                             distribution="isotropic"), row_group_size=2000)
    return d


def test_ray_shards_equal_local(data, tmp_path, local_ray, capsys, monkeypatch):
    monkeypatch.setenv("MTQUERY_CACHE", "off")
    other = tmp_path / "ray"
    shutil.copytree(data, other)
    local = build_per_file(str(data), threads=1, nprobe=4, rerank=50)
    remote = build_per_file(str(other), engine="ray", threads=1, nprobe=4, rerank=50)
    assert [p.name for p in local] == [p.name for p in remote]
    for a, b in zip(local, remote, strict=True):
        assert (a / "ivf.faiss").read_bytes() == (b / "ivf.faiss").read_bytes()
        assert (a / "store" / "vectors.f32").read_bytes() == \
            (b / "store" / "vectors.f32").read_bytes()
    sa, sb = open_shards(local), open_shards(remote)
    rng = np.random.default_rng(0)
    for q in rng.normal(size=(20, 32)).astype(np.float32):
        ia, da = search_shards(sa, q, 10, threads=2)
        ib, db = search_shards(sb, q, 10, threads=2)
        assert ia.tolist() == ib.tolist() and np.array_equal(da, db)
    # knn over the Ray-built shards answers as over the local ones
    vec = tmp_path / "q.npy"
    np.save(vec, rng.normal(size=32).astype(np.float32))
    answers = []
    for d in (data, other):
        code, out, err = run(capsys, "knn", "-d", d, "--vector", vec, "--k", 10, "-f", "json")
        assert code == 0, err
        answers.append([(r["unique_id"], r["distance"]) for r in json.loads(out)])
    assert answers[0] == answers[1]
    # a rerun keeps the fresh shards (nothing sent to Ray)
    code, _, err = run(capsys, "index", "build", other, "--per-file", "--engine", "ray",
                       "--threads", "1", "--nprobe", "4", "--rerank", "50")
    assert code == 0 and err.count("fresh, kept") == 3


def test_engine_bad_input(data, capsys):
    code, _, err = run(capsys, "index", "build", data, "--engine", "ray")
    assert code == 2 and "--per-file" in err and err.count("\n") == 1
    code, _, err = run(capsys, "index", "build", data, "--per-file", "--engine", "spark")
    assert code == 2 and "spark" in err and err.count("\n") == 1
    code, _, err = run(capsys, "index", "build", data, "--per-file", "--engine", "ray",
                       "--address", "nohost")
    assert code == 2 and "address" in err and err.count("\n") == 1
