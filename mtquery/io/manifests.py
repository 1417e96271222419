"""Typed manifests: what mtquery writes beside an output and trusts when it reads it back.

Each manifest is a dataclass naming its ``schema`` (``"mtquery-<what>/<version>"``). Reading
one checks the schema and the types of its fields; a manifest of another schema or version, or
a damaged one, is refused in one line saying how to make a fresh one (``rebuild``). Fields a
newer writer added travel in ``extra`` and are written back unchanged.

    GenerationManifest   DIR/_mtquery/manifest.json        (``mtquery generate``)
    EvalResults          eval results JSON                  (``mtquery eval ...``)
    IndexManifest        INDEX/manifest.json                (``mtquery index build``)
    StoreMeta            STORE/meta.json                    (a vector store: index or cache)
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from mtquery.errors import DataError
from mtquery.io.fsio import atomic_write_text

M = TypeVar("M", bound="Manifest")

_CHECK = {"int": int, "float": (int, float), "str": str, "bool": bool, "dict": dict,
          "list": list}


@dataclass
class Manifest:
    """Base of every manifest: ``SCHEMA`` says what and which version; ``REBUILD`` how to
    make a fresh one when a read refuses it."""

    SCHEMA: ClassVar[str | int] = ""
    SCHEMA_KEY: ClassVar[str] = "schema"
    REBUILD: ClassVar[str] = ""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {self.SCHEMA_KEY: self.SCHEMA}
        for f in dataclasses.fields(self):
            if f.name != "extra":
                out[f.name] = getattr(self, f.name)
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls: type[M], doc: object, source: str | Path = "manifest") -> M:
        """The manifest in ``doc``, checked: its schema, its required fields and their
        types. Anything else raises a one-line ``DataError`` naming ``source``."""
        if not isinstance(doc, dict):
            raise DataError(f"{source}: not a manifest (a JSON object); {cls.REBUILD}")
        got = doc.get(cls.SCHEMA_KEY)
        if got != cls.SCHEMA or isinstance(got, bool):
            what = f"schema {got!r}" if got else "no schema (an older mtquery)"
            raise DataError(f"{source}: {what}, this mtquery reads {cls.SCHEMA!r}; "
                            f"{cls.REBUILD}")
        hints = typing.get_type_hints(cls)
        values, extra = {}, {}
        names = {f.name: f for f in dataclasses.fields(cls) if f.name != "extra"}
        for key, value in doc.items():
            if key == cls.SCHEMA_KEY:
                continue
            (values if key in names else extra)[key] = value
        for name, f in names.items():
            required = (f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING)
            if name not in values:
                if required:
                    raise DataError(f"{source}: field {name!r} is missing; {cls.REBUILD}")
                continue
            if not _type_ok(values[name], hints[name]):
                raise DataError(f"{source}: field {name!r} has the wrong type "
                                f"({type(values[name]).__name__}); {cls.REBUILD}")
        return cls(**values, extra=extra)

    @classmethod
    def read(cls: type[M], path: str | Path) -> M:
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise DataError(f"{path}: no manifest; {cls.REBUILD}") from exc
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: unreadable or truncated manifest ({exc}); "
                            f"{cls.REBUILD}") from exc
        return cls.from_dict(doc, path)

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str) + "\n"

    def write(self, path: str | Path) -> None:
        """Write atomically (temp file + rename)."""
        atomic_write_text(path, self.dumps())


def _type_ok(value: object, hint: object) -> bool:
    if value is None:
        return _allows_none(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(hint) if a is not type(None))
    base = origin or hint
    name = getattr(base, "__name__", str(base))
    want = _CHECK.get(name)
    if want is None:
        return True  # Any and friends
    if want in (int, (int, float)) and isinstance(value, bool):
        return False
    return isinstance(value, want)


def _allows_none(hint: object) -> bool:
    return hint is Any or type(None) in typing.get_args(hint)


@dataclass
class GenerationManifest(Manifest):
    """Provenance and counts of a ``generate`` run: the model and its weights, the
    preprocessing, the engine, the inputs and what came of them."""

    SCHEMA: ClassVar[str] = "mtquery-generation/1"
    REBUILD: ClassVar[str] = "rerun the same 'mtquery generate' command to rewrite it"
    created: str = ""
    model: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)
    precision: str = "fp32"
    device: str | None = None
    engine: dict = field(default_factory=dict)
    fragmenting: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)
    limit: int | None = None
    counts: dict = field(default_factory=dict)
    failed: list = field(default_factory=list)
    shards: list = field(default_factory=list)
    timings_s: dict = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def model_name(self) -> str | None:
        name = self.model.get("name") if isinstance(self.model, dict) else None
        return str(name) if name else None


@dataclass
class EvalResults(Manifest):
    """An evaluation's results: the command, dataset, labels, configuration and seeds around
    the metrics (``mtquery.eval.results``)."""

    SCHEMA: ClassVar[str] = "mtquery-eval/1"
    REBUILD: ClassVar[str] = "rerun the evaluation to write a fresh results file"
    kind: str = ""
    command: list | str = ""
    created_utc: str = ""
    dataset: dict = field(default_factory=dict)
    models: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    task: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class IndexManifest(Manifest):
    """An ANN index: its kind and parameters, the rows and files it was built from, its
    calibration (``mtquery.vectors.build`` writes it, ``mtquery.vectors.index`` reads it)."""

    SCHEMA: ClassVar[str] = "mtquery-ann/2"
    SCHEMA_KEY: ClassVar[str] = "format"
    REBUILD: ClassVar[str] = "rebuild the index with 'mtquery index build'"
    kind: str
    dim: int
    rows: int
    nlist: int
    rerank: int
    metric: str = "cosine"
    nprobe: int | None = None
    bits: int | None = None
    query_bits: int | None = None
    dataset: dict = field(default_factory=dict)
    calibration: dict | None = None
    files: dict = field(default_factory=dict)
    created: str = ""
    #: the column roles of a dataset of another shape (mtquery.io.columns); absent: standard
    columns: dict | None = None


@dataclass(kw_only=True)
class StoreMeta(Manifest):
    """A vector store's ``meta.json``: shape, dtype and the files it was read from."""

    SCHEMA: ClassVar[int] = 4
    SCHEMA_KEY: ClassVar[str] = "version"
    REBUILD: ClassVar[str] = "remove the store (it is built again)"
    dim: int
    dtype: str
    fingerprint: list
    rows: int | None = None
    rows_batch: int | None = None
    invalid_rows: int | None = None
    #: the column roles of a dataset of another shape (mtquery.io.columns); absent: standard
    columns: dict | None = None
