#!/usr/bin/env python
"""Seeded synthetic benchmark dataset in the standard schema: N x DIM CLUSTERED unit vectors
(land-cover types / sub-types / per-cell offsets / fragment noise in a low-rank latent space,
see mtquery/synth.py) on real Major TOM grid cells, rows in RANDOM order, 10k-row groups.

    python benchmarks/make_bench_data.py --rows 1000000 --dim 768 --out out/knn_bench/random.parquet
"""

from __future__ import annotations

import argparse
import time

from mtquery.synth import SynthSpec, write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out/knn_bench/random.parquet")
    a = ap.parse_args()
    t0 = time.perf_counter()
    path = write(a.out, SynthSpec(rows=a.rows, dim=a.dim, seed=a.seed))
    print(f"{path}: {a.rows:,} x {a.dim} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
