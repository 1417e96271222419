"""Model registry (data, not code branches) and ``embed_patches`` (STANDARD.md §5).

Every model is a :class:`ModelSpec` row in :data:`REGISTRY`: bands, fragment size, dimension,
preprocessing key, architecture family + config, and the published weights pinned to a
revision. The code paths are per *family* (``timm-resnet``, ``open_clip``, ``hf-dinov2``,
``spectral``), so each ``*-tiny`` entry runs exactly the code of its full-size model with a
small architecture config (built from config objects, never downloaded).

Heavy libraries (torch, timm, open_clip, transformers) are imported lazily.

Weights (``weights=`` / ``--weights``):

* ``"random"``: the real architecture with random init (seeded, deterministic).
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
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtquery.errors import DataError, UsageError

S2_L1C_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                "B11", "B12")
S2_L2A_BANDS = tuple(b for b in S2_L1C_BANDS if b != "B10")
S1_BANDS = ("vv", "vh")
RGB_BANDS = ("B04", "B03", "B02")

#: SSL4EO-S12 Sentinel-1 dB statistics used by the reference (spec §5).
S1_DB_MEAN = (-12.54847273, -20.19237134)
S1_DB_STD = (5.25697717, 5.91150917)

#: Spectral baseline statistics, in output order (each block = one value per band).
SPECTRAL_STATS = ("mean", "std", "p10", "p50", "p90")


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry. ``bands`` is the input order ``embed_patches`` expects."""

    name: str
    family: str  # timm-resnet | open_clip | hf-dinov2 | spectral
    bands: tuple[str, ...]
    fragment_size: int
    dim: int
    preprocessing: str  # key of PREPROCESSING
    source: str  # imagery the model is meant for
    weights_name: str = ""  # published weights (repo / enum)
    weights_revision: str = ""  # pinned revision of the published weights
    weights_file: str = ""  # published file name (what to download)
    weights_url: str = ""
    arch: dict = field(default_factory=dict)  # architecture config of the family
    tiny: bool = False
    description: str = ""

    @property
    def needs_weights(self) -> bool:
        return self.family != "spectral" and not self.tiny


#: What each preprocessing key does (documentation; the code is in ``_preprocess``).
PREPROCESSING: dict[str, str] = {
    "s2-div10000": "x / 10000 (reference SSL4EO-S2L1C)",
    "s1-db-minmax": "dB = 10*log10(clip(x, 1e-10)); (dB - lo)/(hi - lo) clipped to [0, 1] with "
                    "lo/hi = mean -/+ 2 std of SSL4EO-S12 (reference SSL4EO-S1RTC)",
    "rgb-siglip": "clip(2.5 * x / 10000, 0, 1); Normalize(mean 0.5, std 0.5); no resize",
    "rgb-dinov2": "clip(2.5 * x / 10000, 0, 1); BitImageProcessor of facebook/dinov2-base "
                  "(resize shortest edge 256 bicubic, centre crop 224, rescale 1/255, ImageNet "
                  "normalise). mode 'reference' keeps the 1/255 rescale on [0, 1] inputs (the "
                  "reference quirk, compatible with Core-S2RGB-DINOv2); mode 'corrected' "
                  "disables it",
    "spectral": "x / 10000, then per-band mean, std, p10, p50, p90 (blocks in that order, "
                "bands in band order; percentiles nearest-rank on every 4th row/column): the "
                "first len(bands) values are the per-band means",
}

_TORCHGEO_S2 = ("https://hf.co/torchgeo/resnet50_sentinel2_all_dino/resolve/"
                "d7f14bf5530d70ac69d763e58e77e44dbecfec7c/resnet50_sentinel2_all_dino-d6c330e9.pth")
_TORCHGEO_S1 = ("https://hf.co/torchgeo/resnet50_sentinel1_all_moco/resolve/"
                "e79862c667853c10a709bdd77ea8ffbad0e0f1cf/resnet50_sentinel1_all_moco-906e4356.pth")

_RESNET50 = {"block": "bottleneck", "layers": (3, 4, 6, 3), "channels": (64, 128, 256, 512),
             "stem_width": 64}
_RESNET_TINY = {"block": "bottleneck", "layers": (1, 1, 1, 1), "channels": (4, 8, 8, 16),
                "stem_width": 8}
_SIGLIP = {"open_clip_name": "ViT-SO400M-14-SigLIP-384"}
_SIGLIP_TINY = {"embed_dim": 32, "vision": {"image_size": 384, "patch_size": 48, "width": 32,
                                            "layers": 2, "head_width": 16, "mlp_ratio": 2.0},
                "text": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2,
                         "layers": 1}}
_DINOV2_TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                "intermediate_size": 64, "patch_size": 28, "image_size": 224}


def _entries() -> list[ModelSpec]:
    full = [
        ModelSpec("ssl4eo-s2l1c", "timm-resnet", S2_L1C_BANDS, 224, 2048, "s2-div10000",
                  "Sentinel-2 L1C (Core-S2L1C-SSL4EO)",
                  weights_name="torchgeo ResNet50_Weights.SENTINEL2_ALL_DINO "
                               "(hf torchgeo/resnet50_sentinel2_all_dino)",
                  weights_revision="d7f14bf5530d70ac69d763e58e77e44dbecfec7c",
                  weights_file="resnet50_sentinel2_all_dino-d6c330e9.pth",
                  weights_url=_TORCHGEO_S2, arch={**_RESNET50, "in_chans": 13},
                  description="SSL4EO-S12 ResNet50 DINO, 13 L1C bands"),
        ModelSpec("ssl4eo-s1rtc", "timm-resnet", S1_BANDS, 224, 2048, "s1-db-minmax",
                  "Sentinel-1 RTC vv+vh linear power (Core-S1RTC-SSL4EO)",
                  weights_name="torchgeo ResNet50_Weights.SENTINEL1_ALL_MOCO "
                               "(hf torchgeo/resnet50_sentinel1_all_moco)",
                  weights_revision="e79862c667853c10a709bdd77ea8ffbad0e0f1cf",
                  weights_file="resnet50_sentinel1_all_moco-906e4356.pth",
                  weights_url=_TORCHGEO_S1, arch={**_RESNET50, "in_chans": 2},
                  description="SSL4EO-S12 ResNet50 MoCo, vv+vh"),
        ModelSpec("siglip", "open_clip", RGB_BANDS, 384, 1152, "rgb-siglip",
                  "Sentinel-2 L2A RGB (Core-S2RGB-SigLIP)",
                  weights_name="hf-hub:timm/ViT-SO400M-14-SigLIP-384 (open_clip)",
                  # not verifiable offline when this was written: 'main' + file sha256 in the
                  # manifest of every run that loads real weights
                  weights_revision="main",
                  weights_file="open_clip_pytorch_model.bin",
                  weights_url="https://huggingface.co/timm/ViT-SO400M-14-SigLIP-384",
                  arch=_SIGLIP, description="SigLIP SO400M/14 at 384 px, encode_image"),
        ModelSpec("dinov2", "hf-dinov2", RGB_BANDS, 224, 768, "rgb-dinov2",
                  "Sentinel-2 L2A RGB (Core-S2RGB-DINOv2)",
                  weights_name="facebook/dinov2-base (transformers)",
                  weights_revision="f9e44c814b77",  # short sha seen pinned in public code
                  weights_file="model.safetensors + config.json + preprocessor_config.json",
                  weights_url="https://huggingface.co/facebook/dinov2-base",
                  arch={"hf_name": "facebook/dinov2-base"},
                  description="DINOv2 base, mean of last_hidden_state over all tokens"),
        ModelSpec("spectral", "spectral", S2_L2A_BANDS, 224, len(S2_L2A_BANDS) * 5, "spectral",
                  "Sentinel-2 L1C or L2A (B10 not used)",
                  weights_name="none (no weights)", weights_revision="-",
                  description="baseline: per-band statistics of the fragment"),
    ]
    tiny = [
        ModelSpec("ssl4eo-s2l1c-tiny", "timm-resnet", S2_L1C_BANDS, 224, 64, "s2-div10000",
                  "tests", arch={**_RESNET_TINY, "in_chans": 13}, tiny=True,
                  description="tiny timm ResNet (bottleneck, small widths), test only"),
        ModelSpec("ssl4eo-s1rtc-tiny", "timm-resnet", S1_BANDS, 224, 64, "s1-db-minmax",
                  "tests", arch={**_RESNET_TINY, "in_chans": 2}, tiny=True,
                  description="tiny timm ResNet, test only"),
        ModelSpec("siglip-tiny", "open_clip", RGB_BANDS, 384, 32, "rgb-siglip", "tests",
                  arch=_SIGLIP_TINY, tiny=True, description="tiny open_clip ViT, test only"),
        ModelSpec("dinov2-tiny", "hf-dinov2", RGB_BANDS, 224, 32, "rgb-dinov2", "tests",
                  arch=_DINOV2_TINY, tiny=True, description="tiny Dinov2Model, test only"),
    ]
    return full + tiny


REGISTRY: dict[str, ModelSpec] = {m.name: m for m in _entries()}


def list_models(include_tiny: bool = True) -> list[ModelSpec]:
    """Registry entries (standard models first)."""
    return [m for m in REGISTRY.values() if include_tiny or not m.tiny]


def get_model_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}") from None


# ----------------------------------------------------------------------------- device


def pick_device(device: str | None = None) -> str:
    import torch

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine")
    if device == "mps" and not (getattr(torch.backends, "mps", None)
                                and torch.backends.mps.is_available()):
        raise UsageError("--device mps: MPS is not available on this machine")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise UsageError(f"unknown device {device!r} (cpu, cuda, cuda:N, mps or auto)")
    return device


# ----------------------------------------------------------------------------- weights


def _offline() -> bool:
    return any(os.environ.get(k, "") not in ("", "0") for k in ("MTQUERY_OFFLINE",
                                                                "HF_HUB_OFFLINE"))


def _missing(spec: ModelSpec, detail: str = "") -> DataError:
    target = f"$MTQUERY_WEIGHTS/{spec.name}/"
    return DataError(
        f"no weights for model {spec.name!r}{': ' + detail if detail else ''}. Download "
        f"{spec.weights_file} of {spec.weights_name} (revision {spec.weights_revision}) from "
        f"{spec.weights_url} and pass it with --weights PATH, or put it in {target} "
        "(or use --weights random for random init)")


def _find_local(spec: ModelSpec) -> Path | None:
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class LoadedModel:
    spec: ModelSpec
    module: Any  # torch module (None for spectral)
    device: str
    weights: str  # "random", "tiny", "none", a path or a url
    weights_sha256: str | None
    processor: Any = None  # DINOv2 image processor
    mode: str = "reference"
    dtype: Any = None


def _build_resnet(spec: ModelSpec):
    import torch
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet

    a = spec.arch
    block = Bottleneck if a["block"] == "bottleneck" else BasicBlock
    torch.manual_seed(0)
    model = ResNet(block=block, layers=tuple(a["layers"]), channels=tuple(a["channels"]),
                   stem_width=a["stem_width"], in_chans=a["in_chans"], num_classes=0)
    model.fc = torch.nn.Identity()
    return model


def _load_state(path: Path) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


def _resolve_file(spec: ModelSpec, weights: str | None) -> Path:
    """A local weights file for the timm/open_clip families (may download when allowed)."""
    if weights not in (None, ""):
        p = Path(weights).expanduser()
        if p.is_dir():
            cands = [p / spec.weights_file] + sorted(p.glob("*.safetensors")) + sorted(
                p.glob("*.pth")) + sorted(p.glob("*.bin"))
            for c in cands:
                if c.is_file():
                    return c
            raise _missing(spec, f"no weights file in {p}")
        if not p.is_file():
            raise _missing(spec, f"{p} does not exist")
        return p
    local = _find_local(spec)
    if local is not None:
        return local if local.is_file() else _resolve_file(spec, str(local))
    # caches, then the published source
    if spec.family == "timm-resnet":
        import torch

        cached = Path(torch.hub.get_dir()) / "checkpoints" / spec.weights_file
        if cached.is_file():
            return cached
        if _offline():
            raise _missing(spec, "offline and not in the torch hub cache")
        try:
            torch.hub.download_url_to_file(spec.weights_url, str(cached), progress=False)
        except Exception as exc:  # network errors of every kind
            raise _missing(spec, f"download failed ({type(exc).__name__})") from None
        return cached
    # open_clip: the hf hub file
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download("timm/ViT-SO400M-14-SigLIP-384", spec.weights_file,
                                    revision=spec.weights_revision,
                                    local_files_only=_offline()))
    except Exception as exc:
        raise _missing(spec, f"not in the Hugging Face cache ({type(exc).__name__})") from None


def _build_open_clip(spec: ModelSpec, path: Path | None):
    import open_clip
    import torch

    torch.manual_seed(0)
    if spec.tiny:
        from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

        a = spec.arch
        return CLIP(embed_dim=a["embed_dim"], vision_cfg=CLIPVisionCfg(**a["vision"]),
                    text_cfg=CLIPTextCfg(**a["text"]))
    model = open_clip.create_model(spec.arch["open_clip_name"], pretrained=None,
                                   load_weights=False)
    if path is not None:
        missing, unexpected = model.load_state_dict(_load_state(path), strict=False)
        if [k for k in missing if k.startswith("visual.")]:
            raise DataError(f"{path} does not hold {spec.name} weights "
                            f"(missing {len(missing)} keys, e.g. {missing[0]})")
    return model


def _dinov2_processor(path: Path | None):
    from transformers import BitImageProcessor

    if path is not None and (path / "preprocessor_config.json").is_file():
        from transformers import AutoImageProcessor

        try:
            return AutoImageProcessor.from_pretrained(str(path), use_fast=False)
        except Exception:  # older/newer configs: fall back to the published values
            pass
    # The published preprocessor_config.json of facebook/dinov2-base, built offline.
    return BitImageProcessor(
        do_resize=True, size={"shortest_edge": 256}, resample=3, do_center_crop=True,
        crop_size={"height": 224, "width": 224}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
        do_convert_rgb=True)


def _build_dinov2(spec: ModelSpec, weights: str | None):
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    if spec.tiny:
        return Dinov2Model(Dinov2Config(**spec.arch)), None, None
    if weights == "random":
        cfg = Dinov2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                           intermediate_size=3072, patch_size=14, image_size=518)
        return Dinov2Model(cfg), None, None
    path: Path | None = None
    if weights:
        path = Path(weights).expanduser()
        if not (path / "config.json").is_file():
            raise _missing(spec, f"{path} is not a directory with config.json + weights")
    else:
        local = _find_local(spec)
        if local is not None and local.is_dir():
            path = local
    try:
        if path is not None:
            model = Dinov2Model.from_pretrained(str(path))
        else:
            model = Dinov2Model.from_pretrained(spec.arch["hf_name"],
                                                revision=spec.weights_revision,
                                                local_files_only=_offline())
    except DataError:
        raise
    except Exception as exc:
        raise _missing(spec, f"could not load ({type(exc).__name__})") from None
    return model, path, None


_CACHE: dict[tuple, LoadedModel] = {}
_LOCK = threading.Lock()


def load_model(name: str, weights: str | None = None, device: str | None = None,
               mode: str = "reference", precision: str = "fp32") -> LoadedModel:
    """Build (and cache) a model ready for :func:`embed_patches`."""
    spec = get_model_spec(name)
    if mode not in ("reference", "corrected"):
        raise UsageError(f"unknown preprocessing mode {mode!r} (reference or corrected)")
    if precision not in ("fp32", "fp16", "bf16"):
        raise UsageError(f"unknown precision {precision!r} (fp32, fp16, bf16)")
    if spec.family == "spectral":
        return LoadedModel(spec, None, "cpu", "none", None, mode=mode)
    dev = pick_device(device)
    if precision != "fp32" and not dev.startswith("cuda"):
        raise UsageError(f"--precision {precision} needs a CUDA device")
    key = (name, weights, dev, mode, precision)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    import torch

    sha = None
    processor = None
    if spec.tiny and weights not in (None, "", "random", "tiny"):
        raise UsageError(f"{name} is a test model with built-in random weights")
    wdesc = "tiny" if spec.tiny else ("random" if weights == "random" else "")
    if spec.family == "timm-resnet":
        module = _build_resnet(spec)
        if not spec.tiny and weights != "random":
            path = _resolve_file(spec, weights)
            state = {k: v for k, v in _load_state(path).items() if not k.startswith("fc.")}
            missing, _ = module.load_state_dict(state, strict=False)  # reference: strict=False
            if len(missing) > len(state):
                raise DataError(f"{path} does not hold {spec.name} weights")
            wdesc, sha = str(path), _sha256(path)
    elif spec.family == "open_clip":
        path = None
        if not spec.tiny and weights != "random":
            path = _resolve_file(spec, weights)
            wdesc, sha = str(path), _sha256(path)
        module = _build_open_clip(spec, path)
    elif spec.family == "hf-dinov2":
        module, path, _ = _build_dinov2(spec, weights)
        processor = _dinov2_processor(path)
        if not spec.tiny and weights != "random":
            wdesc = str(path) if path is not None else f"hf:{spec.arch['hf_name']}"
    else:  # pragma: no cover - registry is data, families are closed
        raise UsageError(f"model family {spec.family!r} is not supported")
    module.eval().to(dev)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    if dtype != torch.float32:
        module.to(dtype)
    lm = LoadedModel(spec, module, dev, wdesc, sha, processor=processor, mode=mode, dtype=dtype)
    with _LOCK:
        _CACHE[key] = lm
    return lm


# ----------------------------------------------------------------------------- preprocess


def spectral_features(x: np.ndarray) -> np.ndarray:
    """(n, bands, h, w) raw DN -> (n, 5 * bands): per band mean, std (all pixels), then p10,
    p50, p90 (nearest-rank, on the pixels of every 4th row and column) of x / 10000."""
    n, b = x.shape[:2]
    v = x.astype(np.float32) / np.float32(10000.0)
    flat = v.reshape(n, b, -1)
    mean = flat.mean(axis=2)
    std = flat.std(axis=2)
    sub = np.sort(v[:, :, ::4, ::4].reshape(n, b, -1), axis=2)
    m = sub.shape[2]
    ks = [int(round(p * (m - 1))) for p in (0.1, 0.5, 0.9)]
    q = [sub[:, :, k] for k in ks]
    return np.concatenate([mean, std, *q], axis=1).astype(np.float32)


def _preprocess_torch(lm: LoadedModel, x):
    """Tensor preprocessing on the model's device (all but DINOv2's processor)."""
    import torch

    key = lm.spec.preprocessing
    if key == "s2-div10000":
        return x / 10000.0
    if key == "s1-db-minmax":
        mean = torch.tensor(S1_DB_MEAN, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(S1_DB_STD, device=x.device).view(1, -1, 1, 1)
        lo, hi = mean - 2 * std, mean + 2 * std
        db = 10.0 * torch.log10(torch.clamp(x, min=1e-10))
        return torch.clamp((db - lo) / (hi - lo), 0.0, 1.0)
    if key == "rgb-siglip":
        return (torch.clamp(2.5 * x / 10000.0, 0.0, 1.0) - 0.5) / 0.5
    raise AssertionError(key)


def _dinov2_inputs(lm: LoadedModel, x: np.ndarray):
    import torch

    rgb = np.clip(2.5 * x.astype(np.float32) / 10000.0, 0.0, 1.0)
    kwargs = {} if lm.mode == "reference" else {"do_rescale": False}
    out = lm.processor(images=list(rgb), return_tensors="pt", input_data_format="channels_first",
                       **kwargs)
    return out["pixel_values"].to(lm.device, dtype=lm.dtype or torch.float32)


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (align_corners=False, no antialias) resize of (n, c, h, w) to size x size."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear",
                                        align_corners=False)
    return t.numpy()


def forward(lm: LoadedModel, x: np.ndarray) -> np.ndarray:
    """Preprocess + model for one batch of raw (n, bands, f, f) fragments -> (n, dim)."""
    if lm.spec.family == "spectral":
        return spectral_features(x)
    import torch

    with torch.inference_mode():
        if lm.spec.family == "hf-dinov2":
            pix = _dinov2_inputs(lm, x)
            out = lm.module(pixel_values=pix).last_hidden_state.mean(dim=1)
        else:
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(lm.device)
            t = _preprocess_torch(lm, t)
            if lm.dtype is not None and lm.dtype != torch.float32:
                t = t.to(lm.dtype)
            if lm.spec.family == "open_clip":
                out = lm.module.encode_image(t)
            else:
                out = lm.module(t)
        return out.float().cpu().numpy()


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
        raise UsageError(f"images must be (n, bands, h, w); got shape {arr.shape}")
    if arr.shape[1] != len(spec.bands):
        raise UsageError(f"model {model!r} takes {len(spec.bands)} bands "
                         f"({','.join(spec.bands)}); images have {arr.shape[1]}")
    if batch_size < 1:
        raise UsageError("batch_size must be >= 1")
    lm = load_model(model, weights=weights, device=device, mode=preprocessing)
    n = arr.shape[0]
    out = np.zeros((n, spec.dim), dtype=np.float32)
    for i in range(0, n, batch_size):
        chunk = arr[i:i + batch_size]
        if spec.family != "spectral" and chunk.shape[2:] != (spec.fragment_size,) * 2:
            chunk = _resize(chunk, spec.fragment_size)
        out[i:i + len(chunk)] = forward(lm, chunk)
    return out
