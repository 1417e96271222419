"""Family ``open_clip``: SigLIP through open_clip's ``encode_image``.

Preprocessing ``rgb-siglip``: ``clip(2.5 * x / 10000, 0, 1)``, then Normalize(0.5, 0.5); the
fragment is already the model's 384 px, so nothing is resized.
"""

from __future__ import annotations

from mtquery.errors import DataError
from mtquery.generate.family import Built, Family, LoadedModel, as_tensor, register_family
from mtquery.generate.registry import ModelSpec
from mtquery.generate.weights import load_state, resolve_file, sha256


def load(spec: ModelSpec, weights: str | None) -> Built:
    import open_clip
    import torch

    path = None if spec.tiny or weights == "random" else resolve_file(spec, weights)
    torch.manual_seed(0)
    if spec.tiny:
        from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

        a = spec.arch
        return Built(CLIP(embed_dim=a["embed_dim"], vision_cfg=CLIPVisionCfg(**a["vision"]),
                          text_cfg=CLIPTextCfg(**a["text"])))
    model = open_clip.create_model(spec.arch["open_clip_name"], pretrained=None,
                                   load_weights=False)
    if path is None:
        return Built(model)
    missing, _ = model.load_state_dict(load_state(path), strict=False)
    if [k for k in missing if k.startswith("visual.")]:
        raise DataError(f"{path} does not hold {spec.name} weights "
                        f"(missing {len(missing)} keys, e.g. {missing[0]})")
    return Built(model, str(path), sha256(path))


def preprocess(lm: LoadedModel, x):
    import torch

    return (torch.clamp(2.5 * as_tensor(lm, x) / 10000.0, 0.0, 1.0) - 0.5) / 0.5


def forward(lm: LoadedModel, t):
    return lm.module.encode_image(t)


def tokenize(lm: LoadedModel, texts: list[str]):
    """open_clip's tokenizer of the model: the published one for real weights (from the
    local Hugging Face cache, or fetched once like the weights), open_clip's bundled BPE
    tokenizer for test-size models."""
    import open_clip

    spec = lm.spec
    if spec.tiny:
        return open_clip.tokenize(texts, context_length=spec.arch["text"]["context_length"])
    try:
        tok = open_clip.get_tokenizer(spec.arch["open_clip_name"])
    except Exception as exc:  # noqa: BLE001 - any hub / cache failure: say how to get it
        raise DataError(f"cannot load the text tokenizer of {spec.name} "
                        f"({spec.weights_repo}): {str(exc).splitlines()[0][:200]}; fetch it "
                        f"once with: huggingface-cli download {spec.weights_repo}") from exc
    return tok(texts)


def encode_text(lm: LoadedModel, texts: list[str]):
    return lm.module.encode_text(tokenize(lm, texts).to(lm.device))


PREPROCESSING = {
    "rgb-siglip": "clip(2.5 * x / 10000, 0, 1); Normalize(mean 0.5, std 0.5); no resize",
}

FAMILY = register_family(Family("open_clip", load, preprocess, forward,
                                preprocessing=PREPROCESSING, encode_text=encode_text))
