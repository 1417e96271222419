"""Comparisons: ``mtquery change`` (a place between two periods) and ``mtquery align`` (the
same fragments in two models' datasets)."""

from __future__ import annotations

from typing import Annotated

import typer

from mtquery.cli.options import BBoxOpt, ColumnsOpt, DatasetOpt, FormatOpt, OutputOpt, ShowSqlOpt


def register(app: typer.Typer) -> None:
    app.command("change")(change)
    app.command("align")(align)


def change(
    before: Annotated[str, typer.Option(help="First period START..END (inclusive, UTC), e.g. "
                                        "2019-01-01..2019-12-31.")],
    after: Annotated[str, typer.Option(help="Second period START..END, e.g. "
                                       "2023-01-01..2023-12-31.")],
    dataset: DatasetOpt = None,
    columns: ColumnsOpt = None,
    bbox: BBoxOpt = None,
    per_fragment: Annotated[bool, typer.Option("--per-fragment", help="Pair fragments by "
                                               "position in the cell (pixel_bbox, UTM CRS) "
                                               "instead of whole cells.")] = False,
    limit: Annotated[int | None, typer.Option(help="Most rows to return.")] = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    show: ShowSqlOpt = False,
) -> None:
    """Per grid cell, 1 - cosine similarity of the mean unit vector before and after; largest
    change first. Cells seen in one period only are left out (and counted)."""
    from mtquery.api import change as run_change
    from mtquery.cli.options import check_output, session_for, show_sql
    from mtquery.cli.output import write_rows
    from mtquery.query.change import parse_period
    from mtquery.query.filters import check_limit, parse_bbox

    check_output(fmt, output)
    check_limit(limit)
    parse_period(before, "before"), parse_period(after, "after")  # bad values before a read
    parse_bbox(bbox)
    session = session_for(dataset)
    if show:
        session.on_sql = lambda statement, params: show_sql(True, statement, params)
    table = run_change(session, before=before, after=after, bbox=bbox,
                       per_fragment=per_fragment, limit=limit)
    if fmt in ("table", "csv"):
        table = table.drop_columns(["geometry"])
    write_rows(table, fmt, output)


def align(
    other: Annotated[str, typer.Option(help="The other model's dataset (local file, "
                                       "directory or glob).")],
    dataset: DatasetOpt = None,
    columns: ColumnsOpt = None,
    bbox: BBoxOpt = None,
    k: Annotated[int, typer.Option("--k", "-k", help="Neighbours compared per fragment "
                                   "(agreement@k).")] = 10,
    limit: Annotated[int | None, typer.Option(help="Most pairs.")] = 1000,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    show: ShowSqlOpt = False,
) -> None:
    """The same fragments in two datasets of different models (matched on grid_cell,
    product_id, pixel_bbox), with how many of each fragment's k nearest neighbours the two
    models share. SQL: SELECT * FROM aligned('other/*.parquet')."""
    from mtquery.api import align as run_align
    from mtquery.cli.options import check_output, session_for, show_sql
    from mtquery.cli.output import write_rows
    from mtquery.query.filters import check_k, check_limit, parse_bbox

    check_output(fmt, output)
    check_limit(limit)
    check_k(k)
    parse_bbox(bbox)
    session = session_for(dataset)
    if show:
        session.on_sql = lambda statement, params: show_sql(True, statement, params)
    write_rows(run_align(session, other=other, bbox=bbox, limit=limit, k=k), fmt, output)
