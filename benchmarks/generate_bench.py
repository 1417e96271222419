#!/usr/bin/env python
"""Generation benchmark: per 1068 px sample, the time of each stage (decode, fragment,
preprocess, model, pack) for the spectral baseline, the tiny test models and the real
architectures with random weights, plus the packing time of a per-fragment loop in the style
of the reference (a pyproj Transformer per fragment, Python loop per fragment) next to the
vectorised packing, measured in the same run.

The sample is a real Core-layout sample (cell 419U_667L, 13 bands) built from the committed
Virginia scene by tests/data/core_virginia/make_data.py.

    python benchmarks/generate_bench.py [--models spectral,ssl4eo-s2l1c-tiny,...] [--repeat 3]
        [--device cpu] [--real]   # --real adds ssl4eo-s2l1c, ssl4eo-s1rtc, dinov2, siglip

``--engines`` instead compares the engines on the same input (the 9 Core samples of the
Virginia scene, or ``--samples N`` of them): samples/s of ``generate(engine="local")`` and of
``generate(engine="ray")`` on a local Ray using every core, the Ray overhead as the ratio of
their wall times (both include loading the model; Ray's start-up is timed apart), and whether
the rows are the same. With a CUDA GPU it adds GPU rows (local on ``cuda``, Ray with one GPU
per actor) and, for the torch models, fp16 / bf16 against fp32 on the GPU (largest absolute
difference and lowest cosine between the vectors):

    python benchmarks/generate_bench.py --engines [--models spectral,dinov2-tiny] [--real]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely

ROOT = Path(__file__).resolve().parents[1]
TINY = ["spectral", "ssl4eo-s2l1c-tiny", "ssl4eo-s1rtc-tiny", "siglip-tiny", "dinov2-tiny"]
REAL = ["ssl4eo-s2l1c", "ssl4eo-s1rtc", "dinov2", "siglip"]


def _maker():
    spec = importlib.util.spec_from_file_location(
        "core_make", ROOT / "tests" / "data" / "core_virginia" / "make_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _best(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def reference_style_pack(sample, pixel_bbox, emb) -> list[dict]:
    """Per-fragment packing as the reference does it: one Transformer per fragment, Python
    loop, one polygon / WKT / centroid / hash per fragment (footprint order kept correct)."""
    from pyproj import Transformer

    rows = []
    ulx, uly = sample.origin
    px = sample.pixel_size
    for i, (r0, c0, r1, c1) in enumerate(pixel_bbox):
        tr = Transformer.from_crs(sample.crs, "EPSG:4326", always_xy=True)
        xs = [ulx + c0 * px, ulx + c1 * px, ulx + c1 * px, ulx + c0 * px]
        ys = [uly - r1 * px, uly - r1 * px, uly - r0 * px, uly - r0 * px]
        lon, lat = tr.transform(xs, ys)
        poly = shapely.Polygon(list(zip(lon, lat, strict=True)))
        utm = shapely.Polygon(list(zip(xs, ys, strict=True)))
        c = poly.centroid
        text = f"{poly.wkt}_{sample.timestamp}_{sample.product_id}_{emb[i]}"
        rows.append({"unique_id": hashlib.sha256(text.encode()).hexdigest(),
                     "embedding": emb[i].tolist(), "timestamp": sample.timestamp,
                     "product_id": sample.product_id, "grid_cell": sample.grid_cell,
                     "grid_row_u": sample.grid_row_u, "grid_col_r": sample.grid_col_r,
                     "geometry": poly.wkb, "centre_lat": c.y, "centre_lon": c.x,
                     "utm_footprint": utm.wkt, "utm_crs": sample.crs,
                     "pixel_bbox": [int(v) for v in (r0, c0, r1, c1)]})
    import pyarrow as pa

    return pa.Table.from_pylist(rows)


def _run(model: str, src: list[str], out: Path, **kw
         ) -> tuple[float, int, list[str], np.ndarray]:
    """(seconds, samples embedded, unique ids, vectors) of one generate call."""
    import pyarrow.parquet as pq

    from mtquery.generate.pipeline import generate

    t0 = time.perf_counter()
    s = generate(model, src, str(out), shard_size=3, **kw)
    dt = time.perf_counter() - t0
    t = pq.read_table(sorted(out.glob("part-*.parquet")))
    emb = np.stack(t.column("embedding").to_numpy(zero_copy_only=False))
    return dt, s.samples_done, t.column("unique_id").to_pylist(), emb


def engines(a) -> None:
    """Local vs Ray samples/s on the same input (+ GPU and fp16/bf16 rows with a GPU)."""
    import os

    import ray
    import torch

    from mtquery.generate import get_model_spec

    names = [m for m in a.models.split(",") if m] + (REAL if a.real else [])
    tmp = Path(tempfile.mkdtemp())
    src = [str(_maker().build(tmp / "core", n_cells=a.samples).parent.parent)] * a.copies
    gpu = torch.cuda.is_available()
    cpus = os.cpu_count() or 1
    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, num_gpus=1 if gpu else 0, object_store_memory=1_000_000_000,
             include_dashboard=False, logging_level="error", log_to_driver=False)
    ray_start = time.perf_counter() - t0
    print(f"ray {ray.__version__} start {ray_start:.1f}s, {cpus} CPUs, "
          f"GPU {torch.cuda.get_device_name(0) if gpu else 'none'}, torch {torch.__version__}, "
          f"{a.samples} samples x {a.copies} input copies, batch {a.batch_size}")
    rows, prec = [], []
    for name in names:
        spec = get_model_spec(name)
        w = "random" if not spec.tiny and spec.family != "spectral" else None
        bands = set(spec.bands)
        if bands == {"vv", "vh"}:
            continue  # the Virginia samples are S2
        for dev in ["cpu"] + (["cuda"] if gpu else []):
            gpw = 1 if dev == "cuda" else 0
            d = tmp / f"{name}-{dev}"
            lt, n, lid, _ = _run(name, src, d / "local", weights=w, device=dev,
                                 batch_size=a.batch_size)
            rt, _, rid, _ = _run(name, src, d / "ray", weights=w, engine="ray",
                                 gpus_per_worker=gpw, batch_size=a.batch_size,
                                 device=dev)
            rows.append((name, dev, n, n / lt, n / rt, rt / lt, rt - lt, lid == rid))
            if dev == "cuda" and spec.family != "spectral":
                _, _, _, e32 = _run(name, src, d / "fp32", weights=w, device="cuda",
                                    batch_size=a.batch_size)
                for p in ("fp16", "bf16"):
                    _, _, _, ep = _run(name, src, d / p, weights=w, device="cuda",
                                       precision=p, batch_size=a.batch_size)
                    cos = np.sum(e32 * ep, 1) / (np.linalg.norm(e32, axis=1)
                                                 * np.linalg.norm(ep, axis=1) + 1e-30)
                    prec.append((name, p, float(np.abs(e32 - ep).max()), float(cos.min())))
    ray.shutdown()
    print("| model | device | samples | local samples/s | ray samples/s | ray/local time | "
          "ray - local s | same rows |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.2f}x | "
              f"{r[6]:.1f} | {'yes' if r[7] else 'no'} |")
    if prec:
        print("\n| model | precision | max abs diff to fp32 | min cosine to fp32 |")
        print("|---|---|---|---|")
        for r in prec:
            print(f"| {r[0]} | {r[1]} | {r[2]:.3g} | {r[3]:.6f} |")
    print("times include loading the model (both engines) and, for Ray, starting its "
          "actors and tasks; Ray's own start-up above is not in them")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default=",".join(TINY))
    ap.add_argument("--real", action="store_true", help="add the real architectures (random)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--engines", action="store_true",
                    help="compare the local and the Ray engine instead of timing stages")
    ap.add_argument("--samples", type=int, default=9, help="--engines: samples (1-9)")
    ap.add_argument("--copies", type=int, default=1,
                    help="--engines: give the input N times (N x samples to embed)")
    a = ap.parse_args()
    if a.engines:
        return engines(a)
    import torch

    from mtquery.generate import models as M
    from mtquery.generate.core_parquet import CoreInput
    from mtquery.generate.fastids import fast_unique_ids
    from mtquery.generate.fragment import fragment_footprints, fragment_grid
    from mtquery.generate.pipeline import build_table, extract_fragments, pack_sample
    from mtquery.generate.sample import Sample
    from mtquery.standard.ids import unique_ids

    names = [m for m in a.models.split(",") if m] + (REAL if a.real else [])
    tmp = tempfile.mkdtemp()
    part = _maker().build(tmp, n_cells=5)
    core = CoreInput(str(part))
    idx = 4  # 419U_667L, fully inside the scene
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {a.device}, "
          f"python {sys.version.split()[0]}")
    rows = []
    for name in names:
        spec = M.get_model_spec(name)
        bands = spec.bands if spec.bands != ("vv", "vh") else ("B04", "B08")  # S1: stand-in
        decode_t, (_, s, err) = _best(lambda b=bands: next(core.samples(idx, idx + 1, b)),
                                      a.repeat)
        assert err is None, err
        img = s.stack(bands)
        if spec.bands == ("vv", "vh"):  # reflectance -> plausible linear power
            img = img / 10000.0 * 0.3
        pb = fragment_grid(img.shape[1], spec.fragment_size)
        frag_t, frags = _best(lambda i=img, p=pb: extract_fragments(i, p), a.repeat)
        weights = "random" if not spec.tiny and spec.family != "spectral" else None
        lm = M.load_model(name, weights=weights, device=a.device)

        def pre(lm=lm, frags=frags):
            if lm.spec.family == "spectral":
                return None
            out = lm.family.preprocess(lm, frags)  # each family owns its preprocessing
            if lm.device.startswith("cuda"):
                torch.cuda.synchronize()
            return out

        def full(lm=lm, frags=frags):
            out = np.concatenate([M.forward(lm, frags[i:i + a.batch_size])
                                  for i in range(0, len(frags), a.batch_size)])
            if lm.device.startswith("cuda"):
                torch.cuda.synchronize()
            return out

        full(lm, frags[:2])  # warm-up
        pre_t, _ = _best(pre, a.repeat)
        all_t, emb = _best(full, a.repeat)
        model_t = max(all_t - pre_t, 0.0) if spec.family != "spectral" else all_t
        smp = Sample(s.grid_cell, s.grid_row_u, s.grid_col_r, s.product_id, s.timestamp,
                     s.crs, s.origin, s.pixel_size)
        pack_t, _ = _best(lambda smp=smp, pb=pb, emb=emb, d=spec.dim:
                          build_table([pack_sample(smp, pb, emb)], d), a.repeat)
        loop_t, _ = _best(lambda smp=smp, pb=pb, emb=emb: reference_style_pack(smp, pb, emb),
                          a.repeat)
        fp = fragment_footprints(pb, smp.origin, smp.pixel_size, smp.crs)
        n = len(pb)
        ids_t, _ = _best(lambda fp=fp, emb=emb, n=n, smp=smp: fast_unique_ids(
            fp.geometry, [smp.timestamp] * n, [smp.product_id] * n, emb), a.repeat)
        ref_ids_t, _ = _best(lambda fp=fp, emb=emb, n=n, smp=smp: unique_ids(
            fp.geometry, [smp.timestamp] * n, [smp.product_id] * n, emb), a.repeat)
        outside = decode_t + frag_t + pre_t + pack_t
        geo_ratio = (loop_t - ref_ids_t) / max(pack_t - ids_t, 1e-9)
        rows.append((name, len(pb), decode_t, frag_t, pre_t, model_t, pack_t, loop_t,
                     outside / model_t if model_t else float("nan"), loop_t / pack_t,
                     geo_ratio))
    hdr = ("model", "frags", "decode", "fragment", "preproc", "model", "pack", "pack-loop",
           "outside/model", "loop/pack", "geo loop/pack")
    print(" | ".join(f"{h:>13s}" for h in hdr))
    for r in rows:
        cells = [f"{r[0]:>13s}", f"{r[1]:>13d}"] + [f"{v * 1000:>11.1f}ms" for v in r[2:8]] + [
            f"{r[8]:>13.2f}", f"{r[9]:>12.1f}x", f"{r[10]:>12.1f}x"]
        print(" | ".join(cells))
    print("times: best of", a.repeat, "per 1068 px sample; 'outside' = decode + fragment + "
          "preproc + pack; pack-loop = per-fragment reference-style packing; geo loop/pack = "
          "the same ratio without the unique_id hashing (numpy str of each vector, mandated by "
          "the spec, dominates both)")
    print("median loop/pack speed-up:", round(statistics.median(r[9] for r in rows), 1))


if __name__ == "__main__":
    main()
