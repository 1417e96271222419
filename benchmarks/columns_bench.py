#!/usr/bin/env python
"""Column roles (issue 22): what detection and derivation cost, measured in one run.

1. A standard dataset pays nothing: a cold one-shot ``mtquery knn --lat --lon`` on the demo,
   and queries on a 1M-row standard dataset (open + bbox search, knn by point with a warm
   vector cache, info), this checkout against a commit before column roles (default
   7f206f2), each version in its own process on the same files.
2. Two kinds of data: the same 1M vectors and places written as another project would
   (points, ``id``, ``emb``, ``date``; no standard column), queried by this checkout: the
   cost of deriving centres, grid cells and ids in the views.

    .venv/bin/python benchmarks/columns_bench.py [--rows 1000000] [--dim 32] [--runs 3]
        [--rounds 3]

The machine is shared: the versions run in alternation, ``--rounds`` times (``--runs`` each),
and the table gives the median and the minimum of all runs with their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cold_start import NEUTRAL, env_for, install_ref, wall  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"

#: one process per version: time the queries on a dataset (argv: path, runs)
PROBE = r"""
import json, statistics, sys, time
import mtquery
path, runs = sys.argv[1], int(sys.argv[2])
def t(fn):
    fn()  # warm (the first knn builds the vector cache)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter(); fn(); out.append((time.perf_counter() - t0) * 1000)
    return out
row = mtquery.search(path, limit=1).to_pylist()[0]
lat, lon = row["centre_lat"], row["centre_lon"]
box = (lon - 1, lat - 1, lon + 1, lat + 1)
print(json.dumps({
    "search 2x2 deg (ms)": t(lambda: mtquery.search(path, bbox=box, limit=100000)),
    "knn by point, k=10 (ms)": t(lambda: mtquery.knn(path, lat=lat, lon=lon, k=10)),
    "info (ms)": t(lambda: mtquery.info(path)),
}))
"""


def make_data(rows: int, dim: int) -> tuple[Path, Path]:
    """A standard synthetic dataset and the same rows in another shape (points + id)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely

    from mtquery.synth import SynthSpec, write

    std = CACHE / f"columns_std_{rows}x{dim}.parquet"
    other = CACHE / f"columns_points_{rows}x{dim}.parquet"
    CACHE.mkdir(parents=True, exist_ok=True)
    if not std.is_file():
        write(std, SynthSpec(rows=rows, dim=dim, seed=0))
    if not other.is_file():
        pf = pq.ParquetFile(std)
        tmp = other.with_suffix(".tmp")
        geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {
            "encoding": "WKB", "geometry_types": ["Point"]}}}  # GeoParquet, as Earth Index
        with pq.ParquetWriter(tmp, pa.schema([
                ("id", pa.string()), ("emb", pa.list_(pa.float32())),
                ("date", pa.string()), ("geometry", pa.binary())],
                metadata={b"geo": json.dumps(geo).encode()}), compression="zstd") as w:
            for b in pf.iter_batches(batch_size=100_000, columns=[
                    "unique_id", "embedding", "timestamp", "centre_lat", "centre_lon"]):
                lat = np.asarray(b.column("centre_lat"), np.float64)
                lon = np.asarray(b.column("centre_lon"), np.float64)
                emb = b.column("embedding")
                w.write_table(pa.table({
                    "id": b.column("unique_id"),
                    "emb": pa.ListArray.from_arrays(
                        pa.array(np.arange(0, len(b) * dim + 1, dim, dtype=np.int32)),
                        emb.flatten()),
                    "date": b.column("timestamp"),
                    "geometry": pa.array(shapely.to_wkb(shapely.points(lon, lat)))}),
                    row_group_size=10_000)
        os.replace(tmp, other)
    return std, other


def probe(env: dict, path: Path, runs: int) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path), str(runs)], env=env,
                         check=True, capture_output=True, text=True, cwd=NEUTRAL)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="7f206f2")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    old = install_ref(a.ref)
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(Path(__file__).resolve()
                    .parents[1] / d) for d in ("mtquery", "generate", "eval", "sql"))],
                   check=True)
    std, other = make_data(a.rows, a.dim)
    cold: dict[str, list[float]] = {"before": [], "after": [], "before_cpu": [],
                                    "after_cpu": []}
    q: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}, "other": {}}
    with tempfile.TemporaryDirectory() as c1, tempfile.TemporaryDirectory() as c2:
        before, after = env_for(old, Path(c1)), env_for(None, Path(c2))
        for _ in range(a.rounds):  # alternate: a load change hits both versions alike
            for name, env in (("before", before), ("after", after)):
                w, c = wall(env, a.runs)
                cold[name] += w
                cold[name + "_cpu"] += c
            for name, env, path in (("before", before, std), ("after", after, std),
                                    ("other", after, other)):
                for key, vals in probe(env, path, a.runs).items():
                    q[name].setdefault(key, []).extend(vals)
    n = a.rounds * a.runs
    print(f"\n{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {n} runs each "
          f"({a.rounds} alternating rounds); before = {a.ref}, after = this checkout\n")
    head = (f"{'measure':48s} {'before':>8s} {'after':>8s} {'ratio':>6s} {'min b':>8s} "
            f"{'min a':>8s} {'ratio':>6s}")
    print(head)
    rows = [("cold knn --lat --lon on demo, wall (ms)", [x * 1000 for x in cold["before"]],
             [x * 1000 for x in cold["after"]]),
            ("cold knn --lat --lon on demo, CPU (ms)", [x * 1000 for x in cold["before_cpu"]],
             [x * 1000 for x in cold["after_cpu"]])]
    rows += [(f"standard {a.rows:,} x {a.dim}: {key}", q["before"][key], q["after"][key])
             for key in q["before"]]
    for what, b, f in rows:
        _row(what, b, f)
    print(f"\nthe same rows in another shape (GeoParquet points, id, emb, date), this "
          f"checkout\n\n{head.replace('before', 'standard').replace(' after', 'points')}")
    for key in q["after"]:
        _row(key, q["after"][key], q["other"][key])


def _row(what: str, b: list[float], f: list[float]) -> None:
    mb, mf = statistics.median(b), statistics.median(f)
    print(f"{what:48s} {mb:8.1f} {mf:8.1f} {mf / mb:5.2f}x {min(b):8.1f} {min(f):8.1f} "
          f"{min(f) / min(b):5.2f}x")

if __name__ == "__main__":
    main()
