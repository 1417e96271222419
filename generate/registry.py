"""The model registry: one :class:`ModelSpec` row per model (docs/standard.md, "Preprocessing
and models"). Data, no code.

A row names its *family* (``timm-resnet``, ``open_clip``, ``hf-dinov2``, ``spectral``; see
:mod:`mtquery.generate.family`), which owns loading, preprocessing and forward; the row gives
bands, fragment size, dimension, preprocessing key, architecture config and the published
weights pinned to a revision. Each ``*-tiny`` row runs exactly the code of its full-size model
with a small architecture config (built from config objects, never downloaded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mtquery.errors import UsageError

S2_L1C_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                "B11", "B12")
S2_L2A_BANDS = tuple(b for b in S2_L1C_BANDS if b != "B10")
S1_BANDS = ("vv", "vh")
RGB_BANDS = ("B04", "B03", "B02")


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry. ``bands`` is the input order ``embed_patches`` expects."""

    name: str
    family: str  # name of a registered family
    bands: tuple[str, ...]
    fragment_size: int
    dim: int
    preprocessing: str  # a preprocessing key of the family (Family.preprocessing)
    source: str  # imagery the model is meant for
    weights_name: str = ""  # published weights (repo / enum)
    weights_revision: str = ""  # pinned revision of the published weights
    weights_file: str = ""  # published file name (what to download)
    weights_url: str = ""  # where to download it (a file URL, or the repo page)
    weights_repo: str = ""  # Hugging Face hub repo id, when the weights live there
    arch: dict = field(default_factory=dict)  # architecture config of the family
    tiny: bool = False
    description: str = ""


TORCHGEO_S2 = ("https://hf.co/torchgeo/resnet50_sentinel2_all_dino/resolve/"
               "d7f14bf5530d70ac69d763e58e77e44dbecfec7c/resnet50_sentinel2_all_dino-d6c330e9.pth")
TORCHGEO_S1 = ("https://hf.co/torchgeo/resnet50_sentinel1_all_moco/resolve/"
               "e79862c667853c10a709bdd77ea8ffbad0e0f1cf/resnet50_sentinel1_all_moco-906e4356.pth")

RESNET50 = {"block": "bottleneck", "layers": (3, 4, 6, 3), "channels": (64, 128, 256, 512),
            "stem_width": 64}
RESNET_TINY = {"block": "bottleneck", "layers": (1, 1, 1, 1), "channels": (4, 8, 8, 16),
               "stem_width": 8}
SIGLIP = {"open_clip_name": "ViT-SO400M-14-SigLIP-384"}
SIGLIP_TINY = {"embed_dim": 32, "vision": {"image_size": 384, "patch_size": 48, "width": 32,
                                           "layers": 2, "head_width": 16, "mlp_ratio": 2.0},
               "text": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2,
                        "layers": 1}}
DINOV2_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
               "intermediate_size": 3072, "patch_size": 14, "image_size": 518}
DINOV2_TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
               "intermediate_size": 64, "patch_size": 28, "image_size": 224}

STANDARD = [
    ModelSpec("ssl4eo-s2l1c", "timm-resnet", S2_L1C_BANDS, 224, 2048, "s2-div10000",
              "Sentinel-2 L1C (Core-S2L1C-SSL4EO)",
              weights_name="torchgeo ResNet50_Weights.SENTINEL2_ALL_DINO "
                           "(hf torchgeo/resnet50_sentinel2_all_dino)",
              weights_revision="d7f14bf5530d70ac69d763e58e77e44dbecfec7c",
              weights_file="resnet50_sentinel2_all_dino-d6c330e9.pth",
              weights_url=TORCHGEO_S2, arch={**RESNET50, "in_chans": 13},
              description="SSL4EO-S12 ResNet50 DINO, 13 L1C bands"),
    ModelSpec("ssl4eo-s1rtc", "timm-resnet", S1_BANDS, 224, 2048, "s1-db-minmax",
              "Sentinel-1 RTC vv+vh linear power (Core-S1RTC-SSL4EO)",
              weights_name="torchgeo ResNet50_Weights.SENTINEL1_ALL_MOCO "
                           "(hf torchgeo/resnet50_sentinel1_all_moco)",
              weights_revision="e79862c667853c10a709bdd77ea8ffbad0e0f1cf",
              weights_file="resnet50_sentinel1_all_moco-906e4356.pth",
              weights_url=TORCHGEO_S1, arch={**RESNET50, "in_chans": 2},
              description="SSL4EO-S12 ResNet50 MoCo, vv+vh"),
    ModelSpec("siglip", "open_clip", RGB_BANDS, 384, 1152, "rgb-siglip",
              "Sentinel-2 L2A RGB (Core-S2RGB-SigLIP)",
              weights_name="hf-hub:timm/ViT-SO400M-14-SigLIP-384 (open_clip)",
              # not verifiable offline when this was written: 'main' + file sha256 in the
              # manifest of every run that loads real weights
              weights_revision="main",
              weights_file="open_clip_pytorch_model.bin",
              weights_url="https://huggingface.co/timm/ViT-SO400M-14-SigLIP-384",
              weights_repo="timm/ViT-SO400M-14-SigLIP-384",
              arch=SIGLIP, description="SigLIP SO400M/14 at 384 px, encode_image"),
    ModelSpec("dinov2", "hf-dinov2", RGB_BANDS, 224, 768, "rgb-dinov2",
              "Sentinel-2 L2A RGB (Core-S2RGB-DINOv2)",
              weights_name="facebook/dinov2-base (transformers)",
              weights_revision="f9e44c814b77",  # short sha seen pinned in public code
              weights_file="model.safetensors + config.json + preprocessor_config.json",
              weights_url="https://huggingface.co/facebook/dinov2-base",
              weights_repo="facebook/dinov2-base",
              arch=DINOV2_BASE,
              description="DINOv2 base, mean of last_hidden_state over all tokens"),
    ModelSpec("spectral", "spectral", S2_L2A_BANDS, 224, len(S2_L2A_BANDS) * 5, "spectral",
              "Sentinel-2 L1C or L2A (B10 not used)",
              weights_name="none (no weights)", weights_revision="-",
              description="baseline: per-band statistics of the fragment"),
]

TINY = [
    ModelSpec("ssl4eo-s2l1c-tiny", "timm-resnet", S2_L1C_BANDS, 224, 64, "s2-div10000",
              "tests", arch={**RESNET_TINY, "in_chans": 13}, tiny=True,
              description="tiny timm ResNet (bottleneck, small widths), test only"),
    ModelSpec("ssl4eo-s1rtc-tiny", "timm-resnet", S1_BANDS, 224, 64, "s1-db-minmax",
              "tests", arch={**RESNET_TINY, "in_chans": 2}, tiny=True,
              description="tiny timm ResNet, test only"),
    ModelSpec("siglip-tiny", "open_clip", RGB_BANDS, 384, 32, "rgb-siglip", "tests",
              arch=SIGLIP_TINY, tiny=True, description="tiny open_clip ViT, test only"),
    ModelSpec("dinov2-tiny", "hf-dinov2", RGB_BANDS, 224, 32, "rgb-dinov2", "tests",
              arch=DINOV2_TINY, tiny=True, description="tiny Dinov2Model, test only"),
]

REGISTRY: dict[str, ModelSpec] = {m.name: m for m in STANDARD + TINY}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add (or replace) a registry row; its family must be registered before it is used."""
    REGISTRY[spec.name] = spec
    return spec


def list_models(include_tiny: bool = True) -> list[ModelSpec]:
    """Registry entries (standard models first)."""
    return [m for m in REGISTRY.values() if include_tiny or not m.tiny]


def get_model_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}",
                         argument="model") from None
