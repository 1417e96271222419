"""The evaluation protocols end to end: open the dataset, join the labels, sample, run, and
return (and optionally write) the self-describing results document."""

from __future__ import annotations

import time
from pathlib import Path

from mtquery.errors import DataError, UsageError
from mtquery.eval import results
from mtquery.eval.dataset import (
    LabelledSet,
    dataset_fingerprint,
    dataset_models,
    load_labelled,
    sha256_lines,
)
from mtquery.eval.probe import run_probe
from mtquery.eval.retrieval import parse_ks, run_retrieval
from mtquery.eval.sampling import sample
from mtquery.eval.splits import SPLITS
from mtquery.query.session import open_session


def parse_seeds(text: str | list[int] | tuple[int, ...]) -> list[int]:
    if isinstance(text, (list, tuple)):
        seeds = [int(s) for s in text]
    else:
        try:
            seeds = [int(v) for v in str(text).split(",") if v.strip()]
        except ValueError as exc:
            raise UsageError(f"seeds must be comma-separated integers, got {text!r}",
                             "seeds") from exc
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError("seeds must be a non-empty list of distinct integers", "seeds")
    return seeds


def parse_splits(split: str) -> list[str]:
    if split == "both":
        return list(SPLITS)
    if split in SPLITS:
        return [split]
    raise UsageError(f"split must be random, spatial or both, got {split!r}", "split")


def _check_output(output: str | Path | None) -> None:
    if output is not None and Path(output).is_dir():
        raise UsageError(f"output {output} is a directory; give a file name", "output")


def load(dataset, labels, *, label_col, join, multi_label, window_days, start, end,
         max_per_class, one_per_cell, sample_seed, min_class_count
         ) -> tuple[LabelledSet, dict, list[str], dict, dict]:
    timings: dict = {}
    t0 = time.perf_counter()
    session = open_session(dataset)
    timings["open_dataset_s"] = time.perf_counter() - t0
    try:
        ds = load_labelled(session, labels, label_col=label_col, join=join,
                           multi_label=multi_label, window_days=window_days,
                           start=start, end=end)
        fingerprint = dataset_fingerprint(session)
        models = dataset_models(session)
    finally:
        session.close()
    timings["load_s"] = time.perf_counter() - t0
    timings.update(ds.info.pop("_timings", {}))
    ds, sampling = sample(ds, one_per_cell=one_per_cell, max_per_class=max_per_class,
                          min_class_count=min_class_count, seed=sample_seed)
    fingerprint["rows_used"] = len(ds)
    fingerprint["rows_used_sha256"] = sha256_lines(sorted(ds.unique_id.tolist()))
    counts: dict[str, int] = {}
    for t in ds.labels:
        for c in t:
            counts[c] = counts.get(c, 0) + 1
    task = {"multi_label": ds.multi_label, "n_samples": len(ds), "dim": int(ds.X.shape[1]),
            "classes": ds.classes, "class_counts": dict(sorted(counts.items())),
            "sampling": sampling}
    return ds, fingerprint, models, task, timings


def linear_probe(dataset, labels, *, label_col: str | None = None, join: str = "unique_id",
                 split: str = "random", seeds="0,1,2", train_fraction: float = 0.8,
                 h3_res: int | None = None, buffer_rings: int = 0, multi_label: str = "auto",
                 window_days: int | None = None, start: str | None = None,
                 end: str | None = None, max_per_class: int | None = None,
                 one_per_cell: bool = False, sample_seed: int = 0, min_class_count: int = 2,
                 knn: bool = True, max_iter: int = 1000, C: float = 1.0,
                 output: str | Path | None = None, argv: list[str] | None = None,
                 pca_map: bool = True) -> dict:
    """Linear probe and k-NN of ``dataset``'s vectors against ``labels`` (see
    ``mtquery eval linear-probe``); the results document, also written to ``output``."""
    _check_output(output)
    seed_list = parse_seeds(seeds)
    split_list = parse_splits(split)
    t_all = time.perf_counter()
    ds, fp, models, task, timings = load(
        dataset, labels, label_col=label_col, join=join, multi_label=multi_label,
        window_days=window_days, start=start, end=end,
        max_per_class=max_per_class, one_per_cell=one_per_cell, sample_seed=sample_seed,
        min_class_count=min_class_count)
    label_info = dict(ds.info)
    res = run_probe(ds, splits=split_list, seeds=seed_list, train_fraction=train_fraction,
                    h3_res=h3_res, buffer_rings=buffer_rings, max_iter=max_iter, C=C, knn=knn)
    timings.update(res.pop("_timings"))
    extra = {}
    if pca_map:
        t0 = time.perf_counter()
        extra["pca_map"] = results.pca_rgb_sample(ds.X, ds.lat, ds.lon, seed=sample_seed)
        timings["pca_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_all
    config = {"seeds": seed_list, "splits": split_list, "train_fraction": train_fraction,
              "h3_res": h3_res, "buffer_rings": buffer_rings, "multi_label": multi_label,
              "max_per_class": max_per_class, "one_per_cell_date": one_per_cell,
              "sample_seed": sample_seed, "min_class_count": min_class_count,
              "knn_ks": [1, 5, 20] if knn else [], "logreg": {"C": C, "max_iter": max_iter,
                                                              "solver": "lbfgs"}}
    doc = results.build("linear-probe", argv=argv, dataset=fp, labels=label_info, models=models,
                        config=config, task=task, metrics=res, timings=timings, extra=extra)
    results.write(doc, output)
    return doc


def _mtquery_index(dataset):
    """The dataset's own ANN index (``mtquery index build``), checked fresh."""
    from mtquery.io.datasets import resolve
    from mtquery.vectors.index import open_for

    found = open_for(resolve(dataset))
    if found is None:
        raise DataError("ann='index': the dataset has no index; run 'mtquery index build' "
                        "first", "ann")
    return found


def retrieval(dataset, labels, *, label_col: str | None = None, join: str = "unique_id",
              ks="1,5,10,50", n_queries: int = 1000, seed: int = 0,
              multi_label: str = "auto", window_days: int | None = None,
              start: str | None = None, end: str | None = None,
              max_per_class: int | None = None, one_per_cell: bool = False,
              min_class_count: int = 2, exclude_same_cell: bool = False,
              ann: str | None = None, output: str | Path | None = None,
              argv: list[str] | None = None, pca_map: bool = True) -> dict:
    """Retrieval metrics of ``dataset``'s vectors with same-label relevance from ``labels``
    (see ``mtquery eval retrieval``); the results document, also written to ``output``."""
    _check_output(output)
    k_list = parse_ks(ks)
    t_all = time.perf_counter()
    ds, fp, models, task, timings = load(
        dataset, labels, label_col=label_col, join=join, multi_label=multi_label,
        window_days=window_days, start=start, end=end,
        max_per_class=max_per_class, one_per_cell=one_per_cell, sample_seed=seed,
        min_class_count=min_class_count)
    label_info = dict(ds.info)
    res = run_retrieval(ds, ks=k_list, n_queries=n_queries, seed=seed,
                        exclude_same_cell=exclude_same_cell, ann=ann,
                        ann_index=_mtquery_index(dataset) if ann == "index" else None)
    timings.update(res.pop("_timings"))
    # latencies are timings, not metrics: keep `metrics` reproducible
    latency = {"exact_ms_per_query_batched": res.pop("exact_latency_ms_per_query_batched")}
    if "ann" in res:
        a = res["ann"]
        for key in ("build_s", "latency_ms_p50", "latency_ms_mean"):
            latency[f"ann_{key}"] = a.pop(key)
    extra = {"latency": latency}
    if pca_map:
        extra["pca_map"] = results.pca_rgb_sample(ds.X, ds.lat, ds.lon, seed=seed)
    timings["total_s"] = time.perf_counter() - t_all
    config = {"ks": k_list, "queries": n_queries, "seed": seed, "multi_label": multi_label,
              "max_per_class": max_per_class, "one_per_cell_date": one_per_cell,
              "min_class_count": min_class_count, "exclude_same_cell": exclude_same_cell,
              "ann": ann, "similarity": "cosine (exact, float32 matmul)",
              "relevance": "shares a label with the query"}
    doc = results.build("retrieval", argv=argv, dataset=fp, labels=label_info, models=models,
                        config=config, task=task, metrics=res, timings=timings, extra=extra)
    results.write(doc, output)
    return doc
