"""The unit of work of the generator, one shard of samples, as steps every engine runs.

:func:`fragment_groups` decodes samples, cuts their Core windows and groups them into the model
batches; :func:`embed_group` runs the model on a group; :func:`pack_group` makes its rows;
:func:`build_table` the shard's table (written by
:func:`mtquery.generate.pipeline.write_shard`). The local engine calls them in one process,
the Ray engine (:mod:`mtquery.generate.engine_ray`) as Ray Data stages; both cut the same
batches, so they write the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import shapely

from mtquery.generate.family import LoadedModel
from mtquery.generate.fastids import fast_unique_ids as unique_ids
from mtquery.generate.fragment import fragment_footprints, fragment_grid
from mtquery.generate.models import forward
from mtquery.generate.registry import ModelSpec
from mtquery.generate.sample import CORE_PX_10M, Sample, SampleError
from mtquery.generate.sources import Source
from mtquery.generate.thumbnails import fragment_thumbnails
from mtquery.standard.schema import arrow_schema, embedding_array, with_geo_metadata


@dataclass
class Timings:
    decode: float = 0.0
    fragment: float = 0.0
    preprocess: float = 0.0  # the Ray engine's CPU preprocessing (local: part of model)
    model: float = 0.0
    pack: float = 0.0
    write: float = 0.0
    thumbnails: float = 0.0  # image chips (mtquery.generate.thumbnails)

    def as_dict(self) -> dict:
        return {k: round(v, 4) for k, v in self.__dict__.items()}

    def add(self, other: dict) -> None:
        for k, v in other.items():
            setattr(self, k, getattr(self, k) + v)


class ShardTask(NamedTuple):
    """Samples ``start..stop-1`` of input ``input`` -> shard ``part-IIII-KKKKK``."""

    input: int
    shard: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"part-{self.input:04d}-{self.shard:05d}"


@dataclass
class Group:
    """Whole samples of one shard whose fragments go through the model together, cut into
    batches of ``batch_size`` (batches span samples). ``index`` counts the groups of the shard;
    the ``last`` one may be empty and carries the failures after the last full group."""

    index: int
    last: bool
    samples: list[tuple[Sample, np.ndarray]]  # (sample without its bands, pixel_bbox)
    fragments: np.ndarray  # (n, bands, f, f) float32 raw values
    failed: list[dict] = field(default_factory=list)
    thumbs: list[bytes] | None = None  # one image chip per fragment (None: not made)


def extract_fragments(image: np.ndarray, pixel_bbox: np.ndarray) -> np.ndarray:
    """(n, bands, f, f) fragments of a (bands, H, W) image, gathered in one indexing op."""
    f = int(pixel_bbox[0, 2] - pixel_bbox[0, 0])
    win = np.lib.stride_tricks.sliding_window_view(image, (f, f), axis=(1, 2))
    return np.ascontiguousarray(win[:, pixel_bbox[:, 0], pixel_bbox[:, 1]].transpose(1, 0, 2, 3))


def fragment_groups(source: Source, spec: ModelSpec, start: int, stop: int, batch_size: int,
                    timings: Timings | None = None, thumbnails: bool = False
                    ) -> Iterator[Group]:
    """Decode samples start..stop-1 of ``source``, cut their Core windows into fragments and
    group them: a group closes as soon as it holds ``batch_size`` fragments or more, so every
    engine embeds the same batches. Unreadable samples are listed in the group's ``failed``.
    ``thumbnails``: each group also carries an image chip per fragment."""
    timings = timings if timings is not None else Timings()
    pb = fragment_grid(CORE_PX_10M, spec.fragment_size)  # other sizes: computed per sample
    pending: list[tuple[Sample, np.ndarray, np.ndarray]] = []
    failed: list[dict] = []
    n_pending = index = 0
    t0 = time.perf_counter()
    for _i, smp, err in source.samples(start, stop, spec.bands):
        try:
            if err is not None:
                raise SampleError(err)
            img = smp.stack(spec.bands)
            t1 = time.perf_counter()
            timings.decode += t1 - t0
            if img.shape[1] < spec.fragment_size:
                raise SampleError(f"image of {img.shape[1]} px is smaller than the "
                                  f"{spec.fragment_size} px fragment")
            spb = pb if img.shape[1] == CORE_PX_10M else fragment_grid(img.shape[1],
                                                                       spec.fragment_size)
            fr = extract_fragments(img, spb)
            timings.fragment += time.perf_counter() - t1
        except SampleError as exc:
            failed.append({"grid_cell": smp.grid_cell, "product_id": smp.product_id,
                           "source": smp.ref, "error": str(exc)})
            t0 = time.perf_counter()
            continue
        pending.append((replace(smp, bands={}), spb, fr))
        n_pending += len(fr)
        if n_pending >= batch_size:
            yield _group(index, False, pending, failed, spec, timings if thumbnails else None)
            index += 1
            pending, failed, n_pending = [], [], 0
        t0 = time.perf_counter()
    yield _group(index, True, pending, failed, spec, timings if thumbnails else None)


def _group(index: int, last: bool, pending: list, failed: list, spec: ModelSpec,
           thumbs_timings: Timings | None = None) -> Group:
    """A group of the pending samples; with ``thumbs_timings``, their image chips too."""
    if pending:
        frags = np.concatenate([p[2] for p in pending])
    else:
        frags = np.zeros((0, len(spec.bands), spec.fragment_size, spec.fragment_size),
                         np.float32)
    thumbs = None
    if thumbs_timings is not None:
        t0 = time.perf_counter()
        thumbs = fragment_thumbnails(frags, spec.bands)
        thumbs_timings.thumbnails += time.perf_counter() - t0
    return Group(index, last, [(s, pb) for s, pb, _ in pending], frags, list(failed), thumbs)


def embed_group(lm: LoadedModel, fragments: np.ndarray, batch_size: int) -> np.ndarray:
    """(n, dim) embeddings of a group's fragments, in batches of ``batch_size``."""
    if not len(fragments):
        return np.zeros((0, lm.spec.dim), np.float32)
    return np.concatenate([forward(lm, fragments[i:i + batch_size])
                           for i in range(0, len(fragments), batch_size)])


def pack_sample(sample: Sample, pixel_bbox: np.ndarray, emb: np.ndarray) -> dict[str, object]:
    """Column arrays of one sample's rows, computed vectorised over its fragments."""
    fp = fragment_footprints(pixel_bbox, sample.origin, sample.pixel_size, sample.crs)
    n = len(pixel_bbox)
    ts, pid = [sample.timestamp] * n, [sample.product_id] * n
    return {
        "unique_id": unique_ids(fp.geometry, ts, pid, emb),
        "embedding": emb,
        "timestamp": ts,
        "product_id": pid,
        "grid_cell": [sample.grid_cell] * n,
        "grid_row_u": np.full(n, sample.grid_row_u, dtype=np.int16),
        "grid_col_r": np.full(n, sample.grid_col_r, dtype=np.int16),
        "geometry": shapely.to_wkb(fp.geometry),
        "centre_lat": fp.centre_lat.astype(np.float32),
        "centre_lon": fp.centre_lon.astype(np.float32),
        "utm_footprint": shapely.to_wkt(fp.utm_geometry, rounding_precision=-1),
        "utm_crs": [sample.crs] * n,
        "pixel_bbox": pixel_bbox,
    }


def pack_group(samples: list[tuple[Sample, np.ndarray]], embs: np.ndarray,
               thumbs: list[bytes] | None = None) -> list[dict]:
    """Row parts (one per sample) of a group from its embeddings, in sample order; with
    ``thumbs`` (one per fragment), each part carries its ``thumbnail`` list."""
    parts, j = [], 0
    for smp, spb in samples:
        part = pack_sample(smp, spb, embs[j:j + len(spb)])
        if thumbs is not None:
            part["thumbnail"] = thumbs[j:j + len(spb)]
        parts.append(part)
        j += len(spb)
    return parts


def build_table(parts: list[dict[str, object]], dim: int) -> pa.Table:
    schema = arrow_schema(dim)
    arrays = []
    for fld in schema:
        vals = [p[fld.name] for p in parts]
        if fld.name == "embedding":
            arr = embedding_array(np.concatenate(vals) if vals else np.zeros((0, dim), np.float32))
        elif fld.name == "pixel_bbox":
            pb = np.concatenate(vals) if vals else np.zeros((0, 4), np.int64)
            arr = pa.ListArray.from_arrays(np.arange(0, 4 * len(pb) + 1, 4, dtype=np.int32),
                                           pa.array(pb.reshape(-1).astype(np.int64)))
        elif isinstance(vals[0] if vals else None, np.ndarray):
            arr = pa.array(np.concatenate(vals), type=fld.type)
        else:
            arr = pa.array([x for v in vals for x in v], type=fld.type)
        arrays.append(arr)
    table = pa.Table.from_arrays(arrays, schema=schema)
    bbox = None
    if table.num_rows:
        geoms = shapely.from_wkb(np.concatenate([np.asarray(p["geometry"]) for p in parts]))
        bbox = shapely.total_bounds(geoms).tolist()
    return with_geo_metadata(table, bbox=bbox)
