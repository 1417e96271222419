"""Where a model's weights come from (``weights=``), and one clear error when they are missing.

* ``"random"``: the real architecture with random init (seeded, deterministic; the family
  handles it, nothing here is called).
* a path: a file (``.pth``/``.pt``/``.bin``/``.safetensors``) or a directory (Hugging Face
  layout for ``dinov2``; a directory holding the published file name for the others).
* ``None``: ``$MTQUERY_WEIGHTS/<model name>/`` (or the published file directly in
  ``$MTQUERY_WEIGHTS``), then the local Hugging Face / torch hub caches, then - unless
  ``MTQUERY_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` - the published source. When none works, one
  :class:`~mtquery.errors.DataError` says what to download and where to put it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mtquery.errors import DataError
from mtquery.generate.registry import ModelSpec


def offline() -> bool:
    """True when ``MTQUERY_OFFLINE`` or ``HF_HUB_OFFLINE`` forbids downloads."""
    return any(os.environ.get(k, "") not in ("", "0") for k in ("MTQUERY_OFFLINE",
                                                                "HF_HUB_OFFLINE"))


def missing_weights(spec: ModelSpec, detail: str = "") -> DataError:
    """The error for weights that cannot be found: the file, its source, where to put it."""
    target = f"$MTQUERY_WEIGHTS/{spec.name}/"
    return DataError(
        f"no weights for model {spec.name!r}{': ' + detail if detail else ''}. Download "
        f"{spec.weights_file} of {spec.weights_name} (revision {spec.weights_revision}) from "
        f"{spec.weights_url} and pass its path as weights=PATH, or put it in {target} "
        "(or use weights='random' for random init)", argument="weights")


def find_local(spec: ModelSpec) -> Path | None:
    """The published file or a non-empty model directory under ``$MTQUERY_WEIGHTS``."""
    root = os.environ.get("MTQUERY_WEIGHTS")
    if not root:
        return None
    root_p = Path(root)
    for cand in (root_p / spec.name / spec.weights_file, root_p / spec.weights_file):
        if cand.is_file():
            return cand
    d = root_p / spec.name
    if d.is_dir() and any(d.iterdir()):
        return d
    return None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state(path: Path) -> dict:
    """A torch state dict from a ``.safetensors`` or torch file (``state_dict`` unwrapped)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


def resolve_file(spec: ModelSpec, weights: str | None) -> Path:
    """A local weights file: the given path (file, or directory holding one), then
    ``$MTQUERY_WEIGHTS``, then the hub cache of the published source (``weights_repo`` on the
    Hugging Face hub, else the file ``weights_url`` in the torch hub cache), downloaded there
    unless offline."""
    if weights not in (None, ""):
        p = Path(weights).expanduser()
        if p.is_dir():
            cands = [p / spec.weights_file] + sorted(p.glob("*.safetensors")) + sorted(
                p.glob("*.pth")) + sorted(p.glob("*.bin"))
            for c in cands:
                if c.is_file():
                    return c
            raise missing_weights(spec, f"no weights file in {p}")
        if not p.is_file():
            raise missing_weights(spec, f"{p} does not exist")
        return p
    local = find_local(spec)
    if local is not None:
        return local if local.is_file() else resolve_file(spec, str(local))
    if spec.weights_repo:
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(spec.weights_repo, spec.weights_file,
                                        revision=spec.weights_revision,
                                        local_files_only=offline()))
        except Exception as exc:
            raise missing_weights(
                spec, f"not in the Hugging Face cache ({type(exc).__name__})") from None
    import torch

    cached = Path(torch.hub.get_dir()) / "checkpoints" / spec.weights_file
    if cached.is_file():
        return cached
    if offline():
        raise missing_weights(spec, "offline and not in the torch hub cache")
    try:
        torch.hub.download_url_to_file(spec.weights_url, str(cached), progress=False)
    except Exception as exc:  # network errors of every kind
        raise missing_weights(spec, f"download failed ({type(exc).__name__})") from None
    return cached


def resolve_dir(spec: ModelSpec, weights: str | None) -> Path | None:
    """A Hugging Face model directory (``config.json`` + weights): the given path, else
    ``$MTQUERY_WEIGHTS/<model>/``; ``None`` means: load ``weights_repo`` from the hub (cache)."""
    if weights:
        path = Path(weights).expanduser()
        if not (path / "config.json").is_file():
            raise missing_weights(spec, f"{path} is not a directory with config.json + weights")
        return path
    local = find_local(spec)
    return local if local is not None and local.is_dir() else None
