"""``mtquery change``: places ranked by how far their embedding moved between two periods."""

from __future__ import annotations

from typing import Annotated

import typer

from mtquery.cli.options import BBoxOpt, DatasetOpt, FormatOpt, OutputOpt, ShowSqlOpt


def register(app: typer.Typer) -> None:
    app.command("change")(change)


def change(
    before: Annotated[str, typer.Option(help="First period START..END (inclusive, UTC), e.g. "
                                        "2019-01-01..2019-12-31.")],
    after: Annotated[str, typer.Option(help="Second period START..END, e.g. "
                                       "2023-01-01..2023-12-31.")],
    dataset: DatasetOpt = None,
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
    from mtquery.change import change as run_change
    from mtquery.change import change_sql, parse_period
    from mtquery.cli.options import check_output, session_for, show_sql
    from mtquery.cli.output import write_rows
    from mtquery.filters import check_limit, parse_bbox

    check_output(fmt, output)
    check_limit(limit)
    b, a = parse_period(before, "before"), parse_period(after, "after")
    box = parse_bbox(bbox)
    session = session_for(dataset)
    show_sql(show, *change_sql(b, a, box, session.shape.has_bbox, per_fragment))
    table = run_change(session, b, a, box, per_fragment, limit)
    if fmt in ("table", "csv"):
        table = table.drop_columns(["geometry"])
    write_rows(table, fmt, output)
