"""The Ray engine (``generate(..., engine="ray")``): on a local 2-CPU Ray, Core samples cut from
the bundled real Virginia scene (and the scene itself) give the local engine's rows bit for
bit; a rerun writes nothing; a failed sample is skipped and reported as locally; a killed
worker is retried without duplicating rows; errors are one line. Needs the ``cluster`` extra
(``make test`` installs it)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a local Ray: 20-40 s a test on 2 cores

from mtquery.errors import DataError, UsageError  # noqa: E402
from mtquery.generate.engine_ray import KILL_ENV  # noqa: E402
from mtquery.generate.pipeline import generate  # noqa: E402

DATA = Path(__file__).parent / "data"
MODEL = "dinov2-tiny"  # a torch family whose preprocessing needs what loading gives
CORRUPT = "418U_668L"  # sample 1 of 5
KW = {"shard_size": 3, "batch_size": 32}  # 25 fragments a sample: batches span samples


def _maker():
    spec = importlib.util.spec_from_file_location("core_virginia_make_ray",
                                                  DATA / "core_virginia" / "make_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def kill_dir(tmp_path_factory):
    """A local Ray (2 CPUs, small object store, no dashboard) for the module; its workers see
    KILL_ENV, so a test can have a decode task killed once."""
    d = tmp_path_factory.mktemp("kill")
    with pytest.MonkeyPatch.context() as mp:  # the workers inherit it; undone after the module
        mp.setenv(KILL_ENV, str(d))
        ray.init(num_cpus=2, object_store_memory=500_000_000, include_dashboard=False,
                 logging_level=logging.ERROR, log_to_driver=False)
        yield d
        ray.shutdown()


@pytest.fixture(scope="module")
def core(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("core")
    _maker().build(d, n_cells=5, corrupt={CORRUPT: "bytes"})
    return d


@pytest.fixture(scope="module")
def local_run(core, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    s = generate(MODEL, [str(core)], str(out), **KW)
    assert s.samples_done == 4 and s.samples_failed == 1 and s.rows_total == 100
    return out


def _rows(out: Path):
    return pq.read_table(sorted(out.glob("part-*.parquet")))


def _same_rows(a: Path, b: Path, rows: int = 100) -> None:
    ta, tb = _rows(a), _rows(b)
    assert ta.schema.equals(tb.schema) and ta.num_rows == tb.num_rows == rows
    ea = np.stack(ta.column("embedding").to_numpy(zero_copy_only=False))
    eb = np.stack(tb.column("embedding").to_numpy(zero_copy_only=False))
    assert np.array_equal(ea, eb)  # bit-identical at the same batch size
    for col in ta.column_names:
        assert ta.column(col).equals(tb.column(col)), col


def _snapshot(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*")
            if p.is_file() and p.name != "manifest.json"}


def test_ray_rows_equal_local_and_a_rerun_writes_nothing(kill_dir, core, local_run, tmp_path):
    out = tmp_path / "ray"
    events = []
    s = generate(MODEL, [str(core)], str(out), engine="ray", progress=events.append, **KW)
    assert (s.samples_done, s.samples_failed, s.rows_total) == (4, 1, 100)
    _same_rows(local_run, out)
    assert [f["grid_cell"] for f in s.failed] == [CORRUPT]
    assert "corrupt GeoTIFF" in s.failed[0]["error"]
    meta_l, meta_r = local_run / "_mtquery", out / "_mtquery"
    assert (meta_l / "run.json").read_text() == (meta_r / "run.json").read_text()
    for st in sorted((meta_l / "state").glob("*.json")):
        assert json.loads(st.read_text()) == json.loads((meta_r / "state" / st.name).read_text())
    m = json.loads((meta_r / "manifest.json").read_text())
    assert m["engine"]["name"] == "ray" and m["engine"]["workers"] == 1
    assert m["counts"]["samples_failed"] == 1 and m["failed"][0]["grid_cell"] == CORRUPT
    assert m["device"] == "cpu" and m["counts"]["rows"] == 100
    assert events[0].total == 5 and sum(e.advance for e in events) == 5
    assert sum(e.counters.get("fragments", 0) for e in events) == 100

    before = _snapshot(out)
    s2 = generate(MODEL, [str(core)], str(out), engine="ray", **KW)
    assert (s2.samples_done, s2.samples_resumed, s2.fragments) == (0, 4, 0)
    assert _snapshot(out) == before


def test_resumes_local_output_and_a_killed_worker_duplicates_nothing(kill_dir, core,
                                                                     local_run, tmp_path):
    out = tmp_path / "mixed"
    generate(MODEL, [str(core)], str(out), limit=3, **KW)  # local: shard 0 only
    (kill_dir / "part-0000-00001").touch()  # its decode task dies after its first group
    s = generate(MODEL, [str(core)], str(out), engine="ray", **KW)
    assert not (kill_dir / "part-0000-00001").exists()  # the kill happened; Ray retried
    assert (s.samples_resumed, s.samples_done, s.samples_failed) == (2, 2, 1)
    _same_rows(local_run, out)


def test_cli_runs_the_ray_engine_on_core_and_scene_inputs(kill_dir, core, local_run, tmp_path,
                                                         capsys):
    from mtquery.cli import main

    scene = DATA / "virginia_120m"  # band files: one sample read from GeoTIFFs on the worker
    generate(MODEL, [str(scene)], str(tmp_path / "scene"), **KW)
    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as exc:  # exit 1: the corrupt sample
        main(["generate", "-m", MODEL, "-i", str(core), "-i", str(scene), "-o", str(out),
              "--engine", "ray", "--workers", "1", "--shard-size", "3", "--batch-size", "32"])
    assert exc.value.code == 1
    err = capsys.readouterr()
    assert "5 samples embedded" in err.out and CORRUPT in err.err
    core_out, scene_out = tmp_path / "core_part", tmp_path / "scene_part"
    core_out.mkdir()
    scene_out.mkdir()
    for f in out.glob("part-0000-*.parquet"):
        f.rename(core_out / f.name)
    (out / "part-0001-00000.parquet").rename(scene_out / "part-0000-00000.parquet")
    _same_rows(local_run, core_out)
    _same_rows(tmp_path / "scene", scene_out, rows=25)


def test_gpu_and_argument_errors(kill_dir, core, tmp_path):
    with pytest.raises(UsageError, match="no GPUs") as e:
        generate(MODEL, [str(core)], str(tmp_path / "g"), engine="ray", gpus_per_worker=1)
    assert e.value.argument == "gpus_per_worker"
    bad = [({"workers": 0}, "workers"), ({"gpus_per_worker": -1}, "gpus_per_worker"),
           ({"precision": "fp16", "gpus_per_worker": 0}, "precision"),
           ({"device": "cuda:1"}, "device"), ({"address": "nohost"}, "address"),
           ({"engine": "dask"}, "engine")]
    for kw, arg in bad:
        kw = {"engine": "ray", **kw}
        with pytest.raises(UsageError) as e:
            generate(MODEL, [str(core)], str(tmp_path / "x"), **kw)
        assert e.value.argument == arg, kw
    from mtquery.generate.ray_cluster import RayOptions

    assert RayOptions("ray://head:10001").client and not RayOptions("head:6379").client
    assert not RayOptions().client  # this process has a Ray: no $RAY_ADDRESS lookup
    with pytest.raises(UsageError, match="engine='ray'") as e:
        generate(MODEL, [str(core)], str(tmp_path / "x"), address="auto")
    assert e.value.argument == "address"
    assert not (tmp_path / "x").exists()
    # an error on a worker (here: weights that do not exist) comes back as the library's
    # one-line error, not as Ray's wrapped traceback
    with pytest.raises(DataError, match="does not exist") as e:
        generate("ssl4eo-s2l1c", [str(core)], str(tmp_path / "w"), engine="ray",
                 weights=str(tmp_path / "missing.pth"))
    assert "\n" not in str(e.value) and "Traceback" not in str(e.value)


def test_unreachable_address_is_one_line(core, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the socket is
    env = dict(os.environ, MTQUERY_OFFLINE="1")
    env.pop(KILL_ENV, None)
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        r = subprocess.run(
            [sys.executable, "-c", "from mtquery.cli import main; main()", "generate", "-m",
             MODEL, "-i", str(core), "-o", str(tmp_path / "o"), "--engine", "ray",
             "--address", address, "--connect-timeout", "2"],
            capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert f"cannot reach the Ray cluster at {address}" in r.stderr
        assert "(--address)" in r.stderr
