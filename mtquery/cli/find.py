"""Find commands: score (similarity of every fragment of a region to a query) and classify
(learn from labelled examples, find everything like them). Thin: parse, call
``mtquery.find.api``, render."""

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
    EndOpt,
    IdOpt,
    ImageOpt,
    LatOpt,
    LonOpt,
    MaxReadOpt,
    ModelOpt,
    NotIdOpt,
    QuietOpt,
    StartOpt,
    TextOpt,
    VectorOpt,
    WeightsOpt,
    cost_first,
    session_for,
)
from mtquery.errors import UsageError

GeoParquetOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write every scored fragment to this "
                              "GeoParquet file (unique_id, geometry, value, standard columns).",
                              dir_okay=False)
]
HeatmapOpt = Annotated[
    Path | None, typer.Option("--heatmap", help="Heat map: FILE.tif writes a GeoTIFF "
                              "(EPSG:4326, nodata where no fragment) and FILE.png beside it; "
                              "FILE.png the PNG only.", dir_okay=False)
]
ResolutionOpt = Annotated[
    float | None, typer.Option("--resolution", help="Heat map pixel size in km (default: "
                               "the fragments' typical spacing).")
]
TopOpt = Annotated[int, typer.Option("--top", help="Rows to print (best first).")]
FmtOpt = Annotated[str, typer.Option("--format", "-f", help="table | json")]
SHOWN = ("unique_id", "grid_cell", "timestamp", "centre_lat", "centre_lon")


def register(app: typer.Typer) -> None:
    app.command("score")(score)
    app.command("classify")(classify)


def _check_format(fmt: str, top: int) -> None:
    if fmt not in ("table", "json"):
        raise UsageError(f"--format must be table or json (got {fmt!r})")
    if top < 0:
        raise UsageError(f"--top must be 0 or more rows (got {top})")


def _rows(table: pa.Table | None, value: str, top: int) -> pa.Table:
    if table is None:
        return pa.table({})
    t = table.slice(0, top)
    cols = [c for c in ("unique_id", value, *SHOWN[1:]) if c in t.column_names]
    t = t.select(cols)
    return t.add_column(0, "rank", pa.array(range(1, t.num_rows + 1), pa.int64()))


def _print(table: pa.Table, title: str) -> None:
    from mtquery.cli.output import write_rows

    if table.num_rows:
        write_rows(table, "table", None, title=title)


def _written(paths: list[Path | None]) -> list[str]:
    from mtquery.find.heatmap import heatmap_files

    out = []
    for p in paths:
        if p is None:
            continue
        out += [str(f) for f in (heatmap_files(p) if p.suffix.lower() in (".tif", ".tiff")
                                 else [p])]
    return out


def score(
    dataset: DatasetOpt = None,
    columns: ColumnsOpt = None,
    lat: LatOpt = None,
    lon: LonOpt = None,
    id: IdOpt = None,
    not_id: NotIdOpt = None,
    vector: VectorOpt = None,
    text: TextOpt = None,
    image: ImageOpt = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    bbox: BBoxOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    cell: CellOpt = None,
    output: GeoParquetOpt = None,
    heatmap: HeatmapOpt = None,
    resolution: ResolutionOpt = None,
    top: TopOpt = 10,
    fmt: FmtOpt = "table",
    quiet: QuietOpt = False,
    max_read: MaxReadOpt = None,
    allow_full_scan: AllowFullScanOpt = False,
) -> None:
    """Cosine similarity of EVERY fragment in the region (--bbox, --start/--end, --cell; none:
    the whole dataset) to a query (--lat/--lon, --id x n, --not-id, --vector, --text,
    --image). Prints the best --top; --output and --heatmap hold them all."""
    from mtquery.cli.progress import progress_bar
    from mtquery.find.api import score as run_score
    from mtquery.find.score import scored_count
    from mtquery.query.filters import Filters, check_lat, check_lon

    _check_format(fmt, top)
    filters = Filters.of(bbox, start, end, cell)
    point = (check_lat(lat), check_lon(lon)) if lat is not None and lon is not None else None
    ds = cost_first(dataset, filters, "knn", max_read=max_read,
                    allow_full_scan=allow_full_scan, point=point,
                    lookup_id=bool(id or not_id))
    session = session_for(ds, models=text is not None or image is not None)
    with progress_bar(quiet=quiet) as on_progress:
        table = run_score(session, lat=lat, lon=lon, ids=id or None, not_ids=not_id,
                          vector=vector, text=text, image=image, model=model,
                          weights=weights, bbox=bbox, start=start, end=end, cell=cell,
                          output=output, heatmap=heatmap, resolution=resolution,
                          limit=max(top, 1), progress=on_progress)
    n = scored_count(table)
    rows = _rows(table, "score", top)
    files = _written([output, heatmap])
    if fmt == "json":
        sys.stdout.write(json.dumps({"scored": n, "top": rows.to_pylist(), "written": files},
                                    indent=2) + "\n")
        return
    _print(rows, f"{n:,} fragments scored; the {rows.num_rows} most similar")
    for f in files:
        sys.stdout.write(f"wrote {f}\n")


def _cv_line(cv: dict, threshold: float, given: bool) -> str:
    if not cv.get("folds"):
        return (f"no cross-validation (too few examples in separate places); C=1, threshold "
                f"{threshold:.3f}")
    how = "given" if given else "F1-optimal"
    return (f"cross-validation, spatially blocked ({cv['folds']} folds over "
            f"{cv['h3_cells']} H3 cells, resolution {cv['h3_resolution']}): precision "
            f"{cv['precision']:.3f}, recall {cv['recall']:.3f}, average precision "
            f"{cv['average_precision']:.3f}; C={cv['C']:g}, threshold {threshold:.3f} ({how})")


def _labels_line(info: dict, cv: dict) -> str:
    if "model" in info:
        return f"model {info['model']}"
    src = (f"{info['path']} (sha256 {info['sha256'][:12]}, {info['label_rows']} labels, "
           f"join {info['join']})" if "path" in info else "unique_ids")
    line = f"examples: {cv.get('positives', 0)} positive, {cv.get('negatives', 0)} negative " \
           f"fragments from {src}"
    if info.get("background"):
        line += f"; {info['background']} background negatives drawn at random from the region"
        if cv.get("background_dropped"):
            line += f" ({cv['background_dropped']} left out: they score as positives)"
    if info.get("conflicting_fragments"):
        line += f"; {info['conflicting_fragments']} fragments with both classes left out"
    return line


def classify(
    dataset: DatasetOpt = None,
    columns: ColumnsOpt = None,
    labels: Annotated[Path | None, typer.Option("--labels", help="Label file: GeoJSON, "
                                                "GeoParquet, CSV (lon/lat or WKT) of points "
                                                "or polygons, or a table with unique_id.",
                                                dir_okay=False)] = None,
    label_column: Annotated[str, typer.Option("--label-column", help="Column holding the "
                                              "labels (1/0, true/false, positive/negative).")
                            ] = "label",
    positive_label: Annotated[str | None, typer.Option("--positive-label", help="The value "
                                                       "of --label-column that is the "
                                                       "positive class (others negative).")
                              ] = None,
    positive: Annotated[list[str] | None, typer.Option("--positive", help="A positive "
                                                       "example's unique_id (repeatable).")
                        ] = None,
    negative: Annotated[list[str] | None, typer.Option("--negative", help="A negative "
                                                       "example's unique_id (repeatable).")
                        ] = None,
    background: Annotated[int | None, typer.Option("--background", help="Random fragments "
                                                   "of the region added as negatives "
                                                   "(default with positives only: 10 per "
                                                   "positive, at least 50).")] = None,
    bbox: BBoxOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    cell: CellOpt = None,
    model: Annotated[Path | None, typer.Option("--model", help="Apply a classifier saved "
                                               "with --save-model instead of fitting.",
                                               dir_okay=False)] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Detection "
                                                    "threshold, 0-1 (default: the "
                                                    "cross-validated F1-optimal one).")
                         ] = None,
    output: GeoParquetOpt = None,
    detections: Annotated[Path | None, typer.Option("--detections", help="GeoJSON of the "
                                                    "fragments at or above the threshold.",
                                                    dir_okay=False)] = None,
    heatmap: HeatmapOpt = None,
    resolution: ResolutionOpt = None,
    save_model: Annotated[Path | None, typer.Option("--save-model", help="Save the "
                                                    "classifier (JSON, with provenance).",
                                                    dir_okay=False)] = None,
    suggest: Annotated[int, typer.Option("--suggest", help="List N unlabelled fragments "
                                         "nearest the threshold (label these next).")] = 0,
    top: TopOpt = 10,
    fmt: FmtOpt = "table",
    quiet: QuietOpt = False,
    max_read: MaxReadOpt = None,
    allow_full_scan: AllowFullScanOpt = False,
) -> None:
    """Learn from labelled examples (--labels FILE, or --positive/--negative ids) and give
    every fragment of the region its probability: logistic regression, classes balanced, C by
    spatially blocked cross-validation; detections above the F1-optimal threshold."""
    from mtquery.cli.progress import progress_bar
    from mtquery.find.api import classify as run_classify
    from mtquery.find.model import check_threshold
    from mtquery.find.score import scored_count
    from mtquery.query.filters import Filters

    _check_format(fmt, top)
    check_threshold(threshold)
    filters = Filters.of(bbox, start, end, cell)
    ds = cost_first(dataset, filters, "knn", max_read=max_read,
                    allow_full_scan=allow_full_scan, lookup_id=bool(positive or negative))
    session = session_for(ds, models=True)  # scikit-learn probes for pandas
    with progress_bar(quiet=quiet) as on_progress:
        r = run_classify(session, labels=labels, label_column=label_column,
                         positive_label=positive_label, positives=positive,
                         negatives=negative, background=background, bbox=bbox, start=start,
                         end=end, cell=cell, model=model, threshold=threshold, output=output,
                         detections=detections, heatmap=heatmap, resolution=resolution,
                         save_model=save_model, suggest=suggest, limit=max(top, 1),
                         progress=on_progress)
    n = scored_count(r.table)
    files = _written([output, detections, heatmap, save_model])
    found = r.detections.num_rows if r.detections is not None else 0
    if fmt == "json":
        sys.stdout.write(json.dumps({
            "cv": r.cv, "threshold": r.threshold, "labels": r.labels, "scored": n,
            "detections": found, "top": _rows(r.detections, "probability", top).to_pylist(),
            "suggestions": _rows(r.suggestions, "probability", suggest).to_pylist(),
            "written": files}, indent=2, default=str) + "\n")
        return
    out = sys.stdout
    out.write(_labels_line(r.labels, r.cv) + "\n")
    if "model" not in r.labels:
        out.write(_cv_line(r.cv, r.threshold, threshold is not None) + "\n")
    out.write(f"{n:,} fragments classified; {found:,} at probability >= {r.threshold:.3f}\n")
    _print(_rows(r.detections, "probability", top), f"the {min(top, found)} most likely")
    if suggest:
        _print(_rows(r.suggestions, "probability", suggest),
               f"label these next: the {suggest} nearest the threshold")
    for f in files:
        out.write(f"wrote {f}\n")
