"""Network faults against a real local server (tests/rangeserver.py, ``flaky``): every 5th
request answered 500 (or 429), a body cut halfway, a 10 s stall mid-body. ``info``, a
region ``knn`` (DuckDB's httpfs reads) and ``extract`` (mtquery's own range reads) succeed
and equal a clean run; a stall past the timeout is one line naming the URL; Ctrl-C during
a stall ends the command within a second."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from clirun import run

from mtquery.io import http
from mtquery.io.remote import clear_footer_cache, read_range
from mtquery.io.staging import STAGING

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _short_timeout(monkeypatch):
    """A 2 s read timeout: the 10 s stall is cut short and tried again."""
    monkeypatch.setenv(http.ENV_TIMEOUT, "2")
    yield
    http.reset()


@pytest.fixture
def srv(release):
    server = release[0]
    server.steady()
    server.reset()
    yield server
    server.steady()


def region(release) -> list[str]:
    _, urls, paths = release
    t = pq.read_table(paths[1], columns=["centre_lat", "centre_lon"]).slice(500, 1)
    lat, lon = t.column("centre_lat")[0].as_py(), t.column("centre_lon")[0].as_py()
    return [f"{lon - 4},{lat - 4},{lon + 4},{lat + 4}", str(lat), str(lon)]


def commands(release, out: Path) -> dict[str, list[str]]:
    _, urls, _ = release
    ds = ",".join(urls)
    box, lat, lon = region(release)
    return {"info": ["info", ds, "--format", "json"],
            "knn": ["knn", "-d", ds, "--lat", lat, "--lon", lon, "--bbox", box, "-k", "20",
                    "--format", "csv"],
            "extract": ["extract", ds, "--bbox", box, "-o", str(out), "-q"]}


def extracted(out: Path) -> list:
    t = pq.read_table(out)
    return sorted(zip(t.column("unique_id").to_pylist(),
                      [v.as_py() for v in t.column("embedding")]))


@pytest.mark.parametrize("status", [500, 429])
def test_flaky_server_gives_the_clean_answers(release, srv, capsys, tmp_path, status):
    clean = {}
    for name, argv in commands(release, tmp_path / "clean").items():
        clear_footer_cache()
        code, out, err = run(capsys, *argv)
        assert code == 0, (name, err)
        clean[name] = out
    srv.flaky(fail_every=5, cuts=1, stalls=1, stall_s=10, status=status)
    for name, argv in commands(release, tmp_path / "flaky").items():
        clear_footer_cache()
        before = dict(srv.injected)
        code, out, err = run(capsys, *argv)
        assert code == 0, (name, err)
        assert out.replace(str(tmp_path / "flaky"), str(tmp_path / "clean")) == clean[name], (
            name)
        assert srv.injected["status"] > before["status"], (name, srv.injected)
    assert srv.injected["cut"] == 1 and srv.injected["stall"] == 1, srv.injected
    assert extracted(tmp_path / "flaky") == extracted(tmp_path / "clean")


def test_every_read_kind_is_retried(release, srv):
    """Footer (suffix), range and listing requests each through a 500, a cut, a stall."""
    _, urls, paths = release
    data = paths[0].read_bytes()
    srv.flaky(fail_every=2, cuts=1, stalls=1, stall_s=10)
    assert read_range(urls[0], None, 70_000)[0] == data[-70_000:]
    assert read_range(urls[0], 1000, 200_000, len(data))[0] == data[1000:201_000]
    from released import REPO

    from mtquery.io.remote import hf_list

    os.environ["MTQUERY_HF_ENDPOINT"] = srv.endpoint
    try:
        assert len(hf_list(f"hf://datasets/{REPO}/embeddings/*.parquet")) == len(urls)
    finally:
        del os.environ["MTQUERY_HF_ENDPOINT"]
    assert srv.injected["status"] >= 2 and srv.injected["cut"] == 1


def test_stall_past_the_timeout_names_the_url(release, srv, capsys, monkeypatch, tmp_path):
    _, urls, _ = release
    monkeypatch.setenv(http.ENV_TIMEOUT, "0.5")
    monkeypatch.setenv(http.ENV_RETRIES, "1")
    srv.flaky(fail_every=None, cuts=0, stalls=1000, stall_s=3)
    code, out, err = run(capsys, "info", urls[0])
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, err
    assert urls[0] in err and "within 0.5 s" in err, err
    # DuckDB's reads (the footers were fine, the row groups stall): the URL named as well
    srv.steady()
    box, lat, lon = region(release)
    run(capsys, "info", urls[1])
    monkeypatch.setenv(http.ENV_RETRIES, "0")
    srv.flaky(fail_every=None, cuts=0, stalls=1000, stall_s=20)
    code, out, err = run(capsys, "knn", "-d", urls[1], "--lat", lat, "--lon", lon,
                         "--bbox", box, "--allow-full-scan")
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, err
    assert urls[1] in err, err


def test_bad_settings_are_one_line(release, capsys, monkeypatch):
    _, urls, _ = release
    monkeypatch.setenv(http.ENV_RETRIES, "many")
    code, out, err = run(capsys, "info", urls[0])
    assert code == 2 and len(err.strip().splitlines()) == 1 and http.ENV_RETRIES in err, err


def test_retries_are_configurable(release, srv, monkeypatch):
    _, urls, _ = release
    srv.flaky(fail_every=1, cuts=0)  # every request fails
    monkeypatch.setenv(http.ENV_RETRIES, "2")
    with pytest.raises(Exception, match="HTTP 500") as info:
        read_range(urls[0], 0, 100)
    assert "3 tries" in str(info.value)
    assert srv.injected["status"] == 3


def _interrupted(argv: list[str], srv, out: Path | None) -> tuple[float, int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), http.ENV_TIMEOUT: "60"}
    proc = subprocess.Popen([sys.executable, "-m", "mtquery", *argv], cwd=out.parent if out
                            else None, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while srv.injected["stall"] == 0:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no stall reached"
        time.sleep(0.05)
    time.sleep(0.3)  # well inside the stalled read
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    return time.monotonic() - t0, proc.returncode, err


@pytest.mark.parametrize("command", ["extract", "knn"])
def test_ctrl_c_during_a_stall_ends_within_a_second(release, srv, capsys, tmp_path, command):
    _, urls, _ = release
    box, lat, lon = region(release)
    out = tmp_path / "region"
    if command == "extract":  # mtquery's own range reads stall
        argv = ["extract", ",".join(urls), "--bbox", box, "-o", str(out), "-q"]
        srv.flaky(fail_every=None, cuts=0, stalls=1000, stall_s=30, after=len(urls))
    else:  # DuckDB's reads stall (the footers come first, unharmed)
        argv = ["knn", "-d", ",".join(urls), "--lat", lat, "--lon", lon, "--bbox", box]
        srv.flaky(fail_every=None, cuts=0, stalls=1000, stall_s=30, after=len(urls))
    took, code, err = _interrupted(argv, srv, out)
    assert took < 1.0, (took, err)
    assert code == 130 and err.strip().splitlines() == ["mtquery: error: interrupted"], err
    assert not out.exists()
    if command == "extract":  # what the stopped run staged goes with the next run's sweep
        srv.steady()
        code, _, err = run(capsys, *argv)
        assert code == 0, err
        assert not (tmp_path / STAGING).exists()
