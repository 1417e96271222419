"""Family ``hf-dinov2``: DINOv2 through transformers; the embedding is the mean of
``last_hidden_state`` over all tokens.

Preprocessing ``rgb-dinov2``: ``clip(2.5 * x / 10000, 0, 1)``, then the BitImageProcessor of
facebook/dinov2-base. Mode ``reference`` keeps its 1/255 rescale on [0, 1] inputs (the quirk
of the released Core-S2RGB-DINOv2 data); mode ``corrected`` turns it off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtquery.errors import DataError
from mtquery.generate.family import Built, Family, LoadedModel, register_family
from mtquery.generate.registry import ModelSpec
from mtquery.generate.weights import missing_weights, offline, resolve_dir


def image_processor(path: Path | None):
    """The processor of a model directory, else the published one of dinov2-base."""
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


def load(spec: ModelSpec, weights: str | None) -> Built:
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    if spec.tiny or weights == "random":
        return Built(Dinov2Model(Dinov2Config(**spec.arch)), processor=image_processor(None))
    path = resolve_dir(spec, weights)
    try:
        if path is not None:
            model = Dinov2Model.from_pretrained(str(path))
        else:
            model = Dinov2Model.from_pretrained(spec.weights_repo,
                                                revision=spec.weights_revision,
                                                local_files_only=offline())
    except DataError:
        raise
    except Exception as exc:
        raise missing_weights(spec, f"could not load ({type(exc).__name__})") from None
    label = str(path) if path is not None else f"hf:{spec.weights_repo}"
    return Built(model, label, processor=image_processor(path))


def preprocess(lm: LoadedModel, x: np.ndarray):
    import torch

    rgb = np.clip(2.5 * x.astype(np.float32) / 10000.0, 0.0, 1.0)
    kwargs = {} if lm.mode == "reference" else {"do_rescale": False}
    out = lm.processor(images=list(rgb), return_tensors="pt", input_data_format="channels_first",
                       **kwargs)
    return out["pixel_values"].to(lm.device, dtype=torch.float32)


def forward(lm: LoadedModel, pixel_values):
    return lm.module(pixel_values=pixel_values).last_hidden_state.mean(dim=1)


PREPROCESSING = {
    "rgb-dinov2": "clip(2.5 * x / 10000, 0, 1); BitImageProcessor of facebook/dinov2-base "
                  "(resize shortest edge 256 bicubic, centre crop 224, rescale 1/255, ImageNet "
                  "normalise). mode 'reference' keeps the 1/255 rescale on [0, 1] inputs (the "
                  "reference quirk, compatible with Core-S2RGB-DINOv2); mode 'corrected' "
                  "disables it",
}

FAMILY = register_family(Family("hf-dinov2", load, preprocess, forward,
                                preprocessing=PREPROCESSING))
