"""``mtquery optimize``: the pruning layout (Hilbert order, bbox covering, 10k row groups)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mtquery.cli.options import BBoxOpt, CellOpt, EndOpt, QuietOpt, StartOpt
from mtquery.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("optimize")(optimize)


def optimize(
    inputs: Annotated[list[str] | None, typer.Argument(help="Input files, directories or "
                                                       "globs.")] = None,
    dataset: Annotated[list[str] | None, typer.Option("--dataset", "-d", help="Input files, "
                                                      "directories or globs (repeatable).")
                       ] = None,
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
    quiet: QuietOpt = False,
) -> None:
    """Rewrite a dataset sorted by Hilbert curve (fragment centre) then time, with 10k-row row
    groups, a GeoParquet 1.1 bbox covering column, fixed-size float32 vectors and zstd."""
    from mtquery.cli.progress import progress_bar
    from mtquery.io.explain import explain as run_explain
    from mtquery.io.optimize import optimize as run_optimize
    from mtquery.query.filters import Filters

    sources = [*(inputs or []), *(dataset or [])]
    if not sources:
        raise UsageError("give the input dataset: mtquery optimize INPUT... -o DIR")
    if output is None and not explain:
        raise UsageError("give --output DIR (a new directory), or --explain to only show "
                         "how a query prunes")
    filters = Filters.of(bbox, start, end, cell)
    if explain and filters.empty:
        raise UsageError("--explain needs a filter to show pruning: --bbox and/or --start/--end"
                         " or --cell")
    if output is not None:
        with progress_bar(quiet) as on_progress:
            manifest = run_optimize(sources, output, row_group_size=row_group_size,
                                    float16=float16, rows_per_file=rows_per_file,
                                    memory_limit=memory_limit, threads=threads,
                                    validate=validate, progress=on_progress)
        sys.stdout.write(f"{manifest['rows']} rows -> {output} ("
                         f"{len(manifest['outputs'])} file(s), "
                         f"{sum(o['row_groups'] for o in manifest['outputs'])} row groups)\n")
    if explain:
        targets = [("input", sources)] + ([("output", [str(output)])] if output else [])
        for label, ds in targets:
            sys.stdout.write(f"== {label}: {', '.join(map(str, ds))}\n")
            sys.stdout.write(run_explain(ds if len(ds) > 1 else ds[0], filters) + "\n")


