"""Query commands: cell, info, validate, sql, search, knn."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer

from mtquery.cli.options import (
    AllowFullScanOpt,
    BBoxOpt,
    CellOpt,
    ColumnsOpt,
    DatasetOpt,
    DryRunOpt,
    EndOpt,
    IdOpt,
    ImageOpt,
    LatOpt,
    LonOpt,
    MaxReadOpt,
    ModelOpt,
    NotIdOpt,
    OutputOpt,
    QuietOpt,
    ShowSqlOpt,
    StartOpt,
    TextOpt,
    VectorOpt,
    WeightsOpt,
    check_output,
    cost_first,
    hide_pandas,
    pick,
    session_for,
    show_sql,
)
from mtquery.cli.output import GEO_FORMATS, write_rows
from mtquery.errors import UsageError

FormatOpt = Annotated[
    str, typer.Option("--format", "-f", help="Output format: table | json | csv | parquet "
                      "(GeoParquet when rows have a geometry) | geojson.")
]
MapOpt = Annotated[
    Path | None, typer.Option("--map", help="Also draw the query and its neighbours to FILE "
                              "(.png, .svg, .pdf or .html).", dir_okay=False)
]


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
    from mtquery.api import cell as cell_of

    check_output(fmt, output)
    write_rows(cell_of(lat, lon, dist), fmt, output)


def info(
    dataset_arg: Annotated[str | None, typer.Argument(metavar="[DATASET]",
                                                      help="Dataset (default: demo).")] = None,
    dataset: DatasetOpt = None,
    columns: ColumnsOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table | json")] = "table",
) -> None:
    """Rows, dimension, bbox, time range, files and bytes of a dataset (of a remote one, from
    its Parquet footers alone)."""
    from mtquery.api import info as dataset_info

    if fmt not in ("table", "json"):
        raise UsageError(f"info --format must be table or json (got {fmt!r})")
    hide_pandas()
    data = dataset_info(pick(dataset_arg, dataset, "DATASET", "--dataset"))
    if fmt == "json":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    rows = {k: (", ".join(f"{v:.5f}" for v in val) if k == "bbox" and val else
                (f"{len(val)} source(s): {shown_source(val[0])}" + (" ..." if len(val) > 1 else "")
                 if k == "sources" else val))
            for k, val in data.items()}
    if "embedding" in rows:  # the embedding metadata block, in one line
        from mtquery.io.embmeta import summary

        rows["embedding"] = summary(data["embedding"]) if data["embedding"] else "no block"
    write_rows(pa.table({"key": list(rows), "value": [str(v) for v in rows.values()]}),
               "table", None, title=f"mtquery info {data['dataset']}")


def shown_source(source: str) -> str:
    """A local source as a person names it: relative to the working directory, or inside the
    installed package (``mtquery/data/demo.parquet``); never this machine's absolute path in
    a table people copy. URLs and other paths as they are (``--format json`` keeps them all)."""
    import mtquery

    if "://" in source:
        return source
    path = Path(source)
    package = Path(mtquery.__file__).resolve().parent
    for base, prefix in ((Path.cwd(), ""), (package, "mtquery/")):
        if base != Path(base.anchor) and path.is_relative_to(base):
            return prefix + path.relative_to(base).as_posix()
    return source


def validate(
    paths: Annotated[list[str] | None, typer.Argument(help="Files, directories or globs.")
                     ] = None,
    dataset: Annotated[list[str] | None, typer.Option("--dataset", "-d", help="Files, "
                                                      "directories or globs (repeatable).")
                       ] = None,
    tolerance_km: Annotated[float, typer.Option(help="How far (km) a fragment may reach "
                                                "outside its grid cell.")] = 2.0,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table | json")] = "table",
    columns: ColumnsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Check files against the Major TOM embedding standard; exit 0 only if all checks pass."""
    from mtquery.cli.progress import progress_bar
    from mtquery.io.validate import validate as run_validate

    if fmt not in ("table", "json"):
        raise UsageError(f"validate --format must be table or json (got {fmt!r})")
    paths = [*(paths or []), *(dataset or [])]
    if not paths:
        raise UsageError("give the files to validate: mtquery validate FILE... (or --dataset)")
    with progress_bar(quiet=quiet) as on_progress:
        report = run_validate(paths, tolerance_km, progress=on_progress)
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
    columns: ColumnsOpt = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Value bound to "
                                                    "the next ? placeholder (repeatable).")] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="After the views are "
                                            "created, DuckDB may read the dataset and nothing "
                                            "else: no COPY TO, ATTACH or other files.")
                         ] = False,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    show: ShowSqlOpt = False,
) -> None:
    """Run SQL against a dataset's views. Values go in as bound --param, never pasted.

    This is a full DuckDB: without --read-only, a statement may write files (COPY ... TO),
    attach databases and read any file this user can read."""
    from mtquery.query.search import run

    check_output(fmt, output)
    session = session_for(dataset, all_extensions=True,  # users may call vss functions
                          read_only=read_only)
    params = list(param or [])
    show_sql(show, statement, params)
    table = run(session, statement, params)
    write_rows(table, fmt, output)


def search(
    dataset: DatasetOpt = None,
    columns: ColumnsOpt = None,
    bbox: BBoxOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    cell: CellOpt = None,
    limit: Annotated[int, typer.Option(help="Most rows to return.")] = 100,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    show: ShowSqlOpt = False,
    dry_run: DryRunOpt = False,
    max_read: MaxReadOpt = None,
    allow_full_scan: AllowFullScanOpt = False,
) -> None:
    """Fragments whose geometry intersects --bbox and whose acquisition date is in
    [--start, --end] (inclusive, UTC)."""
    from mtquery.api import search as run_search
    from mtquery.query.filters import Filters, check_limit

    check_output(fmt, output)
    filters = Filters.of(bbox, start, end, cell)
    check_limit(limit)
    ds = cost_first(dataset, filters, "search", dry_run=dry_run, max_read=max_read,
                    allow_full_scan=allow_full_scan, fmt=fmt)
    if ds is None:  # --dry-run: the plan was printed
        return
    session = session_for(ds)
    if show:
        session.on_sql = lambda statement, params: show_sql(True, statement, params)
    write_rows(run_search(session, bbox, start, end, cell, limit,
                          geometry=fmt in GEO_FORMATS), fmt, output)


def knn(
    dataset: DatasetOpt = None,
    columns: ColumnsOpt = None,
    lat: LatOpt = None,
    lon: LonOpt = None,
    id: IdOpt = None,
    ids: Annotated[str | None, typer.Option("--ids", help="Several examples as one "
                                            "comma-separated list of unique_ids.")] = None,
    not_id: NotIdOpt = None,
    vector: VectorOpt = None,
    text: TextOpt = None,
    image: ImageOpt = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
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
    map_file: MapOpt = None,
    dry_run: DryRunOpt = False,
    max_read: MaxReadOpt = None,
    allow_full_scan: AllowFullScanOpt = False,
) -> None:
    """Cosine nearest neighbours of a point's fragment, a unique_id, several ids or a vector:
    through the dataset's index when one was built ('mtquery index build'), else (or --exact)
    an exact scan."""
    from mtquery.api import knn as run_knn
    from mtquery.api import query_of
    from mtquery.query.filters import Filters, check_lat, check_lon

    check_output(fmt, output)
    if map_file is not None:
        from mtquery.maps import check_map_path

        check_map_path(map_file, "map")
    # one or several examples: the library treats a single id as --id
    examples = [*(id or []), *([i.strip() for i in ids.split(",") if i.strip()] if ids else [])]
    filters = Filters.of(bbox, start, end, cell)
    point = (check_lat(lat), check_lon(lon)) if lat is not None and lon is not None else None
    ds = cost_first(dataset, filters, "knn", dry_run=dry_run, max_read=max_read,
                    allow_full_scan=allow_full_scan, point=point,
                    lookup_id=bool(examples or not_id), fmt=fmt)
    if ds is None:  # --dry-run: the plan was printed
        return
    session = session_for(ds, models=text is not None or image is not None)
    if show:
        session.on_sql = lambda statement, params: show_sql(True, statement, params)
    result = run_knn(session, lat=lat, lon=lon, ids=examples or None, vector=vector,
                     not_ids=not_id, text=text, image=image, model=model, weights=weights,
                     k=k, bbox=bbox, start=start, end=end, cell=cell,
                     include_self=include_self, exact=exact, index=index,
                     geometry=fmt in GEO_FORMATS or map_file is not None)
    if map_file is not None:
        from mtquery.maps import knn_map, save

        save(knn_map(session, result), map_file)
        if fmt not in GEO_FORMATS:
            result = result.drop_columns(["geometry"])
    asked = query_of(result)
    title = (f"{k} nearest to {asked['unique_id'][:12]}... (cell {asked['grid_cell']}, "
             f"{asked['timestamp']})") if asked["unique_id"] else None
    write_rows(result, fmt, output, title=title)
