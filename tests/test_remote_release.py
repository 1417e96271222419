"""Released datasets over the network, against a real Range-capable HTTP server on 127.0.0.1
serving a fixture laid out like the release (tests/data/released/make_data.py: parts ordered
by latitude, big row groups, list<float>, GeoParquet 1.0.0-beta metadata, no covering).
Asserts the bytes the server sent, and answers equal to a brute force over the local files."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from clirun import run
from released import REPO

import mtquery
from mtquery.errors import DataError, UsageError
from mtquery.io import remote
from mtquery.io.cost import ReadRefused, current_budget, parse_max_read, read_budget
from mtquery.io.datasets import resolve


def total(paths) -> int:
    return sum(p.stat().st_size for p in paths)


def run_cli(args, capsys):
    return run(capsys, *args)


def sent(srv, fn):
    """(result, bytes the server sent for fn()), footers read afresh."""
    remote.clear_footer_cache()
    srv.reset()
    out = fn()
    return out, srv.bytes_sent


def local_table(paths) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in paths])


def a_point(paths, part: int = 2, row: int = 3000) -> tuple[float, float]:
    t = pq.read_table(paths[part], columns=["centre_lat", "centre_lon"]).slice(row, 1)
    return float(t.column("centre_lat")[0].as_py()), float(t.column("centre_lon")[0].as_py())


def box_around(lat: float, lon: float, d: float = 0.3) -> str:
    return f"{lon - d},{lat - d},{lon + d},{lat + d}"


def acquired(ts: str) -> dt.datetime:
    return dt.datetime.strptime(ts, "%Y%m%dT%H%M%S")


def brute_knn(table: pa.Table, lat: float, lon: float, bbox: str | None, k: int) -> list[str]:
    """The fragment covering the point (latest, then nearest centre, then id) and its k
    nearest among the fragments intersecting bbox, by cosine distance, over every row."""
    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    ids = table.column("unique_id").to_pylist()
    ts = table.column("timestamp").to_pylist()
    clat = table.column("centre_lat").to_numpy()
    clon = table.column("centre_lon").to_numpy()
    hit = np.flatnonzero(shapely.intersects(geoms, shapely.Point(lon, lat)))
    q = sorted(hit, key=lambda i: (-acquired(ts[i]).timestamp(),
                                   (clat[i] - lat) ** 2 + (clon[i] - lon) ** 2, ids[i]))[0]
    vec = np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(
        table.num_rows, -1)
    unit = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    dist = 1 - unit @ unit[q]
    keep = np.ones(table.num_rows, bool)
    if bbox:
        b = [float(v) for v in bbox.split(",")]
        keep = shapely.intersects(geoms, shapely.box(*b))
    keep[q] = False
    cand = np.flatnonzero(keep)
    return [ids[i] for i in cand[np.argsort(dist[cand], kind="stable")][:k]]


# ---------------------------------------------------------------- naming


def test_comma_list_of_urls_and_list_file(release, tmp_path):
    srv, urls, paths = release
    ds = resolve(",".join(urls))
    assert ds.remote and ds.sources == tuple(urls)
    listing = tmp_path / "parts.txt"
    listing.write_text("# the release\n\n" + "\n".join(urls[:2]) + "\n" + "local.parquet\n")
    (tmp_path / "local.parquet").write_bytes(paths[3].read_bytes())
    ds = resolve(f"@{listing}")
    assert ds.sources == (*urls[:2], str(tmp_path / "local.parquet")) and ds.remote
    assert resolve("http://h/a,b.parquet").sources == ("http://h/a,b.parquet",)  # one URL
    with pytest.raises(DataError, match="cannot read the list file"):
        resolve(f"@{tmp_path / 'missing.txt'}")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(UsageError, match="names no files"):
        resolve(f"@{tmp_path / 'empty.txt'}")


def test_catalog_name_and_hf_glob_through_a_mirror(release, monkeypatch):
    srv, urls, _ = release
    monkeypatch.setenv("MTQUERY_HF_ENDPOINT", srv.endpoint)
    ds = resolve("siglip")
    assert ds.remote and ds.entry.name == "siglip" and len(ds.sources) == 4
    assert all(s.startswith(f"{srv.endpoint}/datasets/{REPO}/resolve/main/embeddings/part_")
               for s in ds.sources)
    glob = resolve(f"hf://datasets/{REPO}/embeddings/part_000*.parquet")
    assert glob.sources == ds.sources[:2]  # part_00001-00050, part_00051-00100
    info = mtquery.info("siglip")  # the hub's resolve URLs redirect, as the Hub's do
    assert info["rows"] == 24_000 and info["files"] == 4 and info["dim"] == 64
    monkeypatch.delenv("MTQUERY_HF_ENDPOINT")
    assert resolve("siglip").sources == (f"hf://datasets/{REPO}/embeddings/*.parquet",)


# ---------------------------------------------------------------- footers first


def test_info_reads_footers_only(release, capsys):
    srv, urls, paths = release
    (code, out, err), n = sent(srv, lambda: run_cli(["info", ",".join(urls), "-f", "json"],
                                                    capsys))
    assert code == 0, err
    info = json.loads(out)
    assert n <= 0.05 * total(paths), n / total(paths)
    table = local_table(paths)
    lat = table.column("centre_lat").to_numpy()
    lon = table.column("centre_lon").to_numpy()
    assert info["rows"] == 24_000 and info["dim"] == 64 and info["files"] == 4
    assert info["bytes"] == total(paths) and info["row_groups"] == 12
    assert info["bbox"] == pytest.approx([lon.min(), lat.min(), lon.max(), lat.max()])
    ts = sorted(table.column("timestamp").to_pylist())
    assert info["start"] == acquired(ts[0]).isoformat()
    assert info["end"] == acquired(ts[-1]).isoformat()


def test_dry_run_prints_the_plan_and_reads_footers_only(release, capsys):
    srv, urls, paths = release
    lat, lon = a_point(paths)
    args = ["knn", "-d", ",".join(urls), "--lat", lat, "--lon", lon, "--bbox",
            box_around(lat, lon), "--dry-run", "-f", "json"]
    (code, out, err), n = sent(srv, lambda: run_cli(args, capsys))
    assert code == 0, err
    plan = json.loads(out)
    assert n <= 0.05 * total(paths)
    assert plan["files"] == 1 and 1 <= plan["row_groups"] <= 2
    assert plan["read"][0]["file"] == urls[2] and plan["dataset_bytes"] == total(paths)
    code, out, _ = run_cli(["search", "-d", ",".join(urls), "--bbox", box_around(lat, lon),
                            "--dry-run"], capsys)
    assert code == 0 and "search would read" in out and "part_00101-00150" in out
    code, out, _ = run_cli(["extract", ",".join(urls), "--bbox", box_around(lat, lon),
                            "--dry-run"], capsys)
    assert code == 0 and "extract would read" in out


# ---------------------------------------------------------------- prune through the grid


def test_region_knn_reads_the_region_and_equals_brute_force(release, capsys):
    srv, urls, paths = release
    lat, lon = a_point(paths)
    box = box_around(lat, lon)
    args = ["knn", "-d", ",".join(urls), "--lat", lat, "--lon", lon, "--bbox", box,
            "--k", 10, "-f", "json"]
    (code, out, err), n = sent(srv, lambda: run_cli(args, capsys))
    assert code == 0, err
    assert n <= 0.35 * total(paths), n / total(paths)
    got = [r["unique_id"] for r in json.loads(out)]
    assert got == brute_knn(local_table(paths), lat, lon, box, 10)
    api = mtquery.knn(",".join(urls), lat=lat, lon=lon, bbox=box, k=10)
    assert api.column("unique_id").to_pylist() == got


def test_point_without_fragment_is_one_line_and_reads_near_it_only(release, capsys):
    srv, urls, paths = release
    args = ["knn", "-d", ",".join(urls), "--lat", -50, "--lon", -140, "--bbox",
            "-141,-51,-139,-49"]
    (code, out, err), n = sent(srv, lambda: run_cli(args, capsys))
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "no fragment covers lat -50.0, lon -140.0" in err
    assert n <= 0.35 * total(paths), n / total(paths)


def test_region_search_equals_brute_force(release, capsys):
    srv, urls, paths = release
    lat, lon = a_point(paths, part=1, row=4000)
    box = box_around(lat, lon, 1.0)
    args = ["search", "-d", ",".join(urls), "--bbox", box, "--start", "2019-01-01",
            "--end", "2022-12-31", "--limit", 100000, "-f", "json"]
    (code, out, err), n = sent(srv, lambda: run_cli(args, capsys))
    assert code == 0, err
    assert n <= 0.35 * total(paths), n / total(paths)
    table = local_table(paths)
    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    b = [float(v) for v in box.split(",")]
    when = [acquired(t) for t in table.column("timestamp").to_pylist()]
    keep = shapely.intersects(geoms, shapely.box(*b)) & np.array(
        [dt.datetime(2019, 1, 1) <= w < dt.datetime(2023, 1, 1) for w in when])
    want = sorted(np.asarray(table.column("unique_id").to_pylist())[keep].tolist())
    assert want and sorted(r["unique_id"] for r in json.loads(out)) == want


# ---------------------------------------------------------------- cost first


def test_whole_dataset_knn_is_refused_before_reading(release, capsys):
    srv, urls, paths = release
    lat, lon = a_point(paths)
    args = ["knn", "-d", ",".join(urls), "--lat", lat, "--lon", lon, "--k", 5]
    (code, out, err), n = sent(srv, lambda: run_cli(args, capsys))
    assert code == 1 and out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    for hint in ("knn would read", "% of the dataset", "--bbox", "mtquery extract",
                 "--allow-full-scan", "--max-read", "24,000 rows"):
        assert hint in err, hint
    assert n <= 0.10 * total(paths), n / total(paths)
    (code, out, err), n = sent(srv, lambda: run_cli(args + ["--max-read", "2kB"], capsys))
    assert code == 1 and "limit of 2.0 kB" in err
    code, out, err = run_cli(args + ["--max-read", "lots"], capsys)
    assert code == 2 and "--max-read" in err


def test_allow_full_scan_reads_and_equals_brute_force(release, capsys):
    srv, urls, paths = release
    lat, lon = a_point(paths, part=0, row=100)
    code, out, err = run_cli(["knn", "-d", ",".join(urls), "--lat", lat, "--lon", lon,
                              "--k", 5, "--allow-full-scan", "-f", "json"], capsys)
    assert code == 0, err
    assert [r["unique_id"] for r in json.loads(out)] == brute_knn(
        local_table(paths), lat, lon, None, 5)
    code, _, err = run_cli(["knn", "-d", ",".join(urls), "--lat", lat, "--lon", lon,
                            "--k", 5, "--max-read", "100%", "-f", "json"], capsys)
    assert code == 0, err


def test_library_guard_and_budget(release):
    srv, urls, paths = release
    lat, lon = a_point(paths)
    with pytest.raises(ReadRefused) as err:
        mtquery.knn(",".join(urls), lat=lat, lon=lon, k=3)
    assert err.value.argument == "max_read" and "--" not in str(err.value)
    assert "read_budget" in str(err.value)
    with read_budget(allow_full_scan=True):
        assert mtquery.knn(",".join(urls), lat=lat, lon=lon, k=3).num_rows == 3
    assert parse_max_read("25%").max_share == 0.25
    assert parse_max_read("2GB").max_bytes == 2_000_000_000
    assert parse_max_read("1GiB").max_bytes == 1 << 30
    with pytest.raises(UsageError):
        parse_max_read("5 parsecs")


def test_a_commands_budget_ends_with_it(release, capsys):
    """The CLI runs each command in its own context: --allow-full-scan of one command does
    not carry over to the next command or to library calls in the same process."""
    _, urls, _ = release
    code, _, err = run_cli(["info", ",".join(urls), "-f", "json"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["search", "-d", ",".join(urls), "--limit", "5", "-f", "json",
                            "--allow-full-scan"], capsys)
    assert code == 0, err
    assert current_budget().allow_full_scan is False
