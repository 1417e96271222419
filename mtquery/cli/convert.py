"""``mtquery convert``: any embedding (Geo)Parquet as a Major TOM-standard dataset."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mtquery.cli.options import ColumnsOpt, DatasetOpt, QuietOpt, pick
from mtquery.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)


def convert(
    dataset_arg: Annotated[str | None, typer.Argument(metavar="SRC", help="Files to convert "
                                                      "(file, folder, glob, list, URL).")
                           ] = None,
    dataset: DatasetOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="New directory for "
                                                "the standard dataset.", file_okay=False)
                      ] = None,
    columns: ColumnsOpt = None,
    index: Annotated[bool, typer.Option("--index", help="Build the ANN index of the output "
                                        "afterwards (needs faiss, the index extra).")] = False,
    row_group_size: Annotated[int, typer.Option(help="Rows per row group of the output.")
                              ] = 10_000,
    validate: Annotated[bool, typer.Option("--validate/--no-validate", help="Validate the "
                                           "output before publishing it.")] = True,
    quiet: QuietOpt = False,
) -> None:
    """Write any embedding Parquet / GeoParquet as a Major TOM-standard dataset: the
    standard columns materialised (derived ones as the views derive them: centre, grid cell,
    id), optimised layout, validated, published at once; a rerun after an interruption
    resumes file by file."""
    from mtquery.cli.progress import progress_bar
    from mtquery.io.convert import convert as run_convert

    source = pick(dataset_arg, dataset, "SRC", "--dataset")
    if source is None:
        raise UsageError("give the files to convert: mtquery convert SRC -o DIR")
    if output is None:
        raise UsageError("give --output DIR (a new directory)")
    with progress_bar(quiet) as on_progress:
        m = run_convert(source, output, columns=columns, row_group_size=row_group_size,
                        index=index, validate=validate, progress=on_progress)
    sys.stdout.write(f"{m['rows']:,} rows -> {output} ({len(m['outputs'])} file(s))"
                     + (" (resumed)" if m["resumed"] else "") + "\n")
    if m.get("index"):
        sys.stdout.write(f"index: {m['index']}\n")
