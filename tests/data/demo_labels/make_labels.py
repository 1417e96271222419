#!/usr/bin/env python
"""Derive the label file of the bundled demo dataset from the real Sentinel-2 pixels it was
embedded from (rule: ``auto`` = SCL majority land/water/cloud on the L2A tile, NDWI > 0 majority
water/land on the L1C scene; see mtquery/eval/derive_labels.py and docs/eval.md).

    python tests/data/demo_labels/make_labels.py [--dataset demo] [--output FILE]

Needs the shared real scenes (../shared/data); the result is small and shipped beside this file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mtquery.eval.derive_labels import derive

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # --embeddings / --out: the spellings of the previous release
    ap.add_argument("--dataset", "-d", "--embeddings", default="demo")
    ap.add_argument("--output", "-o", "--out", default=str(HERE / "demo_labels.parquet"))
    ap.add_argument("--rule", default="auto")
    ap.add_argument("--shared", default=str(HERE.parents[3] / "shared" / "data"),
                    help="the project's shared data folder holding the real scenes")
    a = ap.parse_args()
    shared = Path(a.shared)
    sources = [shared / "s2l1c_virginia_scene",
               shared / "s2l2a_T29RKH_cog_100m" / "S2A_29RKH_20200219_0_L2A"]
    print(derive(a.dataset, a.output, rule=a.rule, sources=sources))


if __name__ == "__main__":
    main()
