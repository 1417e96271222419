"""``mtquery.score`` and ``mtquery.classify``: find everything like a few examples in a region.

Both take ``dataset`` as the other API functions do (path, directory, glob, list, URL,
catalog name, or an open ``Session``), a region (``bbox``, ``start``, ``end``, ``cell``; none:
the whole dataset) and optional outputs: ``output`` GeoParquet of every scored fragment,
``heatmap`` (.tif: GeoTIFF in EPSG:4326 and a PNG beside it; .png: the PNG only),
``detections`` (classify: GeoJSON of the fragments at or above the threshold). Outputs are
written only when the whole run succeeds. ``progress`` receives ``mtquery.progress`` events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from mtquery.errors import UsageError
from mtquery.progress import ProgressCallback, emit
from mtquery.query.filters import BBox, Filters
from mtquery.query.session import DatasetArg, Session, session_of

if TYPE_CHECKING:
    from mtquery.find.classify import ClassifyResult
    from mtquery.find.labels import Labels

BBoxArg = str | Sequence[float] | BBox | None
TimeArg = str | dt.date | None
#: background negatives drawn when only positives are given: this many per positive, at least
BACKGROUND_PER_POSITIVE = 10
BACKGROUND_MIN = 50


def _id_list(ids: str | Sequence[str] | None) -> list[str] | None:
    if ids is None:
        return None
    return [ids] if isinstance(ids, str) else [str(i) for i in ids]


def score(dataset: DatasetArg | Session = None, *, lat: float | None = None,
          lon: float | None = None, ids: str | Sequence[str] | None = None,
          not_ids: Sequence[str] | None = None, text: str | None = None,
          image: str | Path | None = None, vector: np.ndarray | str | Path | None = None,
          bbox: BBoxArg = None, start: TimeArg = None, end: TimeArg = None,
          cell: str | None = None, output: str | Path | None = None,
          heatmap: str | Path | None = None, progress: ProgressCallback | None = None,
          limit: int | None = None, resolution: float | None = None,
          model: str | None = None, weights: str | None = None) -> pa.Table:
    """Cosine similarity of every fragment in the region to the query (any form ``knn``
    takes: the fragment at ``lat``/``lon``, ``ids`` (their mean direction, minus half that of
    ``not_ids``), ``vector``, ``text`` or ``image``). Returns unique_id, geometry (WKB),
    score, grid_cell, timestamp, product_id, centre_lat, centre_lon, highest score first
    (all rows, or the best ``limit``; ``output`` always holds all). ``resolution``: heat map
    pixel size in km (default: the fragments' spacing)."""
    from mtquery.find.score import score_region
    from mtquery.query.resolve import resolve_query

    filters = Filters.of(bbox, start, end, cell)
    with session_of(dataset) as s:
        query = resolve_query(s, lat=lat, lon=lon, ids=_id_list(ids), vector=vector,
                              not_ids=not_ids, text=text, image=image, model=model,
                              weights=weights)
        return score_region(s, query, filters, output=output, heatmap=heatmap, limit=limit,
                            resolution=resolution, progress=progress)


def _check_count(value: int | None, what: str, allow_zero: bool = True) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero
                                                                          else 1):
        raise UsageError(f"{what} must be a {'non-negative' if allow_zero else 'positive'} "
                         f"whole number (got {value!r})", what)
    return value


def classify(dataset: DatasetArg | Session = None, *, labels: str | Path | None = None,
             label_column: str = "label", positive_label: str | None = None,
             positives: Sequence[str] | None = None, negatives: Sequence[str] | None = None,
             bbox: BBoxArg = None, start: TimeArg = None, end: TimeArg = None,
             cell: str | None = None, model: str | Path | None = None,
             threshold: float | None = None, background: int | None = None,
             output: str | Path | None = None, detections: str | Path | None = None,
             heatmap: str | Path | None = None, save_model: str | Path | None = None,
             suggest: int = 0, progress: ProgressCallback | None = None,
             limit: int | None = None, resolution: float | None = None,
             seed: int = 0) -> ClassifyResult:
    """Fit a logistic regression on labelled examples and give every fragment of the region
    its probability. Examples: ``labels`` (a GeoJSON / GeoParquet / CSV of points or polygons,
    or a table with unique_id; ``label_column`` holds 1/0, true/false, positive/negative, or
    any values with ``positive_label`` naming the positive one) or ``positives`` /
    ``negatives`` (unique_ids). ``background`` random fragments of the region are added as
    negatives (default 10 per positive, at least 50; 0: none): five negatives cannot stand
    for everything else, and those that score as positives are left out. ``model``: apply a
    classifier saved with ``save_model`` instead of fitting. ``threshold`` (0-1) overrides the
    cross-validated F1-optimal one; ``suggest`` N: the unlabelled fragments nearest it."""
    from mtquery.find.classify import ClassifyResult, fit
    from mtquery.find.heatmap import check_heatmap_path
    from mtquery.find.model import check_applies, check_threshold, load_model
    from mtquery.find.score import annotate, check_limit, check_output_path, empty_region
    from mtquery.find.sink import Sink
    from mtquery.find.stream import once_more_if_cache_damaged, region_dots

    threshold = check_threshold(threshold)
    suggest = _check_count(suggest, "suggest") or 0
    background = _check_count(background, "background")
    check_limit(limit)
    out = check_output_path(output, (".parquet", ".geoparquet"), "output")
    det = check_output_path(detections, (".geojson", ".json"), "detections")
    heat = check_heatmap_path(heatmap) if heatmap is not None else None
    saved = check_output_path(save_model, (".json",), "save_model")
    fitting = labels is not None or bool(positives) or bool(negatives)
    if model is not None and fitting:
        raise UsageError("model applies a saved classifier; labels / positives / negatives fit "
                         "a new one: give one or the other", "model")
    if not fitting and model is None:
        raise UsageError("give labels (a file), positives (unique_ids) or a saved model",
                         "labels")
    if labels is not None and (positives or negatives):
        raise UsageError("give labels (a file) or positives / negatives, not both", "labels")
    filters = Filters.of(bbox, start, end, cell)
    with session_of(dataset) as s:
        if model is not None:
            clf = load_model(model)
            check_applies(clf, s)
            label_info: dict = {"model": str(model)}
            exclude: frozenset = frozenset()
        else:
            lab = gather_labels(s, filters, labels, label_column, positive_label, positives,
                                negatives, background, seed, progress)
            emit(progress, "fitting", 0, message=f"cross-validating on {lab.positives} "
                 f"positive and {lab.negatives} negative fragments")
            clf = fit(lab, threshold, seed)
            from mtquery.find.model import provenance

            clf.provenance = provenance(s, lab.info)
            label_info = lab.info
            exclude = frozenset(lab.unique_id.tolist())
        t = clf.threshold if threshold is None else threshold
        title = f"{s.dataset.name}: probability ({len(clf.coef)}-d logistic regression)"

        def run() -> Sink:
            with Sink("probability", limit=limit, output=out, heatmap=heat, threshold=t,
                      detections=det, suggest=suggest, exclude=exclude, title=title,
                      resolution=resolution) as sink:
                for part in region_dots(s, clf.coef, filters, progress,
                                        "classifying fragments",
                                        extent=out is not None or heat is not None):
                    sink.add(part, clf.probability(part.dots))
                if sink.rows == 0:
                    raise empty_region(s, filters)
                sink.finish()
            return sink

        sink = once_more_if_cache_damaged(s, run)
    if saved is not None:
        from mtquery.io.fsio import atomic_write_text

        atomic_write_text(saved, clf.to_json() + "\n")
    table = annotate(sink.table(), sink.rows, sink.rows - sink.valid)
    return ClassifyResult(table=table, detections=sink.found(), model=clf, threshold=t,
                          cv=dict(clf.cv), suggestions=sink.near(), labels=label_info)


def gather_labels(session: Session, filters: Filters, labels: str | Path | None,
                  label_column: str, positive_label: str | None,
                  positives: Sequence[str] | None, negatives: Sequence[str] | None,
                  background: int | None, seed: int, progress: ProgressCallback | None
                  ) -> Labels:
    """The examples with their unit vectors and the background negatives (``background``,
    default 10 per positive, at least 50)."""
    from mtquery.find.labels import (
        as_labels,
        attach_vectors,
        id_labels,
        read_label_file,
    )
    from mtquery.find.labels import background as draw_background

    emit(progress, "reading labels", 0, message="reading labels")
    if labels is not None:
        table, info = read_label_file(session, labels, label_column, positive_label, filters)
    else:
        table, info = id_labels(session, list(positives or ()), list(negatives or ()))
    pos = int(table.column("y").to_numpy().sum())
    if background is None and pos > 0:
        background = max(BACKGROUND_MIN, BACKGROUND_PER_POSITIVE * pos)
    table = table.append_column("background", pa.array(np.zeros(table.num_rows, bool)))
    if background:
        labelled = set(table.column("unique_id").to_pylist())
        extra = draw_background(session, filters, background, labelled, seed)
        if extra.num_rows == 0:
            from mtquery.find.score import empty_region

            raise empty_region(session, filters)
        table = pa.concat_tables([table.select(extra.column_names), extra])
        info["background"] = extra.num_rows
    table, vectors = attach_vectors(session, table)
    return as_labels(table, vectors, info)
