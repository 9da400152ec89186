"""timm's model contracts for every registered tada-zoo model (after timm's tests/test_models.py).

Each test is parametrised over ``tada_zoo.list_models()``, so a newly registered model is covered
without touching this file -- unless it belongs to a new family: every model is built small from
its family's row of ``FAMILIES`` (tiny constructor kwargs + a small input clip), and a model whose
family has no row fails ``test_family_known`` (and every other test) until one is added.

The family of a model is the class its entrypoint builds (its return annotation; checked against
the built model), not the entrypoint's module: ``slowfast.py`` registers SlowOnly as a ``ResNet3d``.

Known contract breaks are ``XFAILS`` entries (strict: once fixed, the xfail fails and must go).
"""
import dataclasses
import inspect
import math
from typing import NamedTuple, Tuple

import pytest
import timm
import torch
import torch.nn as nn

import tada_zoo
from _engine_utils import one_thread  # noqa: F401  (autouse: tiny ops run fastest on one thread)
from tada_zoo.models._cfg import VideoPretrainedCfg

NUM_CLASSES = 7


class Family(NamedTuple):
    kwargs: dict  # tiny constructor kwargs the family's entrypoints accept
    input_shape: Tuple[int, int, int, int, int]  # (B, C, T, H, W): small but valid for every member


FAMILIES = {
    # TSN / TAda2D (tada2d.py): stem /2, stages /4 ... /32; any T
    "VideoResNet": Family(dict(layers=(1, 1, 1, 1), widths=(4, 8, 8, 16), stem_width=8), (2, 3, 4, 32, 32)),
    # R3D / R(2+1)D (resnet3d.py) and SlowOnly (slowfast.py): any T
    "ResNet3d": Family(dict(layers=(1, 1, 1, 1), widths=(4, 8, 8, 8), stem_width=8), (2, 3, 4, 32, 32)),
    # SlowFast: beta must divide the widths; T a multiple of alpha (4 for 8x8, 8 for 4x16, set by the entrypoint)
    "SlowFast": Family(dict(layers=(1, 1, 1, 1), widths=(8, 8, 8, 8), stem_width=8, beta=2), (2, 3, 8, 32, 32)),
    # TAdaConvNeXt V1 / V2: H, W multiple of 32; the tubelet stem halves T; head_dim: V2's route function
    "TAdaConvNeXt": Family(dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), head_dim=8), (2, 3, 4, 32, 32)),
    # TAdaFormer: depth >= 3 as the default features_only out_indices is 3 (the last 3 blocks)
    "TAdaFormer": Family(dict(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=2, rf_head_dim=16),
                         (2, 3, 4, 32, 32)),
}

# (test function name, model name) -> precise reason. Kept strict: a fixed model makes its xfail fail.
XFAILS = {}

MODEL_NAMES = tada_zoo.list_models()


def _params(test: str):
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=XFAILS[test, name]))
            if (test, name) in XFAILS else name for name in MODEL_NAMES]


def _family_name(name: str) -> str:
    ret = inspect.signature(timm.models.model_entrypoint(name)).return_annotation
    if ret is inspect.Signature.empty:
        pytest.fail(f"{name}: its entrypoint has no return annotation, so its family (model class) is unknown; "
                    f"annotate it (e.g. '-> ResNet3d')")
    return ret if isinstance(ret, str) else ret.__name__


def _family(name: str) -> Family:
    family = _family_name(name)
    if family not in FAMILIES:
        pytest.fail(f"{name} builds a {family}, a family missing from FAMILIES in {__file__}: add its tiny "
                    f"constructor kwargs and a small valid input shape there")
    return FAMILIES[family]


def _create(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **dict(_family(name).kwargs, **kwargs))
    return model


def _model(name: str, num_classes: int = NUM_CLASSES) -> nn.Module:
    model = _create(name, num_classes=num_classes)
    assert type(model).__name__ == _family_name(name), \
        f"{name}: the entrypoint says it builds a {_family_name(name)}, it built a {type(model).__name__}"
    return model


def _input(name: str) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(_family(name).input_shape)


def _check_maps(maps, infos, x, what):
    """Each map is (B, C, T, H, W) with C = num_chs and H, W = input / reduction."""
    B, _, _, H, W = x.shape
    assert len(maps) == len(infos), f"{what}: {len(maps)} maps for {len(infos)} feature_info entries"
    for i, (m, info) in enumerate(zip(maps, infos)):
        assert torch.is_tensor(m) and m.dim() == 5, f"{what}[{i}]: not a 5D (B, C, T, H, W) tensor: {getattr(m, 'shape', m)}"
        r = info["reduction"]
        assert (m.shape[0], m.shape[1]) == (B, info["num_chs"]), f"{what}[{i}]: shape {tuple(m.shape)}, feature_info {info}"
        assert m.shape[2] >= 1 and tuple(m.shape[3:]) == (math.ceil(H / r), math.ceil(W / r)), \
            f"{what}[{i}]: shape {tuple(m.shape)} for input {tuple(x.shape)} and feature_info {info}"
        assert torch.isfinite(m).all(), f"{what}[{i}]: not finite"


def _assert_close_nested(a, b, **kw):
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b)
        for u, v in zip(a, b):
            _assert_close_nested(u, v, **kw)
    else:
        torch.testing.assert_close(a, b, **kw)


# ---- the registry ---------------------------------------------------------------------------

def test_registry_lists_models():
    assert len(MODEL_NAMES) >= 30 and MODEL_NAMES == sorted(set(MODEL_NAMES), key=MODEL_NAMES.index)
    assert all(timm.is_model(n) for n in MODEL_NAMES)


@pytest.mark.parametrize("name", _params("test_family_known"))
def test_family_known(name):
    assert _family_name(name) in FAMILIES, (
        f"{name} builds a {_family_name(name)}, a family missing from FAMILIES: add its tiny kwargs and input shape")


# ---- forward / backward ---------------------------------------------------------------------

@pytest.mark.parametrize("name", _params("test_model_forward"))
def test_model_forward(name):
    model = _model(name).eval()
    x = _input(name)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (x.shape[0], NUM_CLASSES)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", _params("test_model_backward"))
def test_model_backward(name):
    model = _model(name).train()
    x = _input(name)
    out = model(x)
    assert out.shape == (x.shape[0], NUM_CLASSES)
    loss = nn.functional.cross_entropy(out, torch.arange(x.shape[0]) % NUM_CLASSES)
    loss.backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in params if p.grad is None]
    assert not missing, f"{len(missing)} of {len(params)} parameters got no gradient: {missing[:10]}"
    bad = [n for n, p in params if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:10]}"
    assert any(p.grad.abs().sum() > 0 for _, p in params)


# ---- classifier API -------------------------------------------------------------------------

@pytest.mark.parametrize("name", _params("test_model_classifier"))
def test_model_classifier(name):
    model = _model(name).eval()
    x = _input(name)
    B = x.shape[0]
    nf = model.num_features
    assert isinstance(nf, int) and nf > 0 and model.num_classes == NUM_CLASSES
    fc = model.get_classifier()
    assert isinstance(fc, nn.Linear) and (fc.in_features, fc.out_features) == (nf, NUM_CLASSES)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (B, nf)
        torch.testing.assert_close(model.forward_head(feats), logits)
        torch.testing.assert_close(fc(pre), logits)
        model.reset_classifier(0)
        assert model.num_classes == 0
        pooled = model(x)
        assert pooled.shape == (B, nf)
        torch.testing.assert_close(pooled, pre)  # the head without its classifier: the pooled features
        model.reset_classifier(5)
        assert model(x).shape == (B, 5) and model.get_classifier().out_features == 5
        model.reset_classifier(0, "")  # no classifier, no pooling: the unpooled features' shape (timm's test)
        unpooled = model(x)
        if isinstance(feats, (list, tuple)):
            assert [u.shape for u in unpooled] == [f.shape for f in feats]
        else:
            assert unpooled.shape == feats.shape


# ---- feature API ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", _params("test_model_forward_intermediates"))
def test_model_forward_intermediates(name):
    model = _model(name).eval()
    x = _input(name)
    infos = list(model.feature_info)
    n = len(infos)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        _check_maps(inter, infos, x, "forward_intermediates")
        _assert_close_nested(final, model.forward_features(x))
        last2 = model.forward_intermediates(x, indices=2)
        assert isinstance(last2, tuple) and len(last2) == 2 and len(last2[1]) == 2
        _check_maps(last2[1], infos[-2:], x, "forward_intermediates(indices=2)")
        picked = [0, n - 1]
        only = model.forward_intermediates(x, indices=picked, intermediates_only=True)
        assert isinstance(only, list), f"intermediates_only=True returned a {type(only).__name__}"
        _check_maps(only, [infos[i] for i in picked], x, "forward_intermediates(intermediates_only=True)")
        _assert_close_nested(only, [inter[i] for i in picked])
        early = model.forward_intermediates(x, indices=[0], stop_early=True, intermediates_only=True)
        _assert_close_nested(early, inter[:1])


@pytest.mark.parametrize("name", _params("test_model_features_only"))
def test_model_features_only(name):
    model = _create(name, features_only=True).eval()
    x = _input(name)
    with torch.no_grad():
        maps = model(x)
    info = model.feature_info
    assert isinstance(maps, (list, tuple)) and len(maps) == len(info.channels()) >= 1
    _check_maps(maps, [dict(num_chs=c, reduction=r) for c, r in zip(info.channels(), info.reduction())], x,
                "features_only")
    # the default out_indices of the model's feature_cfg, as timm resolves them
    full = _model(name)
    expected = timm.models._features.feature_take_indices(len(full.feature_info), model.out_indices)[0]
    assert info.channels() == [full.feature_info[i]["num_chs"] for i in expected]


# ---- grad checkpointing ---------------------------------------------------------------------

@pytest.mark.parametrize("name", _params("test_model_grad_checkpointing"))
def test_model_grad_checkpointing(name):
    model = _model(name).eval()  # eval: no dropout / batch statistics, so both passes are the same function
    x = _input(name)
    recomputed = []
    hooks = [m.register_forward_hook(lambda *_: recomputed.append(1) if in_backward[0] else None)
             for m in model.modules()]
    in_backward = [False]
    results = []
    for enable in (False, True):
        model.set_grad_checkpointing(enable)
        model.zero_grad()
        out = model(x)
        recomputed.clear()
        in_backward[0] = True
        out.square().sum().backward()
        in_backward[0] = False
        results.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
                        len(recomputed)))
    for h in hooks:
        h.remove()
    (out0, grads0, recomputed0), (out1, grads1, recomputed1) = results
    assert recomputed0 == 0
    assert recomputed1 > 0, "set_grad_checkpointing(True) recomputes nothing in backward: checkpointing is off"
    torch.testing.assert_close(out1, out0, atol=1e-5, rtol=1e-5)
    assert grads1.keys() == grads0.keys()
    for n in grads0:
        torch.testing.assert_close(grads1[n], grads0[n], atol=1e-5, rtol=1e-4, msg=n)


# ---- pretrained cfg -------------------------------------------------------------------------

@pytest.mark.parametrize("name", _params("test_model_pretrained_cfg"))
def test_model_pretrained_cfg(name):
    model = _model(name)
    cfg = model.pretrained_cfg
    video_fields = {f.name for f in dataclasses.fields(VideoPretrainedCfg)}
    # timm stores the cfg as a dict without its None fields: the video ones that always have a value must be there
    assert set(cfg) <= video_fields, f"fields a VideoPretrainedCfg does not have: {sorted(set(cfg) - video_fields)}"
    assert {"num_frames", "target_fps", "architecture"} <= set(cfg), f"missing video fields: {sorted(cfg)}"
    registered = timm.models.get_pretrained_cfg(
        f"{cfg['architecture']}.{cfg['tag']}" if cfg.get("tag") else cfg["architecture"])
    assert isinstance(registered, VideoPretrainedCfg), f"{cfg['architecture']}: {type(registered).__name__}"
    assert isinstance(cfg["num_frames"], int) and cfg["num_frames"] >= 1
    assert model.num_frames == cfg["num_frames"]
    assert registered.num_frames == cfg["num_frames"]
    assert cfg.get("sampling") in (None, "interval", "segment")  # None: no released weights / recipe to follow
    if cfg.get("sampling") == "interval":
        assert isinstance(cfg.get("frame_interval"), int) and cfg["frame_interval"] >= 1
    assert len(cfg["input_size"]) == 3 and cfg["input_size"][0] == 3 and len(cfg["mean"]) == len(cfg["std"]) == 3
    # timm's default-cfg contract: first_conv / classifier name the modules pretrained loading adapts
    assert model.get_submodule(cfg["classifier"]) is model.get_classifier()
    first = (cfg["first_conv"],) if isinstance(cfg["first_conv"], str) else cfg["first_conv"]  # SlowFast: both stems
    assert all(isinstance(model.get_submodule(f), (nn.Conv2d, nn.Conv3d)) for f in first)
    # every pretrained tag of the architecture is a VideoPretrainedCfg with its clip length
    for tag in timm.list_pretrained(cfg["architecture"] + ".*") or [cfg["architecture"]]:
        tag_cfg = timm.models.get_pretrained_cfg(tag)
        assert isinstance(tag_cfg, VideoPretrainedCfg) and tag_cfg.num_frames >= 1, tag


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_family_declared(name):
    """Every family file declares FAMILY: what recipes, release lists and inflation read instead of tables."""
    from tada_zoo.engine.recipes import RECIPES, recipe_for
    from tada_zoo.models._cfg import VideoFamily
    from tada_zoo.models import family

    fam = family(name)
    assert isinstance(fam, VideoFamily) and fam.display_name(name)
    assert recipe_for(name)[0] in RECIPES
