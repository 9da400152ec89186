"""R3D / R(2+1)D (Table A2): Table 3 sizes, TAda identity init, the 5D TAda paths, 2D inflation."""
import pytest
import timm
import torch

import tada_zoo  # noqa: F401  (registers the models)
from tada_zoo.layers import RouteFuncMLP, TAdaConv2d, TemporalAggregation
from tada_zoo.models._resnet import tada_conv2d_ncthw
from tada_zoo.models.resnet3d import ResNet3d, inflate_2d_state_dict, tada_from_baseline
from tada_zoo.models.tada2d import VideoResNet
from tada_zoo.deploy.profile import count_gmacs, count_params

# paper Table 3 (K400 head): params (M), GFLOPs at 8x256x256 (the test crop)
TABLE3 = {
    "r2plus1d_r50_8f": (28.1, 49.55),
    "r2plus1d_r50_8f_tada2d": (31.2, 49.57),  # Table A3 prints 31.3M; we count 31.26M
    "r2plus1d_r50_8f_tada2d1d": (34.4, 49.58),
    "r3d_r50_8f": (47.0, 84.23),
    "r3d_r50_8f_tada3d": (50.1, 84.24),
}
TINY = dict(layers=(1, 1, 1, 1), widths=(4, 8, 8, 8), stem_width=8, num_classes=5)


def _randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            for t in (m.running_mean, m.bias):
                t.data.copy_(0.1 * torch.randn(t.shape, generator=g))
            m.running_var.data.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.mark.parametrize("name", list(TABLE3))
def test_table3_params_and_gflops(name):
    params, gflops = TABLE3[name]
    with torch.device("meta"):  # shapes only: counting needs no arithmetic
        model = timm.create_model(name)
    assert count_params(model) / 1e6 == pytest.approx(params, rel=0.005)
    assert count_gmacs(model, (1, 3, 8, 256, 256)) == pytest.approx(gflops, rel=0.002)


def test_r2plus1d_table2_flops_at_224():
    with torch.device("meta"):
        model = timm.create_model("r2plus1d_r50_8f")
    assert count_gmacs(model, (1, 3, 8, 224, 224)) == pytest.approx(37.94, rel=0.002)  # Table 2


def test_tada2d_conv_on_ncthw_is_the_paper_conv():
    torch.manual_seed(0)
    conv = TAdaConv2d(6, 8, 3, 2, 1)
    x, alpha = torch.randn(2, 6, 5, 9, 9), 1 + 0.5 * torch.randn(2, 6, 5, 1, 1)
    expected = conv.forward_reference(x, alpha)
    torch.testing.assert_close(tada_conv2d_ncthw(conv, x, alpha), expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the in-place inference path
        torch.testing.assert_close(tada_conv2d_ncthw(conv, x.clone(), alpha), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pool", ["avg", "max", "mix"])
@pytest.mark.parametrize("train", [False, True])
def test_aggregation_ncthw_equals_frame_major(pool, train):
    agg = TemporalAggregation(6, 3, pool).train(train)
    _randomize_bn(agg)
    torch.nn.init.normal_(agg.norm_pool.weight)
    x = torch.randn(2, 6, 5, 4, 3)
    torch.testing.assert_close(agg(x), agg.forward_frames(x.transpose(1, 2).contiguous()).transpose(1, 2))


@pytest.mark.parametrize("mid,tada,live", [("2+1d", ("2d",), "conv2_rf"), ("2+1d", ("2d", "1d"), "conv2t_rf"),
                                           ("3d", ("3d",), "conv2_rf")])
def test_tada_equals_baseline_at_init(mid, tada, live):
    torch.manual_seed(0)
    base = ResNet3d(mid=mid, **TINY).eval()
    model = ResNet3d(mid=mid, tada=tada, **TINY).eval()
    _randomize_bn(base)
    model.load_state_dict(tada_from_baseline(base.state_dict(), model))
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), base(x), atol=1e-5, rtol=1e-5)
        torch.nn.init.normal_(getattr(model.layer2[0], live).b.weight)  # calibration is live
        assert (model(x) - base(x)).abs().max() > 1e-3


def test_features_only_shapes():
    model = timm.create_model("r3d_r50_8f_tada3d", features_only=True, **TINY)
    shapes = [tuple(f.shape) for f in model(torch.randn(1, 3, 4, 64, 64))]
    assert shapes == [(1, 8, 4, 32, 32), (1, 16, 4, 16, 16), (1, 32, 4, 8, 8), (1, 32, 4, 4, 4), (1, 32, 4, 2, 2)]
    assert model.feature_info.reduction() == [2, 4, 8, 16, 32]


def test_grad_checkpointing_same_gradients():
    torch.manual_seed(0)
    model = timm.create_model("r2plus1d_r50_8f_tada2d1d", drop_rate=0., **TINY)
    x = torch.randn(2, 3, 4, 32, 32)
    grads = []
    for enable in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(enable)
        model(x).sum().backward()
        grads.append(model.layer3[0].conv2t.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_inflated_r2d_layout_equals_2d_net_per_frame():
    """kt = 1 everywhere: the Conv3d network on a clip == the 2D source on each frame."""
    torch.manual_seed(0)
    src = VideoResNet(tada=(), **TINY).eval()  # the R2D (TSN) network in timm resnet names
    _randomize_bn(src)
    model = ResNet3d(**TINY).eval()
    sd, kept = inflate_2d_state_dict(src.state_dict(), model)
    model.load_state_dict(sd)
    assert kept == ["fc.weight", "fc.bias"]
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), src.forward_features(x), atol=1e-5, rtol=1e-5)


def test_inflate_timm_resnet50_into_r3d_and_r2plus1d():
    src = timm.create_model("resnet50").state_dict()
    for name, new in (("r3d_r50_8f", ()), ("r2plus1d_r50_8f_tada2d", (".conv2t.", ".bn2t.", "_rf.", "norm_pool"))):
        model = timm.create_model(name)
        sd, kept = inflate_2d_state_dict(src, model)
        assert all(k.startswith("fc.") or any(s in k for s in new) for k in kept), name
        if name == "r3d_r50_8f":  # weights spread evenly over the temporal taps (Appendix D)
            torch.testing.assert_close(sd["layer3.2.conv2.weight"].sum(2), src["layer3.2.conv2.weight"])
            torch.testing.assert_close(sd["conv1.weight"][:, :, 1] * 3, src["conv1.weight"])
        model.load_state_dict(sd)
        # the family's rule (FAMILY.inflate in resnet3d.py), as `tada-zoo train --inflate-from` runs it
        from tada_zoo.weights.inflate import inflate

        inflated = inflate(timm.create_model(name), src)
        assert all(torch.equal(v, sd[k]) for k, v in inflated.state_dict().items() if k not in kept), name


def test_bad_configs():
    with pytest.raises(ValueError, match="do not exist"):
        ResNet3d(mid="2d", tada=("3d",), **TINY)
    with pytest.raises(ValueError, match="5D"):
        ResNet3d(**TINY)(torch.randn(3, 4, 32, 32))


@pytest.mark.parametrize("kernel,frames", [(3, 5), (5, 4), (3, 1)])
def test_folded_eval_aggregation_equals_bn_path(kernel, frames):
    agg = TemporalAggregation(6, kernel, "avg")
    _randomize_bn(agg)
    torch.nn.init.normal_(agg.norm_pool.weight)
    agg.eval()
    x = torch.randn(2, 6, frames, 4, 3)
    torch.testing.assert_close(agg(x), agg.forward_frames(x.transpose(1, 2).contiguous()).transpose(1, 2))
