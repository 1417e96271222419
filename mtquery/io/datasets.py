"""What a dataset argument means: a file, a directory, a glob, a comma-separated list of them
(URLs included), ``@list.txt`` (one path or URL a line), a remote URL (``https://``,
``hf://datasets/...``, ``s3://``) or a catalog name (``demo``, ``siglip``...). With
$MTQUERY_HF_ENDPOINT set (a Hugging Face mirror), catalog names and ``hf://`` globs become the
mirror's URLs of the files, listed through its API."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mtquery.errors import DataError, UsageError
from mtquery.io.localfiles import duckdb_path, expand_glob, unique_files, walk_files

REMOTE_PREFIXES = ("http://", "https://", "hf://", "s3://", "gs://", "gcs://", "az://", "r2://")
GLOB_CHARS = set("*?[")
ENV_DATASET = "MTQUERY_DATASET"
DEFAULT_DATASET = "demo"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    source: str
    description: str
    model: str | None = None
    #: the Major TOM Core metadata.parquet of the imagery (image chips of the map page)
    core: str | None = None


def _released(name: str, repo: str, model: str, rows: str, core: str) -> CatalogEntry:
    return CatalogEntry(
        name=name,
        source=f"hf://datasets/Major-TOM/{repo}/embeddings/*.parquet",
        description=f"Major TOM {repo}: {rows} embeddings ({model}), CC-BY-SA-4.0",
        model=model,
        core=f"hf://datasets/Major-TOM/{core}/metadata.parquet",
    )


CATALOG: dict[str, CatalogEntry] = {
    "siglip": _released("siglip", "Core-S2RGB-SigLIP", "ViT-SO400M-14-SigLIP-384", "20.2M",
                        "Core-S2L2A"),
    "dinov2": _released("dinov2", "Core-S2RGB-DINOv2", "facebook/dinov2-base", "56.1M",
                        "Core-S2L2A"),
    "ssl4eo-s2l1c": _released("ssl4eo-s2l1c", "Core-S2L1C-SSL4EO", "SSL4EO-S12 RN50 DINO",
                              "56.1M", "Core-S2L1C"),
    "ssl4eo-s1rtc": _released("ssl4eo-s1rtc", "Core-S1RTC-SSL4EO", "SSL4EO-S12 RN50 MoCo",
                              "36.7M", "Core-S1RTC"),
}


def demo_path() -> Path:
    """The bundled demo GeoParquet shipped inside the package."""
    return Path(str(resources.files("mtquery.data").joinpath("demo.parquet")))


def demo_entry() -> CatalogEntry:
    return CatalogEntry(name="demo", source=str(demo_path()),
                        description=demo_description(), model="spectral")


def demo_description() -> str:
    note = resources.files("mtquery.data").joinpath("demo.md")
    if note.is_file():
        return note.read_text(encoding="utf-8").strip().splitlines()[0]
    return "bundled demo dataset"


def catalog() -> dict[str, CatalogEntry]:
    return {"demo": demo_entry(), **CATALOG}


@dataclass(frozen=True)
class Dataset:
    """A resolved dataset: the sources DuckDB reads and what they came from."""

    spec: str
    sources: tuple[str, ...]
    remote: bool
    entry: CatalogEntry | None = None
    local_files: tuple[Path, ...] = field(default=())
    #: ``--columns`` (``vector=emb,id=chip,...``, mtquery.io.columns) or None: detected /
    #: remembered (mtquery.io.roles)
    columns: str | None = None

    @property
    def name(self) -> str:
        return self.entry.name if self.entry else self.spec

    @property
    def duckdb_sources(self) -> list[str]:
        """The sources as DuckDB must be handed them: local names with glob characters
        escaped (DuckDB globs every path; ``a[b].parquet`` would read ``ab.parquet``)."""
        return [s if "://" in s else duckdb_path(s) for s in self.sources]


def is_remote(text: str) -> bool:
    return text.lower().startswith(REMOTE_PREFIXES)


def _looks_like_name(text: str) -> bool:
    return not any(ch in text for ch in "/\\.*?[") and not is_remote(text)


def _visible(path: Path, root: Path) -> bool:
    """False for files under a hidden folder (``.mtquery-staging``, ``.git``...) or with a
    hidden name: staging of killed runs is never read as data; nor are files under a folder
    whose name starts with ``_`` (a run's own files, ``_mtquery/thumbnails/``; pyarrow skips
    them too)."""
    parts = path.relative_to(root).parts
    return not any(p.startswith(".") for p in parts) and not any(
        p.startswith("_") for p in parts[:-1])


def _expand_local(text: str) -> list[Path]:
    path = Path(text).expanduser()
    if path.is_dir():  # symlinked folders followed once (no loops), each real file once
        files = [p for p in walk_files(path) if _visible(p, path)]
        if not files:
            raise DataError(f"no .parquet, .gpq or .geoparquet files under directory {text}")
        return files
    if path.is_file():  # a name with glob characters (star[1].parquet) that exists as it is
        return [path]
    if any(ch in text for ch in GLOB_CHARS):  # expanded here, once: DuckDB gets the names
        files = expand_glob(text)
        if not files:
            raise DataError(f"no files match {text}")
        return files
    raise DataError(f"no such file or directory: {text}")


def _check_parquet(path: Path) -> None:
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(4)
            if size >= 12:
                fh.seek(-4, os.SEEK_END)
            tail = fh.read(4)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if size < 12 or head != b"PAR1" or tail != b"PAR1":
        raise DataError(f"not a Parquet file: {path}")


def resolve(spec: str | Path | Sequence[str | Path] | Dataset | None = None,
            columns: str | None = None) -> Dataset:
    """Resolve a dataset argument; ``None`` means $MTQUERY_DATASET or ``demo``. ``columns``
    names the column roles (``vector=emb,id=chip_id,time=acquired``, docs/columns.md)
    instead of detecting them; it is remembered for the same files."""
    if columns is not None:
        from dataclasses import replace

        from mtquery.io.columns import parse_override

        parse_override(columns)  # a bad spelling is named before anything is read
        return replace(resolve(spec), columns=columns)
    if isinstance(spec, Dataset):
        return spec
    if spec is None:
        spec = os.environ.get(ENV_DATASET) or DEFAULT_DATASET
    if isinstance(spec, (str, Path)):
        text = str(spec).strip()
        if text.startswith("@") and not Path(text).exists():
            return _resolve_list_file(text)
        if "," in text and not Path(text).exists():
            parts = [p for p in (s.strip() for s in text.split(",")) if p]
            if not is_remote(text) or all(is_remote(p) or Path(p).exists() for p in parts):
                return _resolve_many(text, parts)
        return _resolve_one(text)
    parts = [str(p) for p in spec]
    if not parts:
        raise UsageError("empty dataset list")
    if len(parts) == 1:
        return _resolve_one(parts[0])
    return _resolve_many(",".join(parts), parts)


def dataset(spec: str | Path | Sequence[str | Path] | Dataset | None = None,
            columns: str | None = None) -> Dataset:
    """A dataset to hand to any ``mtquery`` function: ``spec`` resolved, its column roles
    named by ``columns`` (``vector=emb,id=chip_id,time=acquired``; detected when None)."""
    return resolve(spec, columns=columns)


def _resolve_list_file(text: str) -> Dataset:
    """``@list.txt``: one path or URL a line (blank lines and ``#`` comments skipped; relative
    paths are relative to the list file)."""
    path = Path(text[1:]).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read the list file {path}: {exc.strerror or exc}",
                        "dataset") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"the list file {path} is not text (one path or URL a line)",
                        "dataset") from exc
    parts = []
    for line in lines:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        if item.startswith("@"):
            raise UsageError(f"{path} names another list ({item}); a list file holds paths "
                             "and URLs only", "dataset")
        if not is_remote(item) and not Path(item).expanduser().is_absolute():
            item = str(path.parent / item)
        parts.append(item)
    if not parts:
        raise UsageError(f"the list file {path} names no files (one path or URL a line)",
                         "dataset")
    ds = _resolve_many(text, parts) if len(parts) > 1 else _resolve_one(parts[0])
    return Dataset(spec=text, sources=ds.sources, remote=ds.remote, entry=ds.entry,
                   local_files=ds.local_files)


def _hf_sources(source: str) -> tuple[str, ...]:
    """An ``hf://`` glob as DuckDB reads it, or, with a mirror endpoint set
    ($MTQUERY_HF_ENDPOINT), the mirror's URLs of the files it names."""
    from mtquery.io.remote import hf_endpoint, hf_list

    if source.lower().startswith("hf://") and hf_endpoint() is not None:
        return tuple(hf_list(source))
    return (source,)


def _resolve_many(label: str, parts: list[str]) -> Dataset:
    resolved = [_resolve_one(p) for p in parts]
    local = tuple(unique_files(f for d in resolved for f in d.local_files))
    kept = {str(f) for f in local}  # the same real file named twice is read once
    sources = tuple(dict.fromkeys(s for d in resolved for s in d.sources
                                  if s in kept or d.remote))
    return Dataset(spec=label, sources=sources, remote=any(d.remote for d in resolved),
                   local_files=local)


def _resolve_one(text: str) -> Dataset:
    if not text:
        raise UsageError("empty dataset name")
    entries = catalog()
    if text in entries:
        entry = entries[text]
        if is_remote(entry.source):
            return Dataset(spec=text, sources=_hf_sources(entry.source), remote=True,
                           entry=entry)
        path = Path(entry.source)
        if not path.is_file():
            raise DataError(f"the bundled {text!r} dataset is missing from the install ({path})")
        return Dataset(spec=text, sources=(str(path),), remote=False, entry=entry,
                       local_files=(path,))
    if is_remote(text):
        return Dataset(spec=text, sources=_hf_sources(text), remote=True)
    if _looks_like_name(text) and not Path(text).exists():
        names = ", ".join(entries)
        raise UsageError(f"unknown dataset {text!r}: not a file, and not a catalog name "
                         f"({names})")
    files = unique_files(_expand_local(text))
    for f in files:
        _check_parquet(f)
    return Dataset(spec=text, sources=tuple(str(f) for f in files), remote=False,
                   local_files=tuple(files))
