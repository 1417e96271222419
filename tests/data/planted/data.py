#!/usr/bin/env python
"""A seeded dataset with one land-cover type planted in known grid cells, for ``classify``.

Rows, places and the other vectors are ``mtquery.synth`` (real Core cells, 5 x 5 fragments an
acquisition, 1-4 acquisitions a cell, clustered low-rank vectors of 48 types). In a seeded
share of the cells (``PLANTED_SHARE``) every fragment of every acquisition is drawn from one
extra type instead: a new type centre in the same latent space, with the same sub-type
spread, per-cell offset, per-fragment and isotropic noise as every other type.

    python tests/data/planted/data.py OUT.parquet [--rows 20000] [--dim 64] [--seed 0]

prints the planted cells. ``write`` returns (path, planted cell names).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtquery.standard.schema import arrow_schema, embedding_array
from mtquery.synth import SynthSpec, VectorModel, metadata

PLANTED_SHARE = 0.15
#: the planted type's centre, in units of the other types' centre scale: a distinct land
#: cover (water, greenhouses, solar farms) stands further from the mixture than an average type
PLANTED_SCALE = 2.0


def planted_vectors(model: VectorModel, n: int, cells: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """``n`` vectors of the planted type, drawn as ``VectorModel`` draws any type."""
    s = model.spec
    centre = PLANTED_SCALE * np.random.default_rng(s.seed + 99).normal(
        size=s.latent).astype(np.float32)
    subs = 0.6 * np.random.default_rng(s.seed + 98).normal(
        size=(s.subtypes, s.latent)).astype(np.float32)
    z = centre + subs[rng.integers(0, s.subtypes, n)]
    cell_rng = (cells * 2654435761) % (2**32)
    z[:, :8] += 0.4 * np.stack([np.sin(cell_rng * (i + 1) * 1e-3) for i in range(8)],
                               1).astype(np.float32)
    z += s.frag_noise * rng.normal(size=z.shape).astype(np.float32)
    x = z @ model.proj
    x += (s.iso_noise * np.sqrt(s.latent / s.dim) * np.linalg.norm(z, axis=1, keepdims=True)
          * rng.normal(size=x.shape).astype(np.float32) / np.sqrt(s.latent))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_table(rows: int = 20_000, dim: int = 64, seed: int = 0) -> tuple[pa.Table, list[str]]:
    spec = SynthSpec(rows=rows, dim=dim, seed=seed, latent=min(96, max(8, dim // 2)))
    meta = metadata(spec)
    model = VectorModel(spec)
    rng = np.random.default_rng(seed + 3)
    vec = model.vectors(meta, rng)
    names = np.unique(np.asarray(meta.column("grid_cell").to_pylist(), dtype=object))
    pick = np.random.default_rng(seed + 5).random(len(names)) < PLANTED_SHARE
    planted = sorted(names[pick].tolist())
    mask = np.asarray(pc.is_in(meta.column("grid_cell"), pa.array(planted)))
    cells = (meta.column("grid_row_u").to_numpy().astype(np.int64) * 100_003
             + meta.column("grid_col_r").to_numpy().astype(np.int64))
    vec[mask] = planted_vectors(model, int(mask.sum()), cells[mask], rng)
    schema = arrow_schema(dim)
    cols = {name: (embedding_array(vec) if name == "embedding" else meta.column(name))
            for name in schema.names}
    return pa.table(cols, schema=schema), planted


def write(path: str | Path, rows: int = 20_000, dim: int = 64, seed: int = 0,
          row_group_size: int = 5_000) -> tuple[Path, list[str]]:
    table, planted = make_table(rows, dim, seed)
    path = Path(path)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path, planted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output")
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    path, planted = write(a.output, a.rows, a.dim, a.seed)
    print(f"{path}: {len(planted)} planted cells")
    print("\n".join(planted))


if __name__ == "__main__":
    main()
