#!/usr/bin/env python
"""Remote reads of a released-layout dataset served on 127.0.0.1 by a Range-capable HTTP
server (tests/rangeserver.py): bytes the server sent and wall seconds of each command (a fresh
``mtquery`` process each), beside reading the dataset whole.

The dataset is laid out like the release (tests/data/released/make_data.py: parts ordered by
latitude, large row groups, list<float>, GeoParquet 1.0.0-beta, no covering) under a mirror
of the Hub (``Major-TOM/Core-S2RGB-SigLIP/embeddings/``), so the catalog name ``siglip`` reads
it with $MTQUERY_HF_ENDPOINT pointing at the server.

    .venv/bin/python benchmarks/remote_bench.py [--rows 1000000] [--dim 128] [--parts 8]
        [--row-group-size 25000] [--data DIR] [--json FILE]
    .venv/bin/python benchmarks/remote_bench.py --serve DIR [--port 8765]   # the mirror only
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPO = "Major-TOM/Core-S2RGB-SigLIP"
sys.path.insert(0, str(ROOT / "tests"))

from rangeserver import RangeServer  # noqa: E402


def make_data_module():
    spec = importlib.util.spec_from_file_location(
        "released_make_data", ROOT / "tests" / "data" / "released" / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ensure_data(root: Path, rows: int, dim: int, parts: int, rg: int) -> list[Path]:
    folder = root / REPO / "embeddings"
    stamp = root / "params.json"
    want = {"rows": rows, "dim": dim, "parts": parts, "row_group_size": rg}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return sorted(folder.glob("*.parquet"))
    shutil.rmtree(root / REPO, ignore_errors=True)
    t0 = time.perf_counter()
    paths = make_data_module().write_release(root / REPO, rows, dim, parts, rg)
    stamp.write_text(json.dumps(want))
    print(f"wrote {rows:,} x {dim} in {len(paths)} parts in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    return paths


def a_point(paths: list[Path]) -> tuple[float, float]:
    import pyarrow.parquet as pq

    mid = paths[len(paths) // 2]
    t = pq.read_table(mid, columns=["centre_lat", "centre_lon"])
    row = t.num_rows // 3
    return float(t.column("centre_lat")[row].as_py()), float(t.column("centre_lon")[row].as_py())


def run(srv: RangeServer, args: list[str], env: dict) -> dict:
    srv.reset()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mtquery", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    secs = time.perf_counter() - t0
    return {"args": args, "code": proc.returncode, "seconds": round(secs, 2),
            "bytes": srv.bytes_sent, "stderr": proc.stderr.strip()[-300:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--row-group-size", type=int, default=25_000)
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / ".cache" / "remote")
    ap.add_argument("--box", type=float, default=0.4, help="side of the region, degrees")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--serve", type=Path, help="serve this mirror folder until Ctrl-C")
    ap.add_argument("--port", type=int, default=8765)
    a = ap.parse_args()
    if a.serve:
        paths = ensure_data(a.serve, a.rows, a.dim, a.parts, a.row_group_size)
        with RangeServer(a.serve, a.port) as srv:
            print(f"serving {len(paths)} parts of {REPO} at {srv.endpoint}; in another shell:\n"
                  f"  export MTQUERY_HF_ENDPOINT={srv.endpoint}\n  mtquery info siglip",
                  flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return
    paths = ensure_data(a.data, a.rows, a.dim, a.parts, a.row_group_size)
    size = sum(p.stat().st_size for p in paths)
    lat, lon = a_point(paths)
    h = a.box / 2
    box = f"{lon - h:.4f},{lat - h:.4f},{lon + h:.4f},{lat + h:.4f}"
    out = Path(tempfile.mkdtemp(prefix="remote-bench-"))
    with RangeServer(a.data) as srv:
        env = {**os.environ, "MTQUERY_HF_ENDPOINT": srv.endpoint, "MTQUERY_CACHE": "off"}
        point = ["--lat", f"{lat:.5f}", "--lon", f"{lon:.5f}"]
        cases = [
            ("info", ["info", "siglip"]),
            (f"search --bbox ({a.box:g} deg)", ["search", "-d", "siglip", "--bbox", box,
                                                 "--limit", "1000"]),
            (f"knn --lat --lon --bbox ({a.box:g} deg)", ["knn", "-d", "siglip", *point,
                                                          "--bbox", box]),
            (f"extract --bbox ({a.box:g} deg)", ["extract", "siglip", "--bbox", box, "-o",
                                                  str(out / "region"), "-q"]),
            ("knn --lat --lon (refused)", ["knn", "-d", "siglip", *point]),
            ("knn --lat --lon --allow-full-scan (whole)", ["knn", "-d", "siglip", *point,
                                                           "--allow-full-scan"]),
        ]
        results = []
        for label, args in cases:
            r = run(srv, args, env)
            r["label"] = label
            results.append(r)
            print(f"{label}: {r['bytes']:,} B ({100 * r['bytes'] / size:.2f} %) in "
                  f"{r['seconds']} s, exit {r['code']}", file=sys.stderr)
    shutil.rmtree(out, ignore_errors=True)
    print(f"\n{a.rows:,} rows x {a.dim} (list<float>), {len(paths)} parts, row groups of "
          f"{a.row_group_size:,}: {size / 1e6:,.1f} MB served on 127.0.0.1; "
          f"region {a.box:g} x {a.box:g} deg around lat {lat:.3f}, lon {lon:.3f}\n")
    print("| command | bytes sent | % of the dataset | seconds | exit |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| `{r['label']}` | {r['bytes']:,} | {100 * r['bytes'] / size:.2f} % | "
              f"{r['seconds']} | {r['code']} |")
    if a.json:
        a.json.write_text(json.dumps({"rows": a.rows, "dim": a.dim, "parts": len(paths),
                                      "row_group_size": a.row_group_size, "bytes": size,
                                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
