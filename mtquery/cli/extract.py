"""``mtquery extract``: a region of a (remote) dataset as a local dataset, optimised layout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mtquery.cli.options import (
    AllowFullScanOpt,
    BBoxOpt,
    CellOpt,
    ColumnsOpt,
    DatasetOpt,
    DryRunOpt,
    EndOpt,
    MaxReadOpt,
    QuietOpt,
    StartOpt,
    pick,
    write_plan,
)
from mtquery.errors import DataError, UsageError


def register(app: typer.Typer) -> None:
    app.command("extract")(extract)


def extract(
    dataset_arg: Annotated[str | None, typer.Argument(metavar="DATASET", help="Dataset to "
                                                      "copy from (URL, hf://, catalog name, "
                                                      "list, local files).")] = None,
    dataset: DatasetOpt = None,
    columns: ColumnsOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="New directory for the "
                                                "region (must not exist or be empty).",
                                                file_okay=False)] = None,
    bbox: BBoxOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    cell: CellOpt = None,
    index: Annotated[bool, typer.Option("--index", help="Build the ANN index of the output "
                                        "afterwards (needs faiss, the index extra).")] = False,
    row_group_size: Annotated[int, typer.Option(help="Rows per row group of the output.")
                              ] = 10_000,
    workers: Annotated[int, typer.Option(help="Parallel range reads.")] = 8,
    validate: Annotated[bool, typer.Option("--validate/--no-validate", help="Validate the "
                                           "output before publishing it.")] = True,
    dry_run: DryRunOpt = False,
    max_read: MaxReadOpt = None,
    allow_full_scan: AllowFullScanOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Copy the fragments intersecting --bbox and acquired in [--start, --end] (and in --cell)
    into a new local dataset: only the row groups that can hold them are fetched, with
    parallel range reads; the output has the optimised layout (as 'mtquery optimize') and
    is published at once. A rerun after an interruption resumes file by file."""
    from mtquery.cli.progress import progress_bar
    from mtquery.io.cost import ReadRefused, human
    from mtquery.io.extract import extract as run_extract
    from mtquery.io.extract import extract_plan
    from mtquery.query.filters import Filters

    source = pick(dataset_arg, dataset, "DATASET", "--dataset")
    if source is None:
        raise UsageError("give the dataset to copy from: mtquery extract DATASET --bbox ... "
                         "-o DIR")
    filters = Filters.of(bbox, start, end, cell)
    if dry_run:
        write_plan(extract_plan(source, filters), "table")
        return
    if output is None:
        raise UsageError("give --output DIR (a new directory), or --dry-run to see the cost")
    try:
        with progress_bar(quiet) as on_progress:
            m = run_extract(source, output, filters.bbox, start, end, cell,
                            row_group_size=row_group_size, workers=workers, index=index,
                            max_read=max_read, allow_full_scan=allow_full_scan,
                            validate=validate, progress=on_progress)
    except ReadRefused as exc:
        raise DataError(exc.explain(cli=True)) from exc
    share = m["bytes_planned"] / m["dataset_bytes"] if m["dataset_bytes"] else 0
    sys.stdout.write(
        f"{m['rows']:,} rows -> {output} ({len(m['outputs'])} file(s)); read "
        f"{human(m['bytes_planned'])} of {human(m['dataset_bytes'])} ({100 * share:.1f} %) "
        f"in {m['row_groups_read']} row group(s) of {m['files_read']} file(s)"
        + (" (resumed)" if m["resumed"] else "") + "\n")
    if m.get("index"):
        sys.stdout.write(f"index: {m['index']}\n")
