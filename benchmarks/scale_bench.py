"""Index build and query at release scale (issue 23): 1M, 2M, 4M (8M) rows x 768 of two
synthetic distributions, mtquery's ``index build`` next to plain faiss IVF-RaBitQ + refine on
the same rows in the same run.

Data: ``mtquery.synth`` files of 250k rows (``part-NNN.parquet`` per distribution, reused when
present; vectors rounded to float16 precision and stored as float32, so zstd halves them and
Parquet decodes them at float32 speed). A size of S million rows is the first 4S files.

Per size and distribution:

- ``mtquery index build`` in a child process (defaults): stage seconds from its manifest,
  wall and CPU seconds of the child, peak anonymous memory (``RssAnon`` sampled every 0.1 s:
  the memory-mapped store's page cache is not counted), disk of the index;
- queries: 300 held-out vectors of the same distribution (not rows of the data), one at a
  time on one thread after 30 warm-up queries: recall@10 against the exact top-10 over the
  float32 Parquet vectors (one batched pass), p50 / p99 wall ms and mean CPU ms a query;
- faiss baseline (up to ``--faiss-max`` million rows): ``IndexIVFRaBitQ`` with the same nlist
  and bits, faiss' own k-means (``cp.niter`` 10, 128 x nlist rows) and ``add`` from the
  index's memory-mapped store (reading the Parquet files into that store is not counted for
  it), searched at mtquery's calibrated nprobe and rerank depth with the refine read from
  the same store.

The extrapolation to the released sets (20M x 1152, 56M x 768) scales the largest measured
size's seconds per row linearly in rows x dim (labelled as an extrapolation).

    python benchmarks/scale_bench.py [--sizes 1,2,4] [--dists isotropic,lowrank]
        [--data DIR] [--work DIR] [--faiss-max 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PART_ROWS = 250_000
DIM = 768
K = 10
QUERIES = 300
WARM = 30


# ---------------------------------------------------------------- data


def write_part(path: Path, dist: str, part: int, rows: int = PART_ROWS) -> None:
    """One file of the seeded synthetic dataset (same vector model for every part)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mtquery.standard.schema import arrow_schema
    from mtquery.synth import SynthSpec, VectorModel, metadata

    spec = SynthSpec(rows=rows, dim=DIM, seed=0, types=64, distribution=dist)
    meta = metadata(replace(spec, seed=100 + part))
    meta = meta.take(np.random.default_rng(part).permutation(meta.num_rows))
    model = VectorModel(spec)
    rng = np.random.default_rng(7 + part)
    schema = arrow_schema(DIM)
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
        for lo in range(0, meta.num_rows, 100_000):
            p = meta.slice(lo, 100_000)
            v = model.vectors(p, rng).astype(np.float16).astype(np.float32)
            emb = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), DIM)
            cols = {n: (emb if n == "embedding" else p.column(n)) for n in schema.names}
            w.write_table(pa.table(cols, schema=schema), row_group_size=10_000)
    tmp.rename(path)


def queries(dist: str, n: int) -> np.ndarray:
    """Held-out unit queries of the distribution (a part number no file uses)."""
    from mtquery.synth import SynthSpec, VectorModel, metadata

    spec = SynthSpec(rows=n, dim=DIM, seed=0, types=64, distribution=dist)
    return VectorModel(spec).vectors(metadata(replace(spec, seed=99_999)),
                                     np.random.default_rng(99_999))


def dataset(data: Path, dist: str, millions: float) -> Path:
    """A folder of links to the first parts (generated when missing)."""
    src = data / dist
    src.mkdir(parents=True, exist_ok=True)
    n = int(round(millions * 1_000_000 / PART_ROWS))
    d = data / f"{dist}-{millions:g}M"
    d.mkdir(exist_ok=True)
    for i in range(n):
        f = src / f"part-{i:03d}.parquet"
        if not f.exists():
            t0 = time.perf_counter()
            write_part(f, dist, i)
            print(f"  wrote {f} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        link = d / f.name
        if not link.exists():
            link.symlink_to(f)
    return d


def exact_truth(files: list[Path], q: np.ndarray) -> np.ndarray:
    """Exact top-k row ids over the float32 Parquet vectors: one batched pass."""
    from mtquery.vectors.chunks import Truth, plan_units, read_unit
    from mtquery.vectors.store import fingerprint, unit_rows

    truth = Truth(q, K)
    for u in plan_units(fingerprint(files), chunk_rows=262_144):
        truth.merge(unit_rows(read_unit(u, columns=False)[0]), u.first)
    return truth.ids


# ---------------------------------------------------------------- measuring


def run_build(data: Path, out: Path, extra: list[str] | None = None) -> dict:
    """``mtquery index build`` in a child: wall, CPU, peak RssAnon (MB)."""
    shutil.rmtree(out, ignore_errors=True)
    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mtquery", "index", "build", str(data),
                             "-o", str(out), "-q", *(extra or [])], cwd=ROOT,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("RssAnon:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.1)

    th = threading.Thread(target=sample)
    th.start()
    _, err = proc.communicate()
    th.join()
    wall = time.perf_counter() - t0
    after = os.times()
    if proc.returncode:
        raise SystemExit(f"index build failed: {err.strip()[-400:]}")
    m = json.loads((out / "manifest.json").read_text())
    disk = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {"wall_s": wall, "cpu_s": (after.children_user - before.children_user)
            + (after.children_system - before.children_system),
            "peak_anon_mb": peak[0] / 1024, "disk_gb": disk / 1e9, "manifest": m}


def measure_queries(search, q: np.ndarray, truth: np.ndarray) -> dict:
    for v in q[:WARM]:
        search(v)
    times, hits = [], 0
    c0 = time.process_time()
    for v, t in zip(q, truth, strict=True):
        t0 = time.perf_counter()
        ids = search(v)
        times.append(time.perf_counter() - t0)
        hits += len(set(np.asarray(ids).tolist()) & set(t.tolist()))
    cpu = (time.process_time() - c0) / len(q)
    return {"recall": hits / (len(q) * K), "p50_ms": float(np.median(times) * 1e3),
            "p99_ms": float(np.percentile(times, 99) * 1e3), "cpu_ms": cpu * 1e3}


def faiss_baseline(index_dir: Path, m: dict) -> tuple[dict, object]:
    """Plain faiss IVF-RaBitQ: own k-means and add from the store; returns (timings, index)."""
    from mtquery.vectors.index import faiss_module, load_index

    faiss = faiss_module()
    faiss.omp_set_num_threads(2)
    store = load_index(index_dir).store
    x = store.matrix()
    n, nlist = store.n, int(m["nlist"])
    t0 = time.perf_counter()
    c0 = time.process_time()
    ivf = faiss.IndexIVFRaBitQ(faiss.IndexFlatL2(DIM), DIM, nlist, faiss.METRIC_L2, True,
                               int(m["bits"]))
    ivf.cp.niter = 10
    ids = np.sort(np.random.default_rng(0).choice(n, min(n, 128 * nlist), replace=False))
    ivf.train(np.nan_to_num(np.asarray(x[ids], dtype=np.float32)))
    train = time.perf_counter() - t0
    for lo in range(0, n, 65_536):
        ivf.add(np.nan_to_num(np.asarray(x[lo:lo + 65_536], dtype=np.float32)))
    total = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    return {"train_s": train, "add_s": total - train, "total_s": total,
            "cpu_s": time.process_time() - c0}, ivf


def refine_search(ivf, store, nprobe: int, depth: int):
    from mtquery.vectors.index import faiss_module

    faiss = faiss_module()
    ps = faiss.IVFRaBitQSearchParameters()
    ps.nprobe, ps.qb = nprobe, 8
    x = store.matrix()

    def search(v: np.ndarray) -> np.ndarray:
        _, c = ivf.search(v[None, :], depth, params=ps)
        c = np.unique(c[0][c[0] >= 0])
        s = np.einsum("ij,j->i", np.asarray(x[c], dtype=np.float32), v)
        return c[np.argsort(-s)[:K]]

    return search


# ---------------------------------------------------------------- report


def row_of(dist: str, size: float, b: dict | None, qm: dict, fb: dict | None) -> dict:
    r = {"dist": dist, "rows_m": size, "recall": qm["recall"], "p50_ms": qm["p50_ms"],
         "p99_ms": qm["p99_ms"], "cpu_ms": qm["cpu_ms"]}
    if b is not None:
        m = b["manifest"]
        r.update({k: m["build"].get(k) for k in ("sample_s", "train_s", "pass_s",
                                                 "assemble_s", "calibrate_s", "total_s")})
        r.update(wall_s=b["wall_s"], cpu_s=b["cpu_s"], s_per_m=b["wall_s"] / size,
                 peak_anon_mb=b["peak_anon_mb"], disk_gb=b["disk_gb"], nlist=m["nlist"],
                 nprobe=m["nprobe"], rerank=m["rerank"], resident_mb=m["resident_bytes"] / 1e6,
                 store=m["sidecar_dtype"], imbalance=m.get("lists", {}).get("imbalance"))
    if fb is not None:
        r.update(fb)
    return r


def table(rows: list[dict]) -> str:
    head = ("engine", "data", "rows", "sample", "train", "pass", "assemble", "calibrate",
            "total s", "wall s", "s/M", "CPU s", "peak anon MB", "disk GB", "nlist/nprobe/"
            "rerank", "recall@10", "p50 ms", "p99 ms", "CPU ms/q")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    for r in rows:
        out.append("| " + " | ".join([
            r["engine"], r["dist"], f"{r['rows_m']:g}M", f(r.get("sample_s")),
            f(r.get("train_s")), f(r.get("pass_s") or r.get("add_s")), f(r.get("assemble_s")),
            f(r.get("calibrate_s")), f(r.get("total_s")), f(r.get("wall_s")),
            f(r.get("s_per_m")), f(r.get("cpu_s")), f(r.get("peak_anon_mb"), 0),
            f(r.get("disk_gb"), 2), f"{r.get('nlist')}/{r.get('nprobe')}/{r.get('rerank')}",
            f(r["recall"], 3), f(r["p50_ms"], 2), f(r["p99_ms"], 2), f(r["cpu_ms"], 2)]) + " |")
    return "\n".join(out)


def extrapolate(rows: list[dict]) -> str:
    """Linear in rows x dim from the largest measured mtquery row of each distribution."""
    lines = ["| EXTRAPOLATED from | set | build (2 cores) | resident codes | store on disk "
             "(float16) |", "|---|---|---|---|---|"]
    for dist in sorted({r["dist"] for r in rows}):
        ours = [r for r in rows if r["dist"] == dist and r["engine"].startswith("mtquery")]
        if not ours:
            continue
        big = max(ours, key=lambda r: r["rows_m"])
        per_row_s = big["wall_s"] / (big["rows_m"] * 1e6 * DIM)
        for name, n, d in (("SigLIP 20.2M x 1152", 20.2e6, 1152), ("56.1M x 768", 56.1e6, 768)):
            code = d / 8 + 8 + 8  # 1-bit codes + RaBitQ factors + row id
            lines.append(f"| {dist} {big['rows_m']:g}M | {name} | {per_row_s * n * d / 60:.0f}"
                         f" min | {n * code / 1e9:.1f} GB | {n * d * 2 / 1e9:.0f} GB |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,2,4", help="millions of rows, comma separated")
    ap.add_argument("--dists", default="isotropic,lowrank")
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / ".cache" / "scale")
    ap.add_argument("--work", type=Path, default=None, help="indexes (default: DATA/idx)")
    ap.add_argument("--faiss-max", type=float, default=2.0, help="largest size (M) for the "
                    "faiss baseline (its flat assignment costs ~8x mtquery's)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--build-args", default="", help="extra 'index build' options, e.g. "
                    "'--bits 2' (named in the engine column)")
    args = ap.parse_args(argv)
    work = args.work or args.data / "idx"
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    from mtquery.vectors.index import faiss_module, load_index

    faiss_module().omp_set_num_threads(1)
    for dist in args.dists.split(","):
        q = queries(dist, QUERIES)
        for size in [float(s) for s in args.sizes.split(",")]:
            print(f"{dist} {size:g}M", file=sys.stderr)
            d = dataset(args.data, dist, size)
            files = sorted(d.glob("*.parquet"))
            truth = exact_truth(files, q)
            out = work / f"{dist}-{size:g}M.mtindex"
            b = run_build(d, out, args.build_args.split())
            idx = load_index(out)
            qm = measure_queries(lambda v, idx=idx: idx.search(v, K)[0], q, truth)
            engine = f"mtquery {args.build_args}".strip()
            rows.append({"engine": engine, **row_of(dist, size, b, qm, None)})
            print(table(rows[-1:]), file=sys.stderr)
            if size <= args.faiss_max:
                m = b["manifest"]
                fb, ivf = faiss_baseline(out, m)
                search = refine_search(ivf, idx.store, int(m["nprobe"]), int(m["rerank"]))
                qf = measure_queries(search, q, truth)
                rows.append({"engine": "faiss IVF-RaBitQ + refine", **row_of(
                    dist, size, None, qf, {**fb, "wall_s": fb["total_s"],
                                           "s_per_m": fb["total_s"] / size,
                                           "nlist": m["nlist"], "nprobe": m["nprobe"],
                                           "rerank": m["rerank"]})})
                print(table(rows[-1:]), file=sys.stderr)
                del ivf
            del idx
    print(table(rows))
    print()
    print(extrapolate(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
