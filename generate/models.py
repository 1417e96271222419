"""Loading registry models and embedding patches with them (``embed_patches``).

What is shared by every family lives here: device choice, precision, the model cache,
batching and resizing. What differs (build, weights, preprocessing, forward) is the family's
(:mod:`mtquery.generate.family`); which weights are used is :mod:`mtquery.generate.weights`.
Heavy libraries (torch, timm, open_clip, transformers) are imported lazily.
"""

from __future__ import annotations

import threading

import numpy as np

from mtquery.errors import UsageError
from mtquery.generate.family import LoadedModel, get_family
from mtquery.generate.registry import get_model_spec

MODES = ("reference", "corrected")
PRECISIONS = ("fp32", "fp16", "bf16")


def pick_device(device: str | None = None) -> str:
    """``device`` checked against this machine; ``None``/``"auto"``: cuda, then mps, then cpu."""
    import torch

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {device!r}: CUDA is not available on this machine",
                         argument="device")
    if device == "mps" and not (getattr(torch.backends, "mps", None)
                                and torch.backends.mps.is_available()):
        raise UsageError("device 'mps': MPS is not available on this machine",
                         argument="device")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise UsageError(f"unknown device {device!r} (cpu, cuda, cuda:N, mps or auto)",
                         argument="device")
    return device


_CACHE: dict[tuple, LoadedModel] = {}
_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget the loaded models (frees their memory once no caller holds them)."""
    with _LOCK:
        _CACHE.clear()


def load_model(name: str, weights: str | None = None, device: str | None = None,
               mode: str = "reference", precision: str = "fp32") -> LoadedModel:
    """Build (and cache) a model ready for :func:`forward` and :func:`embed_patches`."""
    spec = get_model_spec(name)
    family = get_family(spec.family)
    if spec.preprocessing not in family.preprocessing:
        raise UsageError(f"model {name!r}: family {family.name!r} does not implement "
                         f"preprocessing {spec.preprocessing!r}")
    if mode not in MODES:
        raise UsageError(f"unknown preprocessing mode {mode!r} (reference or corrected)",
                         argument="preprocessing")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} (fp32, fp16, bf16)",
                         argument="precision")
    dev = "cpu"
    if family.torch:
        dev = pick_device(device)
        if precision != "fp32" and not dev.startswith("cuda"):
            raise UsageError(f"precision {precision!r} needs a CUDA device",
                             argument="precision")
    key = (name, weights, dev, mode, precision)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    if spec.tiny and weights not in (None, "", "random", "tiny"):
        raise UsageError(f"{name} is a test model with built-in random weights",
                         argument="weights")
    built = family.load(spec, weights or None)
    dtype = None
    if family.torch:
        import torch

        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        built.module.eval().to(dev)
        if dtype != torch.float32:
            built.module.to(dtype)
    label = built.weights or ("tiny" if spec.tiny else "random")
    lm = LoadedModel(spec, family, built.module, dev, label, built.weights_sha256,
                     processor=built.processor, mode=mode, dtype=dtype)
    with _LOCK:
        _CACHE[key] = lm
    return lm


def forward(lm: LoadedModel, x: np.ndarray) -> np.ndarray:
    """Preprocess + model for one batch of raw (n, bands, f, f) fragments -> (n, dim)."""
    family = lm.family
    if not family.torch:
        return np.asarray(family.forward(lm, family.preprocess(lm, x)), dtype=np.float32)
    import torch

    with torch.inference_mode():
        inp = family.preprocess(lm, x)
        if lm.dtype is not None and lm.dtype != torch.float32:
            inp = inp.to(lm.dtype)
        return family.forward(lm, inp).float().cpu().numpy()


def resize(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (align_corners=False, no antialias) resize of (n, c, h, w) to size x size."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear",
                                        align_corners=False)
    return t.numpy()


def embed_patches(model: str, images: np.ndarray, *, weights: str | None = None,
                  device: str | None = None, batch_size: int = 64,
                  preprocessing: str = "reference") -> np.ndarray:
    """Embed raw patches with a registry model.

    ``images``: (n, bands, h, w) raw values in the model's band order (``get_model_spec(model)
    .bands``): Sentinel-2 DN reflectance (0..10000+), or Sentinel-1 linear power. Patches whose
    h/w differ from the model's ``fragment_size`` are resized with bilinear interpolation
    (align_corners=False, no antialiasing) before preprocessing; the ``spectral`` model uses
    them as they are (its statistics need no fixed size). Returns (n, dim) float32.
    ``preprocessing``: ``reference`` (default, compatible with released data) or ``corrected``
    (only changes ``dinov2``: no second 1/255 rescale).
    """
    spec = get_model_spec(model)
    arr = np.asarray(images)
    if arr.ndim == 3 and len(spec.bands) == 1:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise UsageError(f"images must be (n, bands, h, w); got shape {arr.shape}",
                         argument="images")
    if arr.shape[1] != len(spec.bands):
        raise UsageError(f"model {model!r} takes {len(spec.bands)} bands "
                         f"({','.join(spec.bands)}); images have {arr.shape[1]}",
                         argument="images")
    if batch_size < 1:
        raise UsageError("batch_size must be >= 1", argument="batch_size")
    lm = load_model(model, weights=weights, device=device, mode=preprocessing)
    n = arr.shape[0]
    out = np.zeros((n, spec.dim), dtype=np.float32)
    for i in range(0, n, batch_size):
        chunk = arr[i:i + batch_size]
        if lm.family.fixed_size and chunk.shape[2:] != (spec.fragment_size,) * 2:
            chunk = resize(chunk, spec.fragment_size)
        out[i:i + len(chunk)] = forward(lm, chunk)
    return out


def text_models() -> list[str]:
    """Registry models whose family has a text tower."""
    from mtquery.generate.registry import REGISTRY

    return [name for name, spec in REGISTRY.items()
            if get_family(spec.family).encode_text is not None]


def embed_text(model: str, texts: list[str] | str, *, weights: str | None = None,
               device: str | None = None, batch_size: int = 64) -> np.ndarray:
    """Embed texts with the text tower of ``model`` (same weights lookup as images:
    ``weights`` a path, ``"random"`` for the untrained architecture, or the default lookup),
    into the space of its image embeddings. Returns (n, dim) float32."""
    spec = get_model_spec(model)
    family = get_family(spec.family)
    if family.encode_text is None:
        raise UsageError(f"model {model!r} has no text tower; text queries need one of: "
                         f"{', '.join(text_models())}", argument="text")
    items = [texts] if isinstance(texts, str) else list(texts)
    if not items or any(not str(t).strip() for t in items):
        raise UsageError("text must be a non-empty string, e.g. 'a harbour with ships'",
                         argument="text")
    lm = load_model(model, weights=weights, device=device)
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(items), batch_size):
            out.append(family.encode_text(lm, items[i:i + batch_size]).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)
