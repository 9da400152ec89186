"""timm's own model tests (its tests/test_models.py) that tests/test_models.py does not cover, on
5D input, over every registered model at tiny sizes (test_models.FAMILIES):

- default cfgs: ``pool_size`` is the last maps' ``(H, W)`` at ``input_size``; ``first_conv`` names
  every conv that takes the input (SlowFast: both stems);
- loading pretrained weights with ``in_chans`` 1 and 2 and a new head (timm's
  ``test_model_load_pretrained``), 3D stems adapted by timm's rule;
- a model's network follows its name and tag, never the ``pretrained`` flag;
- feature options: ``feature_cls`` getter / list / dict agree, ``hook`` / ``fx`` and ``output_stride``
  are refused by name, ``output_fmt`` channels-last;
- ``list_published`` (what of ``timm.list_pretrained`` is on the Hub).
"""
import dataclasses
import logging
import math

import pytest
import timm
import torch
import torch.nn as nn
from safetensors.torch import save_file
from timm.models._registry import _model_default_cfgs, _model_pretrained_cfgs

import tada_zoo
from _engine_utils import one_thread  # noqa: F401  (autouse)
from test_models import MODEL_NAMES, _family, _input

TIMM_LOG = "timm.models._builder"


def _create(name: str, drop=(), **kwargs) -> nn.Module:
    """``name[.tag]`` built small (its family's tiny kwargs, less ``drop``)."""
    torch.manual_seed(0)
    tiny = {k: v for k, v in _family(name.split(".")[0]).kwargs.items() if k not in drop}
    return timm.create_model(name, **dict(tiny, **kwargs))


def _arch(name: str) -> str:
    """The architecture an entrypoint builds (aliases such as ``tadaformer_b16`` have no cfg of their own)."""
    return _create(name).pretrained_cfg["architecture"]


def _maps_at(model: nn.Module, x: torch.Tensor):
    with torch.no_grad():
        return model.forward_features(x), model.forward_intermediates(x, intermediates_only=True)


# ---- default cfgs (timm's test_model_default_cfgs) -------------------------------------------

@pytest.mark.parametrize("name", MODEL_NAMES)
def test_pool_size_is_the_last_maps_size(name):
    """At the cfg's ``input_size`` (tiny widths; TAdaFormer with its real patch size), the unpooled
    features and the deepest ``forward_intermediates`` maps are ``pool_size`` in H, W."""
    model = _create(name, drop=("patch_size",)).eval()
    cfg = model.pretrained_cfg
    pool = cfg["pool_size"]
    assert isinstance(pool, tuple) and len(pool) == 2, f"pool_size {pool!r}: timm wants the (H, W) of the last map"
    x = torch.randn(1, 3, _family(name).input_shape[2], *cfg["input_size"][1:])
    feats, maps = _maps_at(model, x)
    deepest = max(info["reduction"] for info in model.feature_info)
    last = [m for m, info in zip(maps, model.feature_info) if info["reduction"] == deepest]
    assert last and all(tuple(m.shape[-2:]) == pool for m in last), [tuple(m.shape) for m in last]
    for f in feats if isinstance(feats, (list, tuple)) else [feats]:
        if f.dim() == 5:  # (B, C, T, H, W) maps
            assert tuple(f.shape[-2:]) == pool
        else:  # TAdaFormer's tokens (B, T', 1 + H' * W', D), as timm's ViTs
            assert f.shape[2] == 1 + math.prod(pool)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_first_conv_names_every_input_conv(name):
    """With an unusual ``in_chans`` the convs that see it are exactly the cfg's ``first_conv``."""
    model = _create(name, in_chans=5)
    first = model.pretrained_cfg["first_conv"]
    first = (first,) if isinstance(first, str) else tuple(first)
    takes_input = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)) and m.in_channels == 5}
    assert set(first) == takes_input
    state_dict = model.state_dict()
    assert all(f + ".weight" in state_dict for f in first)


# ---- pretrained loading (timm's test_model_load_pretrained) -----------------------------------

def _save(model: nn.Module, path) -> str:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_load_pretrained_in_chans(name, tmp_path, caplog):
    """3-channel weights load into 1- and 2-channel models with a new head: every stem is timm's
    rule (sum for 1; repeat, scaled by 3 / in_chans, otherwise), nothing re-initialised."""
    source = _create(name)
    file = _save(source, tmp_path / "w.safetensors")
    first = source.pretrained_cfg["first_conv"]
    first = (first,) if isinstance(first, str) else tuple(first)
    expected = {1: lambda w: w.sum(1, keepdim=True), 2: lambda w: w[:, :2] * 1.5}
    with caplog.at_level(logging.WARNING, logger=TIMM_LOG):
        for in_chans, num_classes in ((1, 5), (2, 0)):
            model = _create(name, pretrained=True, pretrained_cfg_overlay=dict(file=file), in_chans=in_chans,
                            num_classes=num_classes)
            head = source.pretrained_cfg["classifier"] + "."
            own, src = ({k: v for k, v in m.state_dict().items() if not k.startswith(head)} for m in (model, source))
            assert set(own) == set(src)
            for f in first:
                torch.testing.assert_close(own[f + ".weight"], expected[in_chans](src[f + ".weight"]))
            others = [k for k in own if k[:-len(".weight")] not in first]
            assert all(torch.equal(own[k], src[k]) for k in others)
            x = _input(name)[:, :1].expand(-1, in_chans, -1, -1, -1)
            with torch.no_grad():
                assert model.eval()(x).shape == (x.shape[0], num_classes or model.num_features)
    assert not caplog.records, [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_network_follows_name_and_tag_not_pretrained(name, tmp_path):
    """Every tag of the architecture: the same network with or without ``pretrained`` (its own
    weights load strictly), the cfg's classes; the untagged name is the default tag's network."""
    arch = _arch(name)
    tags = list(_model_default_cfgs[arch].tags)
    keys = {}
    for tag in tags:
        full = f"{arch}.{tag}" if tag else arch
        model = _create(full)
        cfg = _model_pretrained_cfgs[full]
        assert model.num_classes == cfg.num_classes and model.pretrained_cfg.get("tag") == cfg.tag
        loaded = _create(full, pretrained=True, pretrained_cfg_overlay=dict(file=_save(model, tmp_path / "w.safetensors")))
        assert {k: v.shape for k, v in loaded.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
        keys[tag] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    default = _create(name)
    assert default.pretrained_cfg.get("tag") == tags[0] or not tags[0]
    assert {k: tuple(v.shape) for k, v in default.state_dict().items()} == keys[tags[0]]


def test_tadaformer_b16_32f_default_is_the_ssv2_network():
    """The issue's case: the untagged name gives the default .ssv2 cfg and network, .k400 the K400 one."""
    default, ssv2, k400 = (_create(n) for n in ("tadaformer_b16_32f", "tadaformer_b16_32f.ssv2",
                                                "tadaformer_b16_32f.k400"))
    assert default.num_classes == ssv2.num_classes == 174 and k400.num_classes == 400
    assert set(default.state_dict()) == set(ssv2.state_dict()) > set(k400.state_dict())
    assert any(".tada2." in k for k in default.state_dict())


# ---- feature options ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODEL_NAMES)
def test_feature_cls_and_output_fmt(name):
    x = _input(name)
    with torch.no_grad():
        getter = _create(name, features_only=True, feature_cls="getter").eval()(x)
        listed = _create(name, features_only=True, feature_cls="list").eval()(x)
        as_dict = _create(name, features_only=True, feature_cls="dict").eval()
        named = as_dict(x)
        assert list(named) == as_dict.feature_info.module_name()
        for a, b, c in zip(getter, listed, named.values(), strict=True):
            torch.testing.assert_close(a, b)
            torch.testing.assert_close(a, c)
        last = _create(name, features_only=True, output_fmt="NHWC").eval()(x)
        assert [m.shape for m in last] == [m.permute(0, 2, 3, 4, 1).shape for m in getter]
        model = _create(name).eval()
        first = model.forward_intermediates(x, indices=[0], intermediates_only=True)[0]
        for fmt in ("NTHWC", "NHWC"):
            torch.testing.assert_close(model.forward_intermediates(x, indices=[0], output_fmt=fmt,
                                                                   intermediates_only=True)[0],
                                       first.permute(0, 2, 3, 4, 1))
    with pytest.raises(ValueError, match="output_fmt must be 'NCTHW'"):
        model.forward_intermediates(x, output_fmt="NLC")


@pytest.mark.parametrize("kwargs,match", [
    (dict(features_only=True, feature_cls="hook"), r"feature_cls='hook' does not apply.*'getter'"),
    (dict(features_only=True, feature_cls="fx"), r"feature_cls='fx' does not apply"),
    (dict(output_stride=16), r"output_stride=16: .*fixed output stride"),
    (dict(features_only=True, output_stride=8), r"output_stride=8"),
])
@pytest.mark.parametrize("name", ["tada2d_r50_8f", "slowfast_r50_8x8", "tadaformer_b16_16f"])
def test_unsupported_feature_options_are_refused(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _create(name, **kwargs)


# ---- published weights --------------------------------------------------------------------------

def test_list_published_marks_what_loads_from_the_hub(monkeypatch):
    advertised = timm.list_pretrained("tada*")
    assert len(advertised) >= 30 and tada_zoo.list_published("tada*") == [
        n for n in advertised if timm.models.get_pretrained_cfg(n).published]
    name = "tada2d_r50_8f.k400"
    monkeypatch.setitem(_model_pretrained_cfgs, name, dataclasses.replace(_model_pretrained_cfgs[name], published=True))
    assert name in tada_zoo.list_published() and name in tada_zoo.list_published("tada2d*")
    assert name not in tada_zoo.list_published("tadaformer*")
    assert set(tada_zoo.list_published()) <= set(timm.list_pretrained())
