"""Query commands: cell, info, validate, sql, search, knn."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer

from mtquery.cli.common import (
    BBoxOpt,
    CellOpt,
    DatasetOpt,
    EndOpt,
    FormatOpt,
    OutputOpt,
    ShowSqlOpt,
    StartOpt,
    check_output,
    session_for,
    show_sql,
)
from mtquery.errors import DataError, UsageError
from mtquery.output import write_rows
from mtquery.params import check_k, check_lat, check_limit, check_lon, parse_bbox, parse_time_range


def register(app: typer.Typer) -> None:
    app.command("cell")(cell)
    app.command("info")(info)
    app.command("validate")(validate)
    app.command("sql")(sql)
    app.command("search")(search)
    app.command("knn")(knn)


def cell(
    lat: Annotated[float, typer.Option(help="Latitude in degrees, -90..90.")],
    lon: Annotated[float, typer.Option(help="Longitude in degrees, -180..180.")],
    dist: Annotated[float, typer.Option(help="Grid spacing in km (Core: 10).")] = 10.0,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
) -> None:
    """The Major TOM grid cell holding a point, with its bounds and UTM zone."""
    from mtquery import grid

    check_output(fmt, output)
    la, lo = check_lat(lat), check_lon(lon)
    r, c = grid.latlon_to_rowcol(la, lo, dist)
    name = grid.rowcol_to_cell(r, c, dist)[0]
    b = grid.rowcol_bounds(r, c, dist)[0]
    table = pa.table({
        "grid_cell": [name], "grid_row_u": [int(r[0])], "grid_col_r": [int(c[0])],
        "min_lon": [b[0]], "min_lat": [b[1]], "max_lon": [b[2]], "max_lat": [b[3]],
        "utm_epsg": [int(grid.utm_epsg(b[1], b[0])[0])], "dist_km": [float(dist)],
    })
    write_rows(table, fmt, output)


def info(
    dataset: Annotated[str | None, typer.Argument(help="Dataset (default: demo).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table | json")] = "table",
) -> None:
    """Rows, dimension, bbox, time range, files and bytes of a dataset."""
    from mtquery.info import dataset_info

    if fmt not in ("table", "json"):
        raise UsageError(f"info --format must be table or json (got {fmt!r})")
    session = session_for(dataset)
    data = dataset_info(session)
    if fmt == "json":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    rows = {k: (", ".join(f"{v:.5f}" for v in val) if k == "bbox" and val else
                (f"{len(val)} source(s): {val[0]}" + (" ..." if len(val) > 1 else "")
                 if k == "sources" else val))
            for k, val in data.items()}
    write_rows(pa.table({"key": list(rows), "value": [str(v) for v in rows.values()]}),
               "table", None, title=f"mtquery info {data['dataset']}")


def validate(
    paths: Annotated[list[str], typer.Argument(help="Files, directories or globs.")],
    tolerance_km: Annotated[float, typer.Option(help="How far (km) a fragment may reach "
                                                "outside its grid cell.")] = 2.0,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table | json")] = "table",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Check files against the Major TOM embedding standard; exit 0 only if all checks pass."""
    from mtquery.progress import progress_bar
    from mtquery.validate import validate as run_validate

    if fmt not in ("table", "json"):
        raise UsageError(f"validate --format must be table or json (got {fmt!r})")
    with progress_bar("validating", unit="rows", quiet=quiet) as advance:
        report = run_validate(paths, tolerance_km, progress=advance)
    if fmt == "json":
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        d = report.as_dict()
        write_rows(pa.table({
            "check": [c["check"] for c in d["checks"]],
            "status": [c["status"] for c in d["checks"]],
            "failures": [c["failures"] for c in d["checks"]],
            "checked": [c["checked"] for c in d["checks"]],
            "example": [c["example"] or "" for c in d["checks"]],
        }), "table", None, title=f"{len(report.files)} file(s), {report.rows} rows, dim "
                                  f"{'/'.join(map(str, d['dims'])) or '?'}")
        if report.pixel_bbox_order:
            sys.stdout.write(f"pixel_bbox order: {report.pixel_bbox_order}\n")
        sys.stdout.write(("VALID" if report.ok else "INVALID") + "\n")
    if not report.ok:
        raise typer.Exit(1)


def sql(
    statement: Annotated[str, typer.Argument(help="SQL over the views embeddings, "
                                             "acquisitions, cells.")],
    dataset: DatasetOpt = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Value bound to "
                                                    "the next ? placeholder (repeatable).")] = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    show: ShowSqlOpt = False,
) -> None:
    """Run SQL against a dataset's views. Values go in as bound --param, never pasted."""
    from mtquery.query import run

    check_output(fmt, output)
    session = session_for(dataset, all_extensions=True)  # users may call vss functions
    params = list(param or [])
    show_sql(show, statement, params)
    table = run(session, statement, params)
    write_rows(table, fmt, output)


def search(
    dataset: DatasetOpt = None,
    bbox: BBoxOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    cell: CellOpt = None,
    limit: Annotated[int, typer.Option(help="Most rows to return.")] = 100,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    show: ShowSqlOpt = False,
) -> None:
    """Fragments whose geometry intersects --bbox and whose acquisition date is in
    [--start, --end] (inclusive)."""
    from mtquery.query import Filters, run, search_sql

    check_output(fmt, output)
    filters = Filters(bbox=parse_bbox(bbox), time=parse_time_range(start, end), cell=cell)
    check_limit(limit)
    session = session_for(dataset)
    statement, params = search_sql(filters, limit, session.shape.has_bbox)
    show_sql(show, statement, params)
    write_rows(run(session, statement, params), fmt, output)


def knn(
    dataset: DatasetOpt = None,
    lat: Annotated[float | None, typer.Option(help="Query by the fragment covering this "
                                              "point (with --lon).")] = None,
    lon: Annotated[float | None, typer.Option(help="Longitude of the query point.")] = None,
    id: Annotated[str | None, typer.Option("--id", help="Query by unique_id.")] = None,
    vector: Annotated[Path | None, typer.Option(help="Query by a vector in a .npy file.")] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="Number of neighbours.")] = 10,
    bbox: BBoxOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    cell: CellOpt = None,
    include_self: Annotated[bool, typer.Option(help="Keep the query fragment in the "
                                               "results.")] = False,
    exact: Annotated[bool, typer.Option("--exact", help="Scan every vector even when an "
                                        "index exists.")] = False,
    index: Annotated[Path | None, typer.Option("--index", help="Use this index directory "
                                               "(default: the dataset's, when built).",
                                               file_okay=False)] = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    show: ShowSqlOpt = False,
) -> None:
    """Cosine nearest neighbours of a point's fragment, a unique_id or a vector: through the
    dataset's index when one was built ('mtquery index build'), else (or --exact) a scan."""
    from mtquery import knn as knn_mod
    from mtquery.query import Filters

    check_output(fmt, output)
    given = [x for x in ((lat is not None or lon is not None), id is not None,
                         vector is not None) if x]
    if len(given) != 1:
        raise UsageError("give exactly one query: --lat LAT --lon LON, --id UNIQUE_ID or "
                         "--vector FILE.npy")
    if (lat is None) != (lon is None):
        raise UsageError("--lat and --lon go together, e.g. --lat 37.65 --lon -75.6")
    check_k(k)
    if exact and index is not None:
        raise UsageError("--exact and --index exclude each other")
    filters = Filters(bbox=parse_bbox(bbox), time=parse_time_range(start, end), cell=cell)
    if lat is not None:
        la, lo = check_lat(lat), check_lon(lon)
    if vector is not None and not vector.is_file():
        raise DataError(f"no such vector file: {vector}")
    session = session_for(dataset)
    if lat is not None:
        show_sql(show, knn_mod.point_query_sql(session.shape.has_bbox))
        query = knn_mod.query_from_point(session, la, lo)
    elif id is not None:
        query = knn_mod.query_from_id(session, id)
    else:
        query = knn_mod.query_from_file(vector, session.dim)
    exclude = query.unique_id is not None and not include_self
    statement, params = knn_mod.scan_sql(filters, session.shape.has_bbox, exclude)
    show_sql(show, statement, [*params, query.unique_id] if exclude else params)
    result = knn_mod.knn(session, query, k, filters, include_self, exact=exact, index=index)
    title = None
    if query.unique_id:
        title = (f"{k} nearest to {query.unique_id[:12]}... (cell {query.grid_cell}, "
                 f"{query.timestamp})")
    write_rows(result, fmt, output, title=title)
