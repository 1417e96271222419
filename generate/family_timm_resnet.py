"""Family ``timm-resnet``: SSL4EO-S12 ResNets (torchgeo weights) built with timm.

Preprocessing (reference SSL4EO code): ``s2-div10000`` divides L1C DN by 10000;
``s1-db-minmax`` turns linear power into dB and scales it to [0, 1] with the SSL4EO-S12
statistics. The embedding is the pooled feature vector (``fc`` removed).
"""

from __future__ import annotations

from mtquery.errors import DataError
from mtquery.generate.family import Built, Family, LoadedModel, as_tensor, register_family
from mtquery.generate.registry import ModelSpec
from mtquery.generate.weights import load_state, resolve_file, sha256

#: SSL4EO-S12 Sentinel-1 dB statistics used by the reference (docs/standard.md,
#: "Preprocessing and models").
S1_DB_MEAN = (-12.54847273, -20.19237134)
S1_DB_STD = (5.25697717, 5.91150917)


def build(spec: ModelSpec):
    """The architecture of ``spec.arch`` with seeded random init and no classifier."""
    import torch
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet

    a = spec.arch
    block = Bottleneck if a["block"] == "bottleneck" else BasicBlock
    torch.manual_seed(0)
    model = ResNet(block=block, layers=tuple(a["layers"]), channels=tuple(a["channels"]),
                   stem_width=a["stem_width"], in_chans=a["in_chans"], num_classes=0)
    model.fc = torch.nn.Identity()
    return model


def load(spec: ModelSpec, weights: str | None) -> Built:
    module = build(spec)
    if spec.tiny or weights == "random":
        return Built(module)
    path = resolve_file(spec, weights)
    state = {k: v for k, v in load_state(path).items() if not k.startswith("fc.")}
    missing, _ = module.load_state_dict(state, strict=False)  # reference: strict=False
    if len(missing) > len(state):
        raise DataError(f"{path} does not hold {spec.name} weights")
    return Built(module, str(path), sha256(path))


def preprocess(lm: LoadedModel, x):
    import torch

    t = as_tensor(lm, x)
    if lm.spec.preprocessing == "s2-div10000":
        return t / 10000.0
    mean = torch.tensor(S1_DB_MEAN, device=t.device).view(1, -1, 1, 1)
    std = torch.tensor(S1_DB_STD, device=t.device).view(1, -1, 1, 1)
    lo, hi = mean - 2 * std, mean + 2 * std
    db = 10.0 * torch.log10(torch.clamp(t, min=1e-10))
    return torch.clamp((db - lo) / (hi - lo), 0.0, 1.0)


def forward(lm: LoadedModel, t):
    return lm.module(t)


PREPROCESSING = {
    "s2-div10000": "x / 10000 (reference SSL4EO-S2L1C)",
    "s1-db-minmax": "dB = 10*log10(clip(x, 1e-10)); (dB - lo)/(hi - lo) clipped to [0, 1] with "
                    "lo/hi = mean -/+ 2 std of SSL4EO-S12 (reference SSL4EO-S1RTC)",
}

FAMILY = register_family(Family("timm-resnet", load, preprocess, forward,
                                preprocessing=PREPROCESSING))
