"""Bad remote input: an unreachable host, a 404 part, a file truncated mid-way, a server
without Range support, a connection that drops, a file of another schema. Each is one line
on stderr, a non-zero exit, no traceback and no output (nor staging) left behind."""

from __future__ import annotations

import socket

import pyarrow.parquet as pq
import pytest
from clirun import run
from rangeserver import RangeServer
from released import make_data

from mtquery.io import remote
from mtquery.io.staging import STAGING


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    paths = make_data.write_release(root / "rel", rows=6_000, dim=16, parts=2,
                                    row_group_size=1_000)
    data = paths[0].read_bytes()
    (root / "truncated.parquet").write_bytes(data[: len(data) // 2])
    table = pq.read_table(paths[0])
    pq.write_table(table.drop_columns(["embedding"]), root / "no_embedding.parquet")
    other = make_data.write_release(root / "other", rows=3_000, dim=8, parts=1,
                                    row_group_size=1_000)
    with RangeServer(root) as srv:
        yield srv, root, [srv.url(f"rel/embeddings/{p.name}") for p in paths], other


def run_cli(args, capsys):
    return run(capsys, *args)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


COMMANDS = [
    ["info", "{ds}"],
    ["search", "-d", "{ds}", "--bbox", "-180,-90,180,90", "--allow-full-scan"],
    ["knn", "-d", "{ds}", "--lat", "10", "--lon", "10", "--bbox", "9,9,11,11"],
    ["extract", "{ds}", "--bbox", "9,9,11,11", "-o", "{out}"],
]


def check_fails(capsys, tmp_path, ds: str, *expected: str) -> None:
    for cmd in COMMANDS:
        out_dir = tmp_path / f"out-{cmd[0]}"
        args = [a.format(ds=ds, out=out_dir) for a in cmd]
        code, out, err = run_cli(args, capsys)
        assert code == 1, (cmd, err)
        assert out == "" and "Traceback" not in err, (cmd, err)
        assert len(err.strip().splitlines()) == 1, (cmd, err)
        assert any(e in err for e in expected), (cmd, err)
        assert not out_dir.exists() and not (tmp_path / STAGING).exists(), cmd


def test_unreachable_host(capsys, tmp_path):
    port = closed_port()
    check_fails(capsys, tmp_path, f"http://127.0.0.1:{port}/a.parquet",
                f"cannot reach 127.0.0.1:{port}: connection refused")


def test_missing_part(site, capsys, tmp_path):
    srv, root, urls, _ = site
    ds = ",".join([urls[0], srv.url("rel/embeddings/part_99999-99999.parquet")])
    check_fails(capsys, tmp_path, ds, "not found (HTTP 404)")


def test_truncated_file(site, capsys, tmp_path):
    srv, root, urls, _ = site
    check_fails(capsys, tmp_path, ",".join([urls[0], srv.url("truncated.parquet")]),
                "truncated")


def test_server_without_range_support(site, capsys, tmp_path):
    srv, root, urls, _ = site
    srv.no_range = True
    try:
        check_fails(capsys, tmp_path, ",".join(urls), "does not support HTTP range requests")
    finally:
        srv.no_range = False


def test_other_schema(site, capsys, tmp_path):
    srv, root, urls, other = site
    check_fails(capsys, tmp_path, ",".join([urls[0], srv.url("no_embedding.parquet")]),
                "missing standard column(s): embedding")
    other_url = srv.url(f"other/embeddings/{other[0].name}")
    check_fails(capsys, tmp_path, ",".join([urls[0], other_url]),
                "embeddings of 8 values, but")


def test_connection_dropped_while_extracting(site, capsys, tmp_path):
    srv, root, urls, _ = site
    out = tmp_path / "region"
    remote.read_footers(urls)  # footers are fine; the row group fetch breaks
    srv.cut_after = 1000
    try:
        code, stdout, err = run_cli(["extract", ",".join(urls), "--bbox", "-180,-90,180,90",
                                     "--allow-full-scan", "-o", out, "-q"], capsys)
    finally:
        srv.cut_after = None
    assert code == 1 and stdout == "" and len(err.strip().splitlines()) == 1
    assert "ended after" in err or "connection lost" in err, err
    assert not out.exists() and not (tmp_path / STAGING).exists()
