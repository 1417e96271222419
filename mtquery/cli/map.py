"""``mtquery map``: a static map of a dataset's fragments (a thin wrapper of mtquery.maps)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mtquery.cli.options import (
    BBoxOpt,
    CellOpt,
    ColumnsOpt,
    DatasetOpt,
    EndOpt,
    StartOpt,
    session_for,
)


def register(app: typer.Typer) -> None:
    app.command("map")(map_cmd)


def map_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Map file: .png, .svg, .pdf "
                                         "or .html.", dir_okay=False)],
    dataset: DatasetOpt = None,
    columns: ColumnsOpt = None,
    bbox: BBoxOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    cell: CellOpt = None,
    color: Annotated[str, typer.Option("--color", help="pca (first 3 PCA components of the "
                                       "vectors as RGB) or a column, e.g. grid_cell, "
                                       "centre_lat.")] = "pca",
    limit: Annotated[int, typer.Option(help="Most fragments to draw.")] = 50_000,
    title: Annotated[str | None, typer.Option(help="Figure title (default: dataset, "
                                              "colouring and count).")] = None,
) -> None:
    """Draw the fragments in --bbox / --start / --end as filled footprints, one panel per
    separate region, each fitted to its region (aspect corrected for latitude), with a title
    and a scale bar."""
    from mtquery.maps import check_map_path, dataset_map, save
    from mtquery.query.filters import Filters, check_limit

    check_map_path(output)
    Filters.of(bbox, start, end, cell)
    check_limit(limit)
    session = session_for(dataset)
    fig = dataset_map(session, bbox=bbox, start=start, end=end, cell=cell, color=color,
                      limit=limit, title=title)
    save(fig, output)
    sys.stderr.write(f"mtquery: map written to {output}\n")
