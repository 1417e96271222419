"""Scale commands: ``optimize`` (pruning layout) and ``index build`` / ``index info``
(approximate kNN index). Heavy imports (faiss) stay inside the commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from mtquery.cli.common import BBoxOpt, CellOpt, EndOpt, StartOpt
from mtquery.errors import UsageError

index_app = typer.Typer(name="index", help="Approximate nearest-neighbour index of a dataset "
                        "(used by 'mtquery knn' when present).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("optimize")(optimize)
    app.add_typer(index_app, name="index")


def _say(quiet: bool):
    def say(msg: str) -> None:
        if not quiet:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()
    return say


def optimize(
    inputs: Annotated[list[str], typer.Argument(help="Input files, directories or globs.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="New directory for the "
                                                "optimised dataset (must not exist or be "
                                                "empty).", file_okay=False)] = None,
    row_group_size: Annotated[int, typer.Option(help="Rows per row group.")] = 10_000,
    rows_per_file: Annotated[int | None, typer.Option(help="Split the output into files of "
                                                      "at most this many rows (Hilbert "
                                                      "ranges).")] = None,
    float16: Annotated[bool, typer.Option("--float16", help="Store the vector as float16 "
                                          "(half the bytes).")] = False,
    memory_limit: Annotated[str, typer.Option(help="DuckDB memory limit for the sort; "
                                              "beyond it, it spills to disk.")] = "2GB",
    threads: Annotated[int | None, typer.Option(help="DuckDB threads.")] = None,
    validate: Annotated[bool, typer.Option("--validate/--no-validate", help="Validate the "
                                           "output before publishing it.")] = True,
    explain: Annotated[bool, typer.Option("--explain", help="Print DuckDB's EXPLAIN ANALYZE "
                                          "of a search (--bbox/--start/--end/--cell) with the "
                                          "row groups kept, on the input (and the output).")
                       ] = False,
    bbox: BBoxOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    cell: CellOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Rewrite a dataset sorted by Hilbert curve (fragment centre) then time, with 10k-row row
    groups, a GeoParquet 1.1 bbox covering column, fixed-size float32 vectors and zstd."""
    from mtquery.optimize import explain as run_explain
    from mtquery.optimize import optimize as run_optimize
    from mtquery.params import parse_bbox, parse_time_range
    from mtquery.query import Filters

    if output is None and not explain:
        raise UsageError("give --output DIR (a new directory), or --explain to only show "
                         "how a query prunes")
    filters = Filters(bbox=parse_bbox(bbox), time=parse_time_range(start, end), cell=cell)
    if explain and filters.empty:
        raise UsageError("--explain needs a filter to show pruning: --bbox and/or --start/--end"
                         " or --cell")
    say = _say(quiet)
    if output is not None:
        manifest = run_optimize(inputs, output, row_group_size=row_group_size,
                                float16=float16, rows_per_file=rows_per_file,
                                memory_limit=memory_limit, threads=threads,
                                validate=validate, log=say)
        sys.stdout.write(f"{manifest['rows']} rows -> {output} ("
                         f"{len(manifest['outputs'])} file(s), "
                         f"{sum(o['row_groups'] for o in manifest['outputs'])} row groups)\n")
    if explain:
        targets = [("input", inputs)] + ([("output", [str(output)])] if output else [])
        for label, ds in targets:
            sys.stdout.write(f"== {label}: {', '.join(map(str, ds))}\n")
            sys.stdout.write(run_explain(ds if len(ds) > 1 else ds[0], filters) + "\n")


@index_app.command("build")
def build(
    dataset: Annotated[str, typer.Argument(help="Local dataset: file, directory or glob.")],
    kind: Annotated[str, typer.Option(help="Index kind: ivf-sq8 (PCA + IVF + 8-bit codes + "
                                      "exact rerank).")] = "ivf-sq8",
    index_dir: Annotated[Path | None, typer.Option(help="Where to write the index (default: "
                                                   "beside the data).", file_okay=False)
                         ] = None,
    nlist: Annotated[int | None, typer.Option(help="IVF lists (default ~sqrt(rows)).")] = None,
    pca_dim: Annotated[int | None, typer.Option(help="Code dimension (default dim/2).")
                       ] = None,
    nprobe: Annotated[int | None, typer.Option(help="Lists probed (default: calibrated for "
                                               "recall@10 >= 0.97).")] = None,
    rerank: Annotated[int, typer.Option(help="Candidates rescored exactly.")] = 256,
    sidecar: Annotated[str, typer.Option(help="Rerank vectors: float32 (exact) or "
                                         "float16.")] = "float32",
    threads: Annotated[int | None, typer.Option(help="Build threads.")] = None,
    exact_cache: Annotated[bool, typer.Option("--exact-cache/--no-exact-cache", help="Also "
                                              "write the exact scan's vector cache "
                                              "($MTQUERY_CACHE), whatever the dataset's "
                                              "size, so --exact scans at memory speed.")
                           ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Build (or rebuild) the approximate kNN index of a local dataset."""
    from mtquery.ann import BuildParams, build_index

    for name, v in (("--nlist", nlist), ("--pca-dim", pca_dim), ("--nprobe", nprobe),
                    ("--rerank", rerank), ("--threads", threads)):
        if v is not None and v <= 0:
            raise UsageError(f"{name} must be positive (got {v})")
    params = BuildParams(kind=kind, nlist=nlist, pca_dim=pca_dim, rerank=rerank,
                         nprobe=nprobe, sidecar=sidecar, threads=threads)
    say = _say(quiet)
    path = build_index(dataset, index_dir, params, log=say)
    if exact_cache:
        from mtquery.ann import load_index
        from mtquery.datasets import resolve
        from mtquery.vectorcache import open_cache

        ds = resolve(dataset)
        side = path / "vectors.f32"  # same rows, same format: hard-linked, not written twice
        cache = open_cache(ds, load_index(path).dim, build=True, max_bytes=1 << 62,
                           vectors=side if side.is_file() else None)
        if cache is not None:
            say(f"exact-scan vector cache: {cache.path}")
    sys.stdout.write(f"{path}\n")


@index_app.command("info")
def info(
    dataset: Annotated[str | None, typer.Argument(help="Dataset whose index to show (checks "
                                                  "it is fresh).")] = None,
    index_dir: Annotated[Path | None, typer.Option(help="Index directory.", file_okay=False)
                         ] = None,
) -> None:
    """Show an index's parameters, sizes and calibration; with DATASET, check it is fresh."""
    from mtquery.ann import default_index_dir, index_info, load_index
    from mtquery.datasets import resolve

    if dataset is None and index_dir is None:
        raise UsageError("give a DATASET or --index-dir")
    ds = resolve(dataset) if dataset is not None else None
    path = index_dir or default_index_dir(ds)
    data = index_info(path)
    if ds is not None:
        load_index(path, ds)  # raises a DataError when stale / mismatched / truncated
        data["status"] = "fresh"
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
