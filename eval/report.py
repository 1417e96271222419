"""``mtquery eval report``: results JSON files -> comparison tables (markdown, HTML) and PNG
plots (per-class scores; PCA->RGB map of the embeddings over their locations)."""

from __future__ import annotations

import glob
import html
import json
from pathlib import Path

from mtquery.errors import DataError, UsageError
from mtquery.eval.results import SCHEMA
from mtquery.io.fsio import atomic_path, atomic_write_text
from mtquery.io.manifests import EvalResults


def expand(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if any(ch in p for ch in "*?["):
            hits = sorted(glob.glob(p))
            if not hits:
                raise DataError(f"no results files match {p}")
            files += [Path(h) for h in hits]
        else:
            files.append(Path(p))
    if not files:
        raise UsageError("give at least one results JSON file", "paths")
    return files


def load(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"results file not found: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a JSON results file ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise DataError(f"{path}: not an mtquery eval results file (schema {SCHEMA})")
    EvalResults.from_dict(doc, path)  # fields and their types: one line when damaged
    doc["_file"] = str(path)
    return doc


def _pm(entry: dict | None) -> str:
    if not entry:
        return ""
    if entry.get("n", 1) > 1:
        return f"{entry['mean']:.3f} ± {entry['std']:.3f}"
    return f"{entry['mean']:.3f}"


def _name(doc: dict) -> str:
    ds = doc.get("dataset", {}).get("spec", "?")
    models = doc.get("models") or []
    return f"{ds}" + (f" ({', '.join(models)})" if models else "")


def probe_rows(docs: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["result", "embeddings", "labels", "split", "method", "n train/test",
              "OA / mAP", "balanced acc / micro-F1", "macro-F1"]
    rows = []
    for d in docs:
        if d["kind"] != "linear-probe":
            continue
        multi = d["task"]["multi_label"]
        keys = ("map", "micro_f1", "macro_f1") if multi else ("oa", "balanced_accuracy",
                                                              "macro_f1")
        for split, block in d["metrics"]["splits"].items():
            runs = block["runs"]
            ntr = sum(r["n_train"] for r in runs) // len(runs)
            nte = sum(r["n_test"] for r in runs) // len(runs)
            for method, summ in block["summary"].items():
                rows.append([Path(d["_file"]).name, _name(d),
                             f"{Path(d['labels']['path']).name} ({d['labels']['join']})",
                             split, method, f"{ntr}/{nte}"] + [_pm(summ.get(k)) for k in keys])
        gap = d["metrics"].get("gap_random_minus_spatial")
        if gap:
            for method, g in gap.items():
                rows.append([Path(d["_file"]).name, _name(d), "", "gap random−spatial", method,
                             ""] + [f"{g[k]:+.3f}" if k in g else "" for k in keys])
    return header, rows


def retrieval_rows(docs: list[dict]) -> tuple[list[str], list[list[str]]]:
    ks: list[int] = sorted({k for d in docs if d["kind"] == "retrieval"
                            for k in d["config"]["ks"]})
    header = ["result", "embeddings", "labels", "queries"]
    for k in ks:
        header += [f"P@{k}", f"R@{k}", f"mAP@{k}", f"nDCG@{k}"]
    header += ["ANN recall@k", "latency ms (exact batched / ANN p50)"]
    rows = []
    for d in docs:
        if d["kind"] != "retrieval":
            continue
        m = d["metrics"]["metrics"]
        row = [Path(d["_file"]).name, _name(d),
               f"{Path(d['labels']['path']).name} ({d['labels']['join']})",
               str(m.get("queries_used", ""))]
        for k in ks:
            row += [f"{m[f'{name}@{k}']:.3f}" if f"{name}@{k}" in m else ""
                    for name in ("precision", "recall", "map", "ndcg")]
        ann = d["metrics"].get("ann")
        lat = d.get("latency", {})
        if ann:
            row.append(", ".join(f"@{k}: {ann[f'recall@{k}_vs_exact']:.3f}" for k in
                                 d["config"]["ks"] if f"recall@{k}_vs_exact" in ann))
            row.append(f"{lat.get('exact_ms_per_query_batched', 0):.3f} / "
                       f"{lat.get('ann_latency_ms_p50', 0):.3f}")
        else:
            row += ["", f"{lat.get('exact_ms_per_query_batched', 0):.3f}"]
        rows.append(row)
    return header, rows


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _html(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>{body}</tbody>\n</table>"


def markdown_table(docs: list[dict]) -> str:
    for d in docs:
        d.setdefault("_file", "(this run)")
    parts = []
    h, r = probe_rows(docs)
    if r:
        parts.append(_md(h, r))
    h, r = retrieval_rows(docs)
    if r:
        parts.append(_md(h, r))
    return "\n\n".join(parts)


def _plot_per_class(doc: dict, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[str, float]] = {}
    if doc["kind"] == "linear-probe":
        for split, block in doc["metrics"]["splits"].items():
            for method in ("linear", "knn/k20"):
                if method in block["summary"]:
                    series[f"{method} ({split})"] = block["summary"][method]["per_class_f1"]
        ylabel = "F1 (mean over seeds)"
    else:
        per = doc["metrics"].get("per_class_map")
        if not per:
            return False
        series["retrieval"] = per
        ylabel = f"mAP@{max(doc['config']['ks'])}"
    classes = sorted({c for s in series.values() for c in s})
    if not classes:
        return False
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(classes) * max(1, len(series)) + 2), 3.6))
    for i, (name, vals) in enumerate(series.items()):
        xs = [j + i * width for j in range(len(classes))]
        ax.bar(xs, [vals.get(c, 0.0) for c in classes], width=width, label=name)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(classes))])
    ax.set_xticklabels([c if len(c) <= 24 else c[:22] + "…" for c in classes], rotation=30,
                       ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{Path(doc['_file']).stem}: per-class scores", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return True


def _plot_pca(doc: dict, path: Path) -> bool:
    pm = doc.get("pca_map")
    if not pm or not pm.get("lat"):
        return False
    from mtquery.maps import points_map, save

    # the static-map code of `mtquery map`: one panel per separate region, not a world axis
    fig = points_map(pm["lat"], pm["lon"], pm["rgb"],
                     f"{_name(doc)}: first 3 PCA components as RGB "
                     f"({len(pm['lat'])} of {pm['n_total']} fragments)")
    save(fig, path, dpi=110)
    return True


def make_report(paths: list[str], output: str | Path, plots: bool = True) -> dict[str, str]:
    """Write ``report.md``, ``report.html`` and the plots into the folder ``output``."""
    files = expand(paths)
    docs = [load(p) for p in files]
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} is a file; the report needs a folder", "output")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    images: list[tuple[str, str]] = []
    if plots:
        for d in docs:
            stem = Path(d["_file"]).stem
            p = out / f"{stem}_per_class.png"
            if _plot_per_class(d, p):
                images.append((f"{stem}: per-class scores", p.name))
                written[f"{stem}_per_class"] = str(p)
            p = out / f"{stem}_pca_rgb.png"
            if _plot_pca(d, p):
                images.append((f"{stem}: PCA→RGB map", p.name))
                written[f"{stem}_pca"] = str(p)
    ph, pr = probe_rows(docs)
    rh, rr = retrieval_rows(docs)
    md = ["# mtquery eval report", ""]
    html_parts = ["<!doctype html><html><head><meta charset='utf-8'><title>mtquery eval "
                  "report</title><style>table{border-collapse:collapse;font:13px sans-serif}"
                  "td,th{border:1px solid #ccc;padding:3px 6px}</style></head><body>",
                  "<h1>mtquery eval report</h1>"]
    if pr:
        md += ["## Linear probe and k-NN (mean ± std over seeds)", "", _md(ph, pr), ""]
        html_parts += ["<h2>Linear probe and k-NN (mean ± std over seeds)</h2>", _html(ph, pr)]
    if rr:
        md += ["## Retrieval (exact cosine, same-label relevance)", "", _md(rh, rr), ""]
        html_parts += ["<h2>Retrieval (exact cosine, same-label relevance)</h2>", _html(rh, rr)]
    md += ["## Provenance", ""]
    html_parts.append("<h2>Provenance</h2><ul>")
    for d in docs:
        fp = d["dataset"]
        line = (f"{Path(d['_file']).name}: `{' '.join(d['command'])}`; rows used "
                f"{fp.get('rows_used')} (sha256 {str(fp.get('rows_used_sha256', ''))[:12]}); "
                f"labels {Path(d['labels']['path']).name} sha256 {d['labels']['sha256'][:12]}; "
                f"mtquery {d['versions'].get('mtquery')}")
        md.append(f"- {line}")
        html_parts.append(f"<li>{html.escape(line)}</li>")
    html_parts.append("</ul>")
    if images:
        md += ["", "## Plots", ""]
        html_parts.append("<h2>Plots</h2>")
        for title, name in images:
            md.append(f"![{title}]({name})")
            html_parts.append(f"<figure><img src='{html.escape(name)}'><figcaption>"
                              f"{html.escape(title)}</figcaption></figure>")
    html_parts.append("</body></html>")
    atomic_write_text(out / "report.html", "\n".join(html_parts) + "\n")
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    written["html"] = str(out / "report.html")
    written["markdown"] = str(out / "report.md")
    return written
