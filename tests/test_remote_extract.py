"""``mtquery extract`` from a released-layout dataset behind a Range-capable HTTP server:
bytes read, exactly the rows of the region, the optimised layout, atomic publication, and a
rerun after ``kill -9`` that resumes file by file without duplicating rows."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from mtquery.cli import main
from mtquery.io.cost import ReadRefused
from mtquery.io.extract import extract
from mtquery.io.staging import STAGING

ROOT = Path(__file__).resolve().parents[1]


def total(paths) -> int:
    return sum(p.stat().st_size for p in paths)


def expected_ids(paths, box: list[float], start: dt.datetime | None = None,
                 end: dt.datetime | None = None) -> list[str]:
    table = pa.concat_tables([pq.read_table(p, columns=["unique_id", "geometry", "timestamp"])
                              for p in paths])
    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    keep = shapely.intersects(geoms, shapely.box(*box))
    when = [dt.datetime.strptime(t, "%Y%m%dT%H%M%S") for t in
            table.column("timestamp").to_pylist()]
    if start is not None:
        keep &= np.array([w >= start for w in when])
    if end is not None:
        keep &= np.array([w < end for w in when])
    return sorted(np.asarray(table.column("unique_id").to_pylist(), dtype=object)[keep])


def output_ids(out: Path) -> list[str]:
    return sorted(pq.read_table(out, columns=["unique_id"]).column("unique_id").to_pylist())


def centre(paths, part: int, row: int) -> tuple[float, float]:
    t = pq.read_table(paths[part], columns=["centre_lat", "centre_lon"]).slice(row, 1)
    return float(t.column("centre_lat")[0].as_py()), float(t.column("centre_lon")[0].as_py())


def test_extract_small_box(release, tmp_path, capsys):
    srv, urls, paths = release
    lat, lon = centre(paths, 2, 3000)
    box = [lon - 0.5, lat - 0.5, lon + 0.5, lat + 0.5]
    out = tmp_path / "region"
    srv.reset()
    try:
        main(["extract", ",".join(urls), "--bbox", ",".join(map(str, box)), "--start",
              "2018-01-01", "--end", "2023-06-30", "-o", str(out), "-q"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    stdout = capsys.readouterr().out
    assert srv.bytes_sent <= 0.35 * total(paths), srv.bytes_sent / total(paths)
    want = expected_ids(paths, box, dt.datetime(2018, 1, 1), dt.datetime(2023, 7, 1))
    assert want and output_ids(out) == want  # exactly the region's rows, each once
    assert f"{len(want):,} rows -> {out}" in stdout
    manifest = json.loads((out / "_extract.json").read_text())
    assert manifest["rows"] == len(want) and manifest["bytes_read"] <= srv.bytes_sent
    # the optimised layout: bbox covering column, fixed-size vectors, GeoParquet 1.1
    f = sorted(out.glob("*.parquet"))[0]
    schema = pq.read_schema(f)
    assert "bbox" in schema.names and pa.types.is_fixed_size_list(schema.field("embedding").type)
    assert json.loads(schema.metadata[b"geo"])["columns"]["geometry"]["covering"]
    assert (out / "_optimize.json").is_file()
    assert not (tmp_path / STAGING).exists()


def test_extract_refused_above_budget_and_bad_output(release, tmp_path):
    srv, urls, paths = release
    srv.reset()
    with pytest.raises(ReadRefused) as err:
        extract(",".join(urls), tmp_path / "all")  # no filter: the whole dataset
    assert "extract would read" in str(err.value) and "extraction.extract" not in str(err.value)
    assert srv.bytes_sent <= 0.10 * total(paths)
    assert not (tmp_path / "all").exists() and not (tmp_path / STAGING).exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    code = 0
    try:
        main(["extract", ",".join(urls), "--bbox", "0,0,1,1", "-o", str(tmp_path / "taken")])
    except SystemExit as exc:
        code = exc.code
    assert code == 2


def test_extract_resumes_after_kill_9(release, tmp_path):
    """A run killed after its first source file is adopted by the next one, which fetches
    only the other files and writes every row once."""
    srv, urls, paths = release
    first = pq.read_table(paths[1], columns=["centre_lat"]).column("centre_lat")
    boundary = float(first[first.length() - 1].as_py())  # between parts 2 and 3
    box = [-180.0, boundary - 0.3, 180.0, boundary + 0.3]
    out = tmp_path / "band"
    script = textwrap.dedent(f"""
        import os, sys
        from mtquery.io.extract import extract
        def on_event(ev):
            if ev.message and "rows in the region" in ev.message:
                os.kill(os.getpid(), 9)   # right after the first source file is done
        extract({",".join(urls)!r}, {str(out)!r}, bbox={box!r}, allow_full_scan=True,
                progress=on_event)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    assert not out.exists()
    staged = list((tmp_path / STAGING).iterdir())
    assert len(staged) == 1 and len(list((staged[0] / "parts").glob("*.done"))) == 1
    done = json.loads(next((staged[0] / "parts").glob("*.done")).read_text())
    srv.reset()
    m = extract(",".join(urls), out, bbox=box, allow_full_scan=True)
    assert m["resumed"] and m["files_read"] == 2
    finished = done["source"].split("/", 3)[3]
    ranged = [r for p, r in srv.requests if p == "/" + finished and not r.startswith("bytes=-")]
    assert ranged == []  # the finished file's row groups were not fetched again
    assert output_ids(out) == expected_ids(paths, box)
    assert len(set(output_ids(out))) == m["rows"]
    assert not (tmp_path / STAGING).exists()


def test_extract_builds_the_index(release, tmp_path):
    pytest.importorskip("faiss")
    srv, urls, paths = release
    lat, lon = centre(paths, 1, 2500)
    box = [lon - 2, lat - 2, lon + 2, lat + 2]
    m = extract(",".join(urls), tmp_path / "idx", bbox=box, index=True)
    assert Path(m["index"]).is_dir() and Path(m["index"]).parent == (tmp_path / "idx").resolve()
