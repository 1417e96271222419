"""The embedding metadata block: what a Parquet file's vectors are, in the file itself.

Every Parquet file mtquery writes with an embedding column carries, beside the GeoParquet
``geo`` metadata, one more key-value entry ``mtquery.embedding`` (:data:`KEY`): a JSON object
that says which column holds the vectors, their dimension and type, the model and weights
that made them, their normalisation, the grid they sit on and, for a converted file, which
source columns played which role. Field names follow the draft STAC embeddings extension
(``emb:`` prefix, :data:`EXTENSION`) where it has one for the concept; the rest are
``mtquery:`` fields. docs/metadata.md lists them with an example.

    KEY                       the Parquet key-value metadata key
    block(dim, dtype, ...)    a new block
    with_block(schema, blk)   the schema with the block added (``geo`` and the rest kept)
    read_block(metadata)      the block of a file's metadata (None: none; DataError: malformed)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from mtquery.errors import DataError

KEY = b"mtquery.embedding"
#: the draft STAC embeddings extension whose field names the block follows
EXTENSION = "https://stac-extensions.github.io/embeddings/v0.0.1/schema.json"
VERSION = 1
GRID_ID = "major-tom"
#: how ``emb:postprocessing`` (a STAC processing expression) names a normalisation
NORMALISATION_FORMAT = "mtquery:normalisation"
ROLES = ("vector", "id", "time", "place")
#: STAC common metadata ``data_type`` values the block accepts for the vectors
DATA_TYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
              "float16", "float32", "float64")
_ALIASES = {"halffloat": "float16", "half": "float16", "float": "float32",
            "single": "float32", "double": "float64"}


def dtype_name(dtype: str | pa.DataType) -> str:
    """The STAC ``data_type`` of a vector value type: an Arrow type (``float``, a list of
    ``halffloat``...) or a name (``float32``, ``double``, ``<f4`` ...)."""
    if isinstance(dtype, pa.DataType):
        while pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or \
                pa.types.is_fixed_size_list(dtype):
            dtype = dtype.value_type
        name = str(dtype)
    else:
        name = str(dtype).strip().lower()
        try:
            import numpy as np

            if name not in _ALIASES and name not in DATA_TYPES:
                name = np.dtype(name).name
        except TypeError:
            pass
    name = _ALIASES.get(name, name)
    if name not in DATA_TYPES:
        raise DataError(f"embedding data type {dtype!s} is not one of {', '.join(DATA_TYPES)}")
    return name


def block(dim: int, dtype: str = "float32", column: str = "embedding",
          model: str | None = None, weights: str | None = None,
          normalisation: str | None = None, grid_km: float | None = 10.0,
          roles: dict[str, str] | None = None) -> dict:
    """A new embedding metadata block (docs/metadata.md): ``dim`` values of ``dtype`` per
    row in ``column``, made by ``model`` with ``weights`` (name / revision, or the file
    given), normalised ``normalisation`` (``"l2"``, ``"none"``; None: not known), on the
    Major TOM grid of ``grid_km`` spacing (None: no grid), with the column ``roles``
    (``vector`` / ``id`` / ``time`` / ``place`` -> source column) of a converted file."""
    blk: dict = {
        "mtquery:version": VERSION,
        "stac_extensions": [EXTENSION],
        "emb:type": "chip",
        "emb:dimensions": dim,
        "data_type": dtype_name(dtype),
        "mtquery:column": column,
    }
    if model is not None or weights is not None:
        blk["mtquery:model"] = {"name": model, "weights": weights}
    if normalisation is not None:
        blk["emb:postprocessing"] = {"format": NORMALISATION_FORMAT,
                                     "expression": normalisation}
    if grid_km is not None:
        blk["emb:chip_layout"] = {"layout_type": "named_grid", "grid_id": GRID_ID,
                                  "mtquery:spacing_km": grid_km}
    if roles:
        blk["mtquery:roles"] = dict(roles)
    check(blk)
    return blk


def with_block(schema: pa.Schema, blk: dict) -> pa.Schema:
    """``schema`` with ``blk`` under :data:`KEY` in its metadata; the other entries (``geo``,
    pandas, ...) are kept, an older block is replaced."""
    check(blk)
    meta = dict(schema.metadata or {})
    meta[KEY] = json.dumps(blk, sort_keys=True).encode()
    return schema.with_metadata(meta)


def read_block(metadata: Mapping[bytes, bytes] | None) -> dict | None:
    """The block in a file's (or schema's) key-value metadata: None when it has none; a
    one-line DataError naming the problem when it is there but malformed."""
    if not metadata:
        return None
    raw = metadata.get(KEY)
    if raw is None:
        raw = metadata.get(KEY.decode())  # type: ignore[call-overload]
    if raw is None:
        return None
    try:
        blk = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"embedding metadata ({KEY.decode()}) is not JSON: {exc}") from None
    check(blk)
    return blk


def _bad(what: str) -> DataError:
    return DataError(f"embedding metadata ({KEY.decode()}) is malformed: {what}")


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def check(blk: object) -> None:
    """Raise a one-line DataError when ``blk`` is not a well-formed block."""
    if not isinstance(blk, dict):
        raise _bad(f"expected a JSON object, got {type(blk).__name__}")
    version = blk.get("mtquery:version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _bad(f"mtquery:version must be a positive integer (got {version!r})")
    dim = blk.get("emb:dimensions")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise _bad(f"emb:dimensions must be a positive integer (got {dim!r})")
    if blk.get("data_type") not in DATA_TYPES:
        raise _bad(f"data_type must be one of {', '.join(DATA_TYPES)} "
                   f"(got {blk.get('data_type')!r})")
    if not _text(blk.get("mtquery:column")):
        raise _bad(f"mtquery:column must name the vector column (got "
                   f"{blk.get('mtquery:column')!r})")
    model = blk.get("mtquery:model")
    if model is not None and not (isinstance(model, dict) and all(
            model.get(k) is None or isinstance(model.get(k), str) for k in ("name", "weights"))):
        raise _bad(f"mtquery:model must be an object with string name and weights "
                   f"(got {model!r})")
    post = blk.get("emb:postprocessing")
    if post is not None and not (isinstance(post, dict) and _text(post.get("format"))
                                 and "expression" in post):
        raise _bad(f"emb:postprocessing must be an object with format and expression "
                   f"(got {post!r})")
    layout = blk.get("emb:chip_layout")
    if layout is not None:
        km = layout.get("mtquery:spacing_km") if isinstance(layout, dict) else None
        if not isinstance(layout, dict) or not _text(layout.get("layout_type")) or (
                km is not None and (not isinstance(km, (int, float)) or isinstance(km, bool)
                                    or not math.isfinite(km) or km <= 0)):
            raise _bad(f"emb:chip_layout must be an object with layout_type and a positive "
                       f"mtquery:spacing_km (got {layout!r})")
    roles = blk.get("mtquery:roles")
    if roles is not None and not (isinstance(roles, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in roles.items())):
        raise _bad(f"mtquery:roles must map roles to column names (got {roles!r})")


# ---------------------------------------------------------------- reading it back


def describe(blk: dict) -> dict:
    """The block as plain fields: column, dim, dtype, model, weights, normalisation, grid,
    grid_km, roles (None where the block does not say)."""
    model = blk.get("mtquery:model") or {}
    post = blk.get("emb:postprocessing") or {}
    layout = blk.get("emb:chip_layout") or {}
    return {
        "column": blk["mtquery:column"],
        "dim": blk["emb:dimensions"],
        "dtype": blk["data_type"],
        "model": model.get("name"),
        "weights": model.get("weights"),
        "normalisation": (post.get("expression") if post.get("format") == NORMALISATION_FORMAT
                          else None),
        "grid": layout.get("grid_id"),
        "grid_km": layout.get("mtquery:spacing_km"),
        "roles": blk.get("mtquery:roles"),
    }


def summary(blk: dict) -> str:
    """One line for people: ``768 x float32 in 'embedding'; model siglip (weights ...); ...``."""
    d = describe(blk)
    parts = [f"{d['dim']} x {d['dtype']} in {d['column']!r}"]
    if d["model"] or d["weights"]:
        parts.append(f"model {d['model'] or 'unknown'}"
                     + (f" (weights {d['weights']})" if d["weights"] else ""))
    if d["normalisation"]:
        parts.append(f"normalisation {d['normalisation']}")
    if d["grid"]:
        km = d["grid_km"]
        parts.append(f"grid {d['grid']}" + (f" {km:g} km" if km else ""))
    if d["roles"]:
        parts.append("roles " + ", ".join(f"{k}={v}" for k, v in d["roles"].items()))
    return "; ".join(parts)


def common(blocks: Sequence[dict | None]) -> dict | None:
    """The fields every one of ``blocks`` agrees on (a file without a block agrees on none);
    None when there are no blocks or they share no field."""
    if not blocks or any(b is None for b in blocks):
        return None
    first, rest = blocks[0], blocks[1:]
    out = {k: v for k, v in first.items() if all(b.get(k) == v for b in rest)}  # type: ignore[union-attr]
    return out or None


def carried(blocks: Sequence[dict | None], dim: int, dtype: str | pa.DataType,
            column: str = "embedding", model: str | None = None,
            weights: str | None = None) -> dict:
    """The block a writer copying ``blocks`` (those of its inputs) writes for its output of
    ``dim`` x ``dtype`` vectors in ``column``: what its inputs agree on (model, weights,
    normalisation, grid, roles), with the output's own dimension, type and column;
    ``model`` / ``weights`` fill in when the inputs do not say."""
    shared = common(blocks)
    if shared is None:  # nothing known from the inputs: the writer's own knowledge
        return block(dim, dtype, column, model=model, weights=weights)
    d = describe({**shared, "mtquery:column": column, "emb:dimensions": dim,
                  "data_type": dtype_name(dtype)})
    known = "mtquery:model" in shared
    return block(dim, dtype, column, model=d["model"] if known else model,
                 weights=d["weights"] if known else weights,
                 normalisation=d["normalisation"],
                 grid_km=d["grid_km"] if "emb:chip_layout" in shared else None,
                 roles=d["roles"])


def file_block(path: str, metadata: Mapping[bytes, bytes] | None = None) -> dict | None:
    """The block of Parquet file ``path``: of its footer (a local file), or of ``metadata``
    (its key-value metadata, e.g. from a remote footer) when given; a malformed block is a
    DataError naming the file."""
    try:
        if metadata is None:
            import pyarrow.parquet as pq

            metadata = pq.read_schema(path).metadata
        return read_block(metadata)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def known_model(local_files: Sequence[str | object], catalog_model: str | None = None
                ) -> tuple[str | None, str | None]:
    """(model, weights) of files without a block, where mtquery knows them: the generation
    manifest of their folder (``_mtquery/manifest.json``), else ``catalog_model`` (the
    catalog entry's model); weights from the generator's registry when the manifest does
    not name them; (None, None) when nothing says."""
    from pathlib import Path

    from mtquery.io.manifests import GenerationManifest

    parents = {Path(str(f)).parent for f in local_files}
    if len(parents) == 1:
        parent = parents.pop()
        for path in (parent / "_mtquery" / "manifest.json", parent / "manifest.json"):
            if not path.is_file():
                continue
            try:
                m = GenerationManifest.read(path)
            except DataError:
                break  # a damaged or other version's manifest says nothing
            name = m.model_name
            wname, rev = m.model.get("weights_name"), m.model.get("weights_revision")
            weights = (f"{wname} @ {rev}" if wname and rev not in (None, "", "-")
                       else (wname or None))
            if name:
                return name, weights or registry_weights(name)
    return catalog_model, registry_weights(catalog_model)


def registry_weights(model: str | None) -> str | None:
    """The published weights (name @ pinned revision) of a model of the generator's
    registry; None for another model."""
    if not model:
        return None
    from mtquery.generate.registry import REGISTRY

    spec = REGISTRY.get(model)
    if spec is None or not spec.weights_name:
        return None
    if spec.weights_revision in ("", "-"):
        return spec.weights_name
    return f"{spec.weights_name} @ {spec.weights_revision}"


def of_files(blocks: Sequence[dict | None]) -> tuple[dict | None, str | None]:
    """A dataset's block from those of its files: the first file's that has one, and a note
    when not every file carries that same block (None when they all do)."""
    found = [b for b in blocks if b is not None]
    if not found:
        return None, None
    distinct = len({json.dumps(b, sort_keys=True) for b in found})
    if len(found) == len(blocks) and distinct == 1:
        return found[0], None
    note = f"{len(found)} of {len(blocks)} file(s) carry a block"
    if distinct > 1:
        note += f", {distinct} different ones (the first file's is shown)"
    return found[0], note


@dataclass(frozen=True)
class Origin:
    """What a writer copying embedding files knows of them: their blocks, the model and
    weights mtquery knows for files without one, and the column roles they were read with
    (files of another shape)."""

    blocks: tuple[dict | None, ...]
    model: str | None = None
    weights: str | None = None
    roles: dict[str, str] | None = None

    def block(self, dim: int, dtype: str | pa.DataType, column: str = "embedding") -> dict:
        """The block of the output: what the inputs' blocks agree on, else the model known;
        the output's dimension, type and column; the roles the inputs were read with."""
        blk = carried(list(self.blocks), dim, dtype, column, model=self.model,
                      weights=self.weights)
        if self.roles:
            blk["mtquery:roles"] = dict(self.roles)
            check(blk)
        return blk


def origin_of(files: Sequence[str | object], catalog_model: str | None = None,
              metadata: Sequence[Mapping[bytes, bytes] | None] | None = None,
              roles: dict[str, str] | None = None) -> Origin:
    """The :class:`Origin` of ``files``: their blocks (from ``metadata``, their footers'
    key-value metadata, when given; else read from the local files), the model of their
    generation manifest or ``catalog_model``, ``roles``."""
    names = [str(f) for f in files]
    if metadata is None:
        blocks = tuple(file_block(f) for f in names)
    else:
        blocks = tuple(file_block(f, m or {}) for f, m in zip(names, metadata))
    model, weights = known_model([f for f in names if "://" not in f], catalog_model)
    return Origin(blocks, model, weights, roles)
