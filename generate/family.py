"""Model families: the code behind registry rows, registered by name.

A :class:`Family` owns what differs between architectures: building the model and loading its
weights (``load``), turning raw fragments into model input (``preprocess``) and running the
model (``forward``). Everything else (device choice, precision, caching, batching, resizing)
is shared by :mod:`mtquery.generate.models`.

A new family is one new file plus registry rows: a module ``family_<name>.py`` in this package
(``-`` in the name spelled ``_``) that calls :func:`register_family` is imported the first time
a row names the family; code elsewhere (a plugin, a test) calls :func:`register_family` itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtquery.errors import UsageError
from mtquery.generate.registry import ModelSpec


@dataclass(frozen=True)
class Built:
    """What a family's ``load`` returns: the model, an optional input processor, and where its
    weights came from (``weights`` empty for built-in random or tiny weights)."""

    module: Any
    weights: str = ""
    weights_sha256: str | None = None
    processor: Any = None


@dataclass
class LoadedModel:
    """A model ready for :func:`mtquery.generate.models.forward`."""

    spec: ModelSpec
    family: Family
    module: Any  # a torch module for torch families
    device: str
    weights: str  # "random", "tiny", "none", a path or a url
    weights_sha256: str | None
    processor: Any = None
    mode: str = "reference"
    dtype: Any = None  # torch dtype of torch families


@dataclass(frozen=True)
class Family:
    """The code of one family of models.

    ``load(spec, weights)``: build the model (``weights`` is ``None`` for the default lookup,
    ``"random"`` or a path) -> :class:`Built`. ``preprocess(lm, x)``: raw ``(n, bands, f, f)``
    float32 values -> model input (on ``lm.device`` for torch families). ``forward(lm, inp)``:
    model input -> ``(n, dim)`` embeddings (a tensor for torch families, else an array).
    ``preprocessing``: the preprocessing keys the family implements (what registry rows name),
    each with a description of what it does (written into every run's manifest).
    ``torch``: the module is a torch module (moved to the device, run in inference mode at the
    requested precision). ``fixed_size``: inputs of another size are resized to the row's
    ``fragment_size`` by ``embed_patches``. ``encode_text(lm, texts)``: the text tower, for
    families that have one (text -> the same space as the images), else None.
    """

    name: str
    load: Callable[[ModelSpec, str | None], Built]
    preprocess: Callable[[LoadedModel, np.ndarray], Any]
    forward: Callable[[LoadedModel, Any], Any]
    preprocessing: dict[str, str]
    torch: bool = True
    fixed_size: bool = True
    encode_text: Callable[[LoadedModel, list[str]], Any] | None = None


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Make a family available to registry rows by its name (replaces one of that name)."""
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    """The registered family ``name``, importing ``mtquery.generate.family_<name>`` on first
    use."""
    if name not in FAMILIES:
        module = f"mtquery.generate.family_{name.replace('-', '_')}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    try:
        return FAMILIES[name]
    except KeyError:
        raise UsageError(f"model family {name!r} is not registered") from None


def as_tensor(lm: LoadedModel, x: np.ndarray):
    """Raw fragments as a float32 torch tensor on the model's device."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(lm.device)
