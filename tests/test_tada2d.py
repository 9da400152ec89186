"""TSN / TAda2D: timm integration, the paper's sizes, original outputs and 2D inflation."""
import pytest
import timm
import torch
import torch.nn as nn
from timm.models.resnet import Bottleneck as TimmBottleneck, ResNet

import tada_zoo  # noqa: F401
from tada_zoo.weights.inflate import inflate
from tada_zoo.models._resnet import Bottleneck
from tada_zoo.models.tada2d import VideoResNet, checkpoint_filter_fn
from tada_zoo.deploy.profile import count_gmacs, count_params

TINY = dict(layers=(1, 1, 1, 1), widths=(4, 8, 8, 16), stem_width=8)


def tiny(name="tada2d_r50_8f", **kwargs):
    return timm.create_model(name, **dict(TINY, **kwargs))


def _randomise_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = 1 + 0.2 * torch.randn(m.weight.shape, generator=g)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)
            m.running_mean = 0.1 * torch.randn(m.running_mean.shape, generator=g)
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=g)


@pytest.mark.parametrize("name", ["tsn_r50_8f", "tsn_r50_16f", "tada2d_r50_8f", "tada2d_r50_16f", "tada2d_r50"])
def test_registered(name):
    assert name in timm.list_models("t*")


def test_forward_shapes_and_api():
    model = tiny(num_classes=7).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    assert model(x).shape == (2, 7)
    feats = model.forward_features(x)
    assert feats.shape == (2, 64, 4, 1, 1)
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features) == (2, 64)
    assert model.get_classifier() is model.fc
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    model.reset_classifier(0)
    assert model(x).shape == (2, 64)
    assert model.group_matcher()["blocks"] == r"^layer(\d+)\.(\d+)"
    assert model.feature_info[-1] == dict(num_chs=64, reduction=32, module="layer4")


def test_features_only_gives_5d_maps_per_stage():
    backbone = tiny(features_only=True, out_indices=(1, 2, 3, 4))
    maps = backbone(torch.randn(2, 3, 3, 32, 32))
    assert [tuple(m.shape) for m in maps] == [(2, 16, 3, 8, 8), (2, 32, 3, 4, 4), (2, 32, 3, 2, 2), (2, 64, 3, 1, 1)]
    assert backbone.feature_info.channels() == [16, 32, 32, 64]


def test_forward_intermediates_agree_with_forward_features():
    model = tiny().eval()
    x = torch.randn(1, 3, 3, 32, 32)
    final, maps = model.forward_intermediates(x)
    torch.testing.assert_close(final, model.forward_features(x))
    assert len(maps) == 5 and maps[0].shape == (1, 8, 3, 16, 16)
    assert len(model.forward_intermediates(x, indices=2, intermediates_only=True)) == 2
    model.prune_intermediate_layers(indices=(1,))
    assert isinstance(model.layer2, nn.Identity) and isinstance(model.fc, nn.Identity)


@pytest.mark.parametrize("T", [1, 3])
def test_any_clip_length_and_grad_checkpointing(T):
    model = tiny(drop_path_rate=0.1)
    x = torch.randn(2, 3, T, 32, 32)
    torch.manual_seed(0)
    model.train()
    y = model(x)
    y.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    torch.manual_seed(0)
    y2 = model(x)
    y2.sum().backward()
    torch.testing.assert_close(y2, y)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, g)


def test_drop_path_drops_whole_clips():
    block = Bottleneck(16, 4, drop_path=0.5, frames=True, tada=("2d",))
    block.train()
    x = torch.randn(64, 3, 16, 4, 4)
    torch.manual_seed(0)
    residual = block(x) - torch.relu(x)  # no downsample: identity shortcut
    dropped = residual.flatten(2).abs().amax(-1) == 0  # (B, T)
    assert dropped.any() and (dropped.all(1) | ~dropped.any(1)).all()


@pytest.mark.parametrize("bad, message", [
    (torch.randn(2, 3, 32, 32), r"5D video tensor \(B, C, T, H, W\), got shape \(2, 3, 32, 32\)"),
    (torch.randn(2, 1, 4, 32, 32), r"expected 3 channels .* got shape \(2, 1, 4, 32, 32\)"),
])
def test_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        tiny()(bad)


def test_unknown_model_name():
    with pytest.raises(RuntimeError, match="Unknown model"):
        timm.create_model("tada2d_r51_8f")


def test_paper_sizes():
    """Table 2: TAda2D-R50 27.5M, TSN-R50 24.3M (400 classes); ~33.0 GFLOPs at 8x224^2 and ~43 at 8x256^2."""
    tada, tsn = timm.create_model("tada2d_r50_8f"), timm.create_model("tsn_r50_8f")
    assert count_params(tada) == pytest.approx(27.5e6, rel=0.02)
    assert count_params(tsn) == pytest.approx(24.3e6, rel=0.02)
    assert count_gmacs(tada, (1, 3, 8, 224, 224)) == pytest.approx(33.02, rel=0.02)
    assert count_gmacs(tada, (1, 3, 8, 256, 256)) == pytest.approx(43, rel=0.02)
    assert count_gmacs(tsn, (1, 3, 8, 224, 224)) == pytest.approx(33.0, rel=0.02)


@pytest.mark.parametrize("arch, name", [
    ("tada2d_r50_k400", "tada2d_r50_8f"), ("tada2d_r50_ssv2", "tada2d_r50_8f"), ("r2d_r50_k400", "tsn_r50_8f")])
def test_reproduces_original_outputs(reference, arch, name):
    ref = reference(arch)
    model = timm.create_model(name, num_classes=ref.meta["num_classes"]).eval()
    assert count_params(model) == ref.meta["num_params"]
    model.load_state_dict(checkpoint_filter_fn(ref.state_dict(), model))
    x = ref.input()
    with torch.no_grad():
        feats = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model.forward_head(model.forward_features(x))
    torch.testing.assert_close(feats, ref.expected["features"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, ref.expected["logits"], atol=1e-4, rtol=1e-4)


def _paper_r2d(layers):
    """timm's ResNet as the paper's R2D: no max-pool, stride 2 moved into layer1[0]."""
    net = ResNet(TimmBottleneck, list(layers), num_classes=11)
    net.maxpool = nn.Identity()
    net.layer1[0].conv2.stride = (2, 2)
    net.layer1[0].downsample[0].stride = (2, 2)
    return net


@pytest.mark.parametrize("name", ["tsn_r50_8f", "tada2d_r50_8f"])
def test_inflated_video_model_equals_2d_resnet_per_frame(name):
    torch.manual_seed(0)
    net2d = _paper_r2d((1, 1, 1, 1))
    _randomise_bn(net2d)
    net2d.eval()
    video = timm.create_model(name, layers=(1, 1, 1, 1), num_classes=11)
    inflate(video, net2d.state_dict())
    video.fc.load_state_dict(net2d.fc.state_dict())
    video.eval()
    x = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        per_frame = net2d(x.transpose(1, 2).flatten(0, 1)).view(2, 3, -1).mean(1)
        torch.testing.assert_close(video(x), per_frame, atol=1e-4, rtol=1e-4)


def test_inflation_rejects_another_architecture():
    video = tiny()
    with pytest.raises(ValueError, match=r"cannot inflate into VideoResNet: \d+ mismatched .*conv1.weight: \(64, 3, 7, 7\) vs model \(8, 3, 7, 7\)"):
        inflate(video, _paper_r2d((1, 1, 1, 1)).state_dict())


def test_inflated_tada2d_starts_as_tsn_but_is_trainable():
    torch.manual_seed(0)
    tsn, tada = tiny("tsn_r50_8f").eval(), tiny().eval()
    _randomise_bn(tsn)
    inflate(tada, {k: v for k, v in tsn.state_dict().items()})
    tada.fc.load_state_dict(tsn.fc.state_dict())
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(tada(x), tsn(x))
    tada.train()
    tada(x).sum().backward()
    assert tada.layer4[0].conv2_rf.b.weight.grad.abs().sum() > 0
    assert tada.layer4[0].agg2.norm_pool.weight.grad.abs().sum() > 0
    assert isinstance(tada, VideoResNet)
