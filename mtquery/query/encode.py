"""Queries that need the dataset's model: a text (through the model's text tower) or an
image (through its image tower and preprocessing).

The model is the dataset's own: the ``model`` of its generation manifest, or its catalog
entry; ``model`` / ``weights`` override (``weights="random"`` runs the real architecture
untrained, seeded as for generation). Encoding needs the ``models`` extra: ``mtquery.generate``
is imported here, on use only, so the core stays light.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtquery.errors import DataError, UsageError
from mtquery.query.session import Session
from mtquery.query.vector import QueryVector

RGB_RASTERS = (".png", ".jpg", ".jpeg")
#: an 8-bit RGB image is the Major TOM RGB rendering (reflectance DN x 2.5 / 10000, clipped):
#: v / 255 maps back to DN v / 255 x 4000
RGB_DN = 4000.0


def dataset_model(session: Session) -> str | None:
    """The registry name of the model that made the dataset, when it says so."""
    from mtquery.query.info import manifest_of

    manifest = manifest_of(session)
    name = manifest.model_name if manifest is not None else None
    entry = session.dataset.entry
    if not name and entry is not None and entry.model:
        from mtquery.generate import REGISTRY

        name = entry.model if entry.model in REGISTRY else entry.name
    return str(name) if name else None


def _model(session: Session, model: str | None) -> str:
    from mtquery.generate import get_model_spec

    name = model or dataset_model(session)
    if name is None:
        raise UsageError(f"{session.dataset.name} does not say which model made it (no "
                         "generation manifest or catalog entry); name it with model=",
                         "model")
    spec = get_model_spec(name)
    if spec.dim != session.dim:
        raise DataError(f"model {name!r} gives {spec.dim}-d vectors, the dataset holds "
                        f"{session.dim}-d ones; name the dataset's model with model=",
                        "model")
    return name


def query_from_text(session: Session, text: str, model: str | None = None,
                    weights: str | None = None) -> QueryVector:
    """The dataset model's text embedding of ``text``."""
    from mtquery.generate import embed_text

    if not str(text).strip():
        raise UsageError("text must be a non-empty string, e.g. 'a harbour with ships'",
                         "text")
    vec = embed_text(_model(session, model), [str(text)], weights=weights)[0]
    return QueryVector(vector=vec)


def read_image(path: str | Path, bands: tuple[str, ...]) -> np.ndarray:
    """(1, bands, h, w) raw values: a GeoTIFF holding the model's bands in its order, or an
    8-bit PNG / JPEG for RGB models (mapped back to reflectance DN, see RGB_DN)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"no such image file: {p}")
    if p.suffix.lower() in RGB_RASTERS:
        if len(bands) != 3:
            raise UsageError(f"a {p.suffix} image has RGB only; this model takes "
                             f"{len(bands)} bands ({','.join(bands)}): give a GeoTIFF",
                             "image")
        from PIL import Image

        try:
            rgb = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32)
        except OSError as exc:
            raise DataError(f"cannot read image {p}: {exc}") from exc
        arr = rgb.transpose(2, 0, 1) / 255.0 * RGB_DN
    else:
        import rasterio

        try:
            with rasterio.open(p) as src:
                arr = src.read().astype(np.float32)
        except rasterio.errors.RasterioIOError as exc:
            raise DataError(f"cannot read image {p}: {str(exc).splitlines()[0]}") from exc
        if arr.shape[0] != len(bands):
            raise UsageError(f"image {p.name} has {arr.shape[0]} band(s); the model takes "
                             f"{len(bands)} ({','.join(bands)}), in that order", "image")
    h, w = arr.shape[1:]
    if h != w or h < 32:
        raise UsageError(f"image {p.name} is {h} x {w} px; give a square fragment (at least "
                         "32 px; it is resized to the model's fragment size)", "image")
    return arr[None]


def query_from_image(session: Session, image: str | Path, model: str | None = None,
                     weights: str | None = None) -> QueryVector:
    """The dataset model's embedding of an image file (a fragment-like square patch)."""
    from mtquery.generate import embed_patches, get_model_spec

    name = _model(session, model)
    arr = read_image(image, get_model_spec(name).bands)
    return QueryVector(vector=embed_patches(name, arr, weights=weights)[0])
