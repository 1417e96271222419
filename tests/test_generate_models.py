"""Model registry, preprocessing, weights handling and embed_patches (tiny models only)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from mtquery.errors import DataError, UsageError
from mtquery.generate import embed_patches, get_model_spec, list_models
from mtquery.generate import family_timm_resnet as resnet
from mtquery.generate import models as M
from mtquery.generate.family import get_family


def _patches(spec, n=2, size=None, seed=0):
    size = size or spec.fragment_size
    rng = np.random.default_rng(seed)
    hi = 0.5 if spec.bands[0] == "vv" else 4000  # S1 linear power / S2 DN
    return rng.uniform(0, hi, (n, len(spec.bands), size, size)).astype(np.float32)


def test_registry_standard_models():
    names = [m.name for m in list_models(include_tiny=False)]
    assert names == ["ssl4eo-s2l1c", "ssl4eo-s1rtc", "siglip", "dinov2", "spectral"]
    s2 = get_model_spec("ssl4eo-s2l1c")
    assert (s2.dim, s2.fragment_size, len(s2.bands), s2.bands[-3]) == (2048, 224, 13, "B10")
    assert s2.weights_revision == "d7f14bf5530d70ac69d763e58e77e44dbecfec7c"
    s1 = get_model_spec("ssl4eo-s1rtc")
    assert (s1.dim, s1.bands) == (2048, ("vv", "vh"))
    sig = get_model_spec("siglip")
    assert (sig.dim, sig.fragment_size, sig.bands) == (1152, 384, ("B04", "B03", "B02"))
    dino = get_model_spec("dinov2")
    assert (dino.dim, dino.fragment_size, dino.bands) == (768, 224, ("B04", "B03", "B02"))
    for m in list_models():
        assert m.preprocessing in get_family(m.family).preprocessing
        if not m.tiny and m.family != "spectral":
            assert m.weights_name and m.weights_revision and m.weights_file
    with pytest.raises(UsageError, match="unknown model"):
        get_model_spec("resnet9000")


@pytest.mark.parametrize("name", ["ssl4eo-s2l1c-tiny", "ssl4eo-s1rtc-tiny", "siglip-tiny",
                                  "dinov2-tiny", "spectral"])
def test_tiny_models_embed(name):
    spec = get_model_spec(name)
    x = _patches(spec, n=2, size=64)  # resized to the fragment size
    e = embed_patches(name, x, batch_size=1)
    assert e.shape == (2, spec.dim) and e.dtype == np.float32 and np.isfinite(e).all()
    e2 = embed_patches(name, x, batch_size=2)
    np.testing.assert_allclose(e, e2, rtol=1e-4, atol=1e-5)
    assert not np.allclose(e[0], e[1])


def test_tiny_uses_same_code_path_as_full():
    for full in ("ssl4eo-s2l1c", "ssl4eo-s1rtc", "siglip", "dinov2"):
        a, b = get_model_spec(full), get_model_spec(full + "-tiny")
        assert (a.family, a.bands, a.fragment_size, a.preprocessing) == (
            b.family, b.bands, b.fragment_size, b.preprocessing)


def test_spectral_first_values_are_band_means():
    spec = get_model_spec("spectral")
    x = _patches(spec, n=3, size=224)
    e = embed_patches("spectral", x)
    np.testing.assert_allclose(e[:, :12], x.mean(axis=(2, 3)) / 10000, rtol=1e-5)
    assert (e[:, 12:24] >= 0).all()


def test_wrong_band_count_is_a_usage_error():
    with pytest.raises(UsageError, match="takes 13 bands"):
        embed_patches("ssl4eo-s2l1c-tiny", np.zeros((1, 3, 224, 224)))


def test_s1_and_siglip_preprocessing_follow_spec():
    lm = M.load_model("ssl4eo-s1rtc-tiny")
    x = np.array([1e-12, 1e-3, 0.05, 1.0], dtype=np.float32).reshape(1, 1, 2, 2).repeat(2, 1)
    got = lm.family.preprocess(lm, x).numpy()
    mean = np.array(resnet.S1_DB_MEAN).reshape(1, 2, 1, 1)
    std = np.array(resnet.S1_DB_STD).reshape(1, 2, 1, 1)
    db = 10 * np.log10(np.clip(x, 1e-10, None))
    want = np.clip((db - (mean - 2 * std)) / (4 * std), 0, 1)
    np.testing.assert_allclose(got, want, atol=1e-6)
    lm = M.load_model("siglip-tiny")
    x = np.array([0, 2000, 4000, 8000], dtype=np.float32).reshape(1, 1, 2, 2).repeat(3, 1)
    got = lm.family.preprocess(lm, x).numpy()
    np.testing.assert_allclose(got, (np.clip(2.5 * x / 10000, 0, 1) - 0.5) / 0.5, atol=1e-6)


def test_dinov2_reference_quirk_and_corrected_mode():
    spec = get_model_spec("dinov2-tiny")
    x = _patches(spec, n=1, size=224)
    ref_lm, cor_lm = M.load_model("dinov2-tiny"), M.load_model("dinov2-tiny", mode="corrected")
    ref = ref_lm.family.preprocess(ref_lm, x).numpy()
    cor = cor_lm.family.preprocess(cor_lm, x).numpy()
    mean = np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    assert ref.shape == (1, 3, 224, 224)
    # quirk: inputs already in [0, 1] are rescaled by 1/255 again -> almost constant -mean/std
    assert np.abs(ref - (-mean / std)).max() < 2.0 / 255 / 0.224  # bicubic overshoot
    assert cor.std(axis=(2, 3)).min() > 10 * ref.std(axis=(2, 3)).max()
    a = embed_patches("dinov2-tiny", x)
    b = embed_patches("dinov2-tiny", x, preprocessing="corrected")
    assert not np.allclose(a, b)


def test_missing_weights_give_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MTQUERY_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("MTQUERY_WEIGHTS", raising=False)
    M.clear_cache()
    for name in ("ssl4eo-s2l1c", "siglip", "dinov2"):
        with pytest.raises(DataError) as ei:
            M.load_model(name)
        msg = str(ei.value)
        assert "Download" in msg and "weights=" in msg and "MTQUERY_WEIGHTS" in msg
        assert "--weights" not in msg  # library errors name arguments, not CLI flags
        assert get_model_spec(name).weights_revision in msg
    with pytest.raises(DataError, match="does not exist"):
        M.load_model("ssl4eo-s1rtc", weights=str(tmp_path / "nope.pth"))


def test_weights_from_file_and_env_dir(monkeypatch, tmp_path):
    import torch

    spec = get_model_spec("ssl4eo-s1rtc")
    net = resnet.build(spec)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01)
    d = tmp_path / "w" / spec.name
    d.mkdir(parents=True)
    torch.save(net.state_dict(), d / spec.weights_file)
    x = _patches(spec, n=1)
    M.clear_cache()
    a = embed_patches(spec.name, x, weights=str(d / spec.weights_file))
    monkeypatch.setenv("MTQUERY_WEIGHTS", str(tmp_path / "w"))
    b = embed_patches(spec.name, x)
    r = embed_patches(spec.name, x, weights="random")
    np.testing.assert_allclose(a, b, rtol=1e-5)
    assert a.shape == (1, 2048) and not np.allclose(a, r)
    lm = M.load_model(spec.name)
    assert lm.weights_sha256 and len(lm.weights_sha256) == 64
    M.clear_cache()


def test_real_dinov2_architecture_with_random_weights():
    x = _patches(get_model_spec("dinov2"), n=1)
    e = embed_patches("dinov2", x, weights="random")
    assert e.shape == (1, 768)
    M.clear_cache()


@pytest.mark.skipif(not os.environ.get("MTQUERY_SLOW_TESTS"), reason="400M-param init; slow")
def test_real_siglip_architecture_with_random_weights():
    e = embed_patches("siglip", _patches(get_model_spec("siglip"), n=1), weights="random")
    assert e.shape == (1, 1152)


def test_device_and_precision_checks():
    assert M.pick_device("cpu") == "cpu"
    with pytest.raises(UsageError):
        M.pick_device("tpu")
    with pytest.raises(UsageError, match="CUDA"):
        M.load_model("ssl4eo-s2l1c-tiny", device="cpu", precision="fp16")


def test_cli_stays_light_and_lists_models():
    code = ("import sys; import mtquery.cli; "
            "bad=[m for m in ('torch','open_clip','transformers','rasterio','timm') "
            "if m in sys.modules]; print(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-c", "from mtquery.cli import main; main()", "models"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "ssl4eo-s2l1c" in r.stdout and "spectral" in r.stdout


def test_fast_unique_ids_equal_reference_formula():
    import shapely

    from mtquery.generate.fastids import fast_unique_ids, vector_str
    from mtquery.standard.ids import unique_ids

    rng = np.random.default_rng(3)
    for dim in (1, 5, 60, 768, 1000, 1001, 1152):
        for scale in (1e-6, 1e-2, 1.0, 1e3, 1e9):
            for v in (rng.uniform(0, 1, dim), rng.normal(size=dim), rng.standard_cauchy(dim)):
                for dt in (np.float32, np.float64):
                    x = (v * scale).astype(dt)
                    assert vector_str(x) == str(x)
    x = np.array([0.0, -0.0, 1e-45, np.nan, np.inf], dtype=np.float32)
    assert vector_str(x) == str(x)
    geoms = [shapely.box(i, 0, i + 1, 1) for i in range(4)]
    emb = rng.normal(size=(4, 768)).astype(np.float32)
    args = (geoms, ["t"] * 4, ["p"] * 4, emb)
    assert fast_unique_ids(*args) == unique_ids(*args)


@pytest.mark.parametrize("name", [m.name for m in list_models() if m.family != "spectral"])
def test_bands_match_model_input_channels(name):
    """As torchgeo checks its weights' metadata: the registry's bands are what the first
    convolution of the built model takes."""
    import torch

    spec = get_model_spec(name)
    if name == "siglip" and not os.environ.get("MTQUERY_SLOW_TESTS"):
        pytest.skip("400M-param init; siglip-tiny runs the same family code")
    lm = M.load_model(name, weights=None if spec.tiny else "random", device="cpu")
    conv = next(m for m in lm.module.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.in_channels == len(spec.bands)
    if not spec.tiny:
        M.clear_cache()


# ------------------------------------------------------------------ a family defined here


@pytest.fixture()
def conv_family():
    """A new family in one place: a tiny real torch model, its load/preprocess/forward, and a
    registry row, registered through the public API (and removed afterwards)."""
    import torch

    from mtquery.generate import Built, Family, ModelSpec, register_family, register_model
    from mtquery.generate.family import FAMILIES, as_tensor
    from mtquery.generate.registry import REGISTRY, RGB_BANDS

    class PatchMean(torch.nn.Module):
        def __init__(self, bands: int, dim: int):
            super().__init__()
            self.conv = torch.nn.Conv2d(bands, dim, kernel_size=16, stride=16)

        def forward(self, x):
            return self.conv(x).relu().mean(dim=(2, 3))

    def load(spec, weights):
        torch.manual_seed(1)
        return Built(PatchMean(len(spec.bands), spec.dim))

    def preprocess(lm, x):
        return as_tensor(lm, x) / 10000.0

    def forward(lm, t):
        return lm.module(t)

    fam = register_family(Family("test-patchmean", load, preprocess, forward,
                                 preprocessing={"test-div10000": "x / 10000 (test)"}))
    spec = register_model(ModelSpec("test-patchmean-rgb", fam.name, RGB_BANDS, 224, 8,
                                    "test-div10000", "tests", tiny=True))
    yield spec, PatchMean
    FAMILIES.pop(fam.name)
    REGISTRY.pop(spec.name)
    M.clear_cache()


def test_new_family_runs_embed_patches(conv_family):
    import torch

    spec, net_cls = conv_family
    x = _patches(spec, n=3)
    e = embed_patches(spec.name, x, batch_size=2)
    torch.manual_seed(1)
    net = net_cls(3, 8).eval()
    with torch.no_grad():
        want = net(torch.from_numpy(x) / 10000.0).numpy()
    np.testing.assert_allclose(e, want, rtol=1e-5, atol=1e-6)
    assert M.load_model(spec.name).family.name == "test-patchmean"
    small = embed_patches(spec.name, _patches(spec, n=2, size=64))  # resized: fixed size
    assert small.shape == (2, 8) and np.isfinite(small).all()
    assert spec.name in [m.name for m in list_models()]


def test_new_family_runs_the_generate_pipeline(conv_family, tmp_path):
    import json
    from pathlib import Path

    import pyarrow.parquet as pq

    from mtquery.generate.pipeline import generate

    spec, _ = conv_family
    scene = Path(__file__).parent / "data" / "virginia_120m"
    files = [str(p) for p in sorted(scene.glob("B*.tif"))]
    out = tmp_path / "o"
    s = generate(spec.name, files, str(out), product_id="P1", timestamp="T1", batch_size=7)
    assert s.samples_failed == 0 and s.rows_total == 25
    t = pq.read_table(sorted(out.glob("part-*.parquet")))
    assert t.schema.field("embedding").type.list_size == 8 and t.num_rows == 25
    emb = np.asarray(t.column("embedding").combine_chunks().flatten()).reshape(-1, 8)
    assert np.isfinite(emb).all() and len(np.unique(emb, axis=0)) > 1
    manifest = out / "_mtquery" / "manifest.json"
    m = json.loads(manifest.read_text())
    assert m["model"]["family"] == "test-patchmean"
    assert m["preprocessing"]["description"] == "x / 10000 (test)"


def test_unknown_family_is_a_usage_error():
    with pytest.raises(UsageError, match="not registered"):
        get_family("no-such-family")
