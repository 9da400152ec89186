"""TAdaConv2d, RouteFuncMLP and the temporal aggregation: fast == literal, and == the original."""
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings, strategies as st

from tada_zoo.layers import (
    FrameConv1d, LearnableCalibration, RouteFuncMLP, TAdaConv2d, TAdaConv3d, TemporalAggregation, temporal_pool)


def _grads(fn, conv, x, alpha, bias_alpha):
    tensors = [x, alpha] + ([bias_alpha] if bias_alpha is not None else [])
    params = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
    for t in tensors + params:
        t.grad = None
    y = fn(x, alpha, bias_alpha)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    return y.detach(), [t.grad.clone() for t in tensors + params]


@settings(max_examples=25, deadline=None)
@given(
    cal_dim=st.sampled_from(["cin", "cout"]),
    groups_mode=st.sampled_from(["one", "some", "depthwise"]),
    base=st.integers(1, 3),
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.integers(1, 2),
    T=st.integers(1, 4),
    bias=st.booleans(),
    calibrate_bias=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_fast_path_equals_per_frame_weights(cal_dim, groups_mode, base, kernel, stride, padding, dilation, T,
                                            bias, calibrate_bias, seed):
    """Forward and all gradients of the fast path match the paper's literal formulation."""
    torch.manual_seed(seed)
    groups = {"one": 1, "some": 2, "depthwise": 2 * base}[groups_mode]
    cin, cout = 2 * base, (2 * base if groups_mode == "depthwise" else 2 * (base + 1))
    conv = TAdaConv2d(cin, cout, kernel, stride, padding, dilation, groups, bias=bias, cal_dim=cal_dim).double()
    H = W = 7
    x = torch.randn(2, cin, T, H, W, dtype=torch.double, requires_grad=True)
    alpha = (1 + 0.5 * torch.randn(2, conv.cal_channels, T, 1, 1, dtype=torch.double)).requires_grad_()
    bias_alpha = None
    if bias and calibrate_bias:
        bias_alpha = (1 + 0.5 * torch.randn(2, cout, T, 1, 1, dtype=torch.double)).requires_grad_()
    y_fast, g_fast = _grads(conv, conv, x, alpha, bias_alpha)
    y_ref, g_ref = _grads(conv.forward_reference, conv, x, alpha, bias_alpha)
    torch.testing.assert_close(y_fast, y_ref, atol=1e-10, rtol=1e-10)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_identity_calibration_is_a_plain_conv():
    conv = TAdaConv2d(6, 10, 3, 2, 1, bias=True)
    ref = nn.Conv2d(6, 10, 3, 2, 1, bias=True)
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(2, 6, 3, 9, 9)
    y = conv(x, torch.ones(2, 6, 3, 1, 1))
    expected = ref(x.transpose(1, 2).flatten(0, 1)).unflatten(0, (2, 3)).transpose(1, 2)
    torch.testing.assert_close(y, expected)


def test_frames_layout_matches_public_layout():
    conv = TAdaConv2d(4, 8, 3, 1, 1, cal_dim="cout", bias=True)
    x, a = torch.randn(2, 4, 5, 6, 6), torch.rand(2, 8, 5, 1, 1)
    torch.testing.assert_close(conv.forward_frames(x.transpose(1, 2), a.transpose(1, 2)).transpose(1, 2), conv(x, a))


@pytest.mark.parametrize("name, shape, kwargs", [
    ("tadaconv2d_cin", [2, 32, 8, 14, 14], dict(in_channels=32, out_channels=48, kernel_size=[1, 3, 3], stride=[1, 2, 2],
                            padding=[0, 1, 1], bias=False, cal_dim="cin")),
    ("tadaconv2d_cout_depthwise_bias", [2, 16, 6, 8, 8], dict(in_channels=16, out_channels=16, kernel_size=[1, 3, 3],
                                            padding=[0, 1, 1], groups=16, bias=True, cal_dim="cout")),
])
def test_reproduces_original_tadaconv2d(reference, name, shape, kwargs):
    ref = reference(f"ops/{name}")
    sd = ref.state_dict()
    conv = TAdaConv2d(**kwargs)
    conv.load_state_dict({k: v[0, 0] for k, v in sd.items()})  # original (1, 1, O, ...) -> ours
    x = ref.input(shape)
    assert ref.fill.tensor_sha256(x) == ref.meta["input_sha256"]
    assert torch.equal(x.flatten()[:16], ref.expected["input_first16"])
    alpha = ref.expected["alpha"]
    with torch.no_grad():
        torch.testing.assert_close(conv(x, alpha), ref.expected["output"], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(conv.forward_reference(x, alpha), ref.expected["output"], atol=1e-5, rtol=1e-4)


def test_reproduces_original_route_func_mlp(reference):
    ref = reference("ops/route_func_mlp")
    sd = ref.state_dict()
    rf = RouteFuncMLP(c_in=32, ratio=4, kernels=[3, 3]).eval()
    rf.load_state_dict({  # original Conv3d (O, I, k, 1, 1) -> our Linear / Conv1d
        "g.weight": sd["g.weight"].flatten(1), "g.bias": sd["g.bias"],
        "a.weight": sd["a.weight"][..., 0, 0], "a.bias": sd["a.bias"],
        "b.weight": sd["b.weight"][..., 0, 0],
        **{k: v for k, v in sd.items() if k.startswith("bn.")}})
    x = ref.input([2, 32, 8, 7, 7])
    assert ref.fill.tensor_sha256(x) == ref.meta["input_sha256"]
    with torch.no_grad():
        torch.testing.assert_close(rf(x), ref.expected["alpha"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kwargs", [
    dict(kernels=(3, 3)), dict(kernels=(1, 3)), dict(kernels=(3,)), dict(kernels=(1,), global_context=False),
    dict(kernels=(1, 1), local_context=False),
])
def test_route_func_variants_start_at_identity_and_learn(kwargs):
    rf = RouteFuncMLP(8, 2, **kwargs)
    x = torch.randn(2, 8, 5, 4, 4)
    alpha = rf(x)
    assert alpha.shape == (2, 8, 5, 1, 1)
    torch.testing.assert_close(alpha, torch.ones_like(alpha))
    alpha.pow(2).sum().backward()
    assert rf.b.weight.grad.abs().sum() > 0
    torch.testing.assert_close(rf.forward_frames(x.transpose(1, 2)).transpose(1, 2), rf(x))


def test_route_func_global_only_is_constant_over_time():
    rf = RouteFuncMLP(8, 2, kernels=(1, 1), local_context=False).eval()
    nn.init.normal_(rf.b.weight)
    alpha = rf(torch.randn(2, 8, 5, 4, 4))
    torch.testing.assert_close(alpha, alpha[:, :, :1].expand_as(alpha))


def test_learnable_calibration():
    x = torch.randn(2, 4, 3, 5, 5)
    shared, varying = LearnableCalibration(4), LearnableCalibration(4, num_frames=3)
    assert shared(x).shape == varying(x).shape == (2, 4, 3, 1, 1)
    with pytest.raises(ValueError, match="built for 3 frames"):
        varying(torch.randn(2, 4, 5, 5, 5))


@pytest.mark.parametrize("k, bias", [(1, True), (3, True), (3, False), (5, True)])
@pytest.mark.parametrize("T", [1, 2, 7])
def test_frame_conv1d_equals_conv1d(k, bias, T):
    fast = FrameConv1d(6, 4, k, bias=bias).double()
    ref = nn.Conv1d(6, 4, k, padding=k // 2, bias=bias).double()
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(3, 6, T, dtype=torch.float64, requires_grad=True)
    y_fast, y_ref = fast(x), ref(x)
    torch.testing.assert_close(y_fast, y_ref)
    g = torch.randn_like(y_ref)
    for a, b in zip(torch.autograd.grad(y_fast, [x, *fast.parameters()], g),
                    torch.autograd.grad(y_ref, [x, *ref.parameters()], g)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("pool_type", ["avg", "max", "mix"])
def test_temporal_pool_matches_pool3d(pool_type):
    x = torch.randn(2, 5, 3, 4, 4)  # (B, T, C, H, W)
    x5 = x.transpose(1, 2)
    avg = nn.AvgPool3d((3, 1, 1), 1, (1, 0, 0))(x5)  # count_include_pad=True, as the original
    mx = nn.MaxPool3d((3, 1, 1), 1, (1, 0, 0))(x5)
    expected = {"avg": avg, "max": mx, "mix": avg + mx}[pool_type]
    torch.testing.assert_close(temporal_pool(x, 3, pool_type), expected.transpose(1, 2))
    torch.testing.assert_close(temporal_pool(x5.contiguous(), 3, pool_type, time_dim=2), expected)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("pool_type, T", [("avg", 5), ("avg", 1), ("avg", 2), ("max", 4), ("mix", 3)])
def test_aggregation_layouts_and_eval_folding_agree(training, pool_type, T):
    """Both layouts, and the folded eval-mode form, compute Eq. 7 with the module's BNs."""
    torch.manual_seed(0)
    agg = TemporalAggregation(4, kernel_size=5 if T == 5 else 3, pool_type=pool_type)
    for bn in (agg.norm, agg.norm_pool):
        nn.init.normal_(bn.weight)
        nn.init.normal_(bn.bias)
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 1.5)
    agg.train(training)
    x = torch.randn(2, 4, T, 3, 3)
    k = agg.kernel_size
    pad = (0, 0, 0, 0, k // 2, k // 2)  # explicit padding: AvgPool3d rejects clips shorter than k
    avg = nn.AvgPool3d((k, 1, 1), 1)(nn.functional.pad(x, pad))
    mx = nn.MaxPool3d((k, 1, 1), 1)(nn.functional.pad(x, pad, value=float("-inf")))
    pooled = {"avg": avg, "max": mx, "mix": avg + mx}[pool_type]
    bn1, bn2 = (nn.BatchNorm3d(4).train(training) for _ in range(2))
    bn1.load_state_dict(agg.norm.state_dict())
    bn2.load_state_dict(agg.norm_pool.state_dict())
    expected = torch.relu(bn1(x) + bn2(pooled))
    torch.testing.assert_close(agg(x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(agg.forward_frames(x.transpose(1, 2).contiguous()).transpose(1, 2), expected,
                               atol=1e-5, rtol=1e-5)


def test_aggregation_is_eq7_and_identity_at_init():
    agg = TemporalAggregation(4).eval()
    x = torch.randn(2, 4, 5, 3, 3)
    bn1 = agg.norm
    torch.testing.assert_close(agg(x), torch.relu(bn1(x.transpose(1, 2).flatten(0, 1)).unflatten(0, (2, 5)).transpose(1, 2)))
    for p in agg.norm_pool.parameters():
        nn.init.normal_(p)
    pooled = nn.AvgPool3d((3, 1, 1), 1, (1, 0, 0))(x)
    as3d = lambda bn, t: bn(t.transpose(1, 2).flatten(0, 1)).unflatten(0, (2, 5)).transpose(1, 2)
    torch.testing.assert_close(agg(x), torch.relu(as3d(agg.norm, x) + as3d(agg.norm_pool, pooled)))


@pytest.mark.parametrize("call, message", [
    (lambda c: c(torch.randn(2, 4, 8, 8), torch.ones(2, 4, 1, 1, 1)), r"5D video tensor \(B, C, T, H, W\), got shape \(2, 4, 8, 8\)"),
    (lambda c: c(torch.randn(2, 3, 2, 8, 8), torch.ones(2, 3, 2, 1, 1)), r"expected 4 channels .* got shape \(2, 3, 2, 8, 8\)"),
    (lambda c: c(torch.randn(2, 4, 2, 8, 8), torch.ones(2, 4, 3, 1, 1)), r"alpha: expected shape \(2, 4, 2, 1, 1\).* got \(2, 4, 3, 1, 1\)"),
    (lambda c: c(torch.randn(2, 4, 2, 8, 8), torch.ones(2, 4, 2)), r"alpha: expected shape \(2, 4, 2, 1, 1\)"),
])
def test_bad_input_names_expected_and_received(call, message):
    with pytest.raises(ValueError, match=message):
        call(TAdaConv2d(4, 6, 3, padding=1))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="temporal kernel_size must be 1"):
        TAdaConv2d(4, 4, [3, 3, 3])
    with pytest.raises(ValueError, match="divisible by groups"):
        TAdaConv2d(4, 6, 3, groups=4)
    with pytest.raises(ValueError, match="cal_dim"):
        TAdaConv2d(4, 4, 3, cal_dim="k")
    for conv in (TAdaConv2d, TAdaConv3d):
        with pytest.raises(ValueError, match="padding >= 0"):
            conv(4, 4, 3, padding=-1)
        with pytest.raises(ValueError, match="must be >= 1"):
            conv(4, 4, 3, stride=0)
    with pytest.raises(ValueError, match="odd"):
        RouteFuncMLP(8, 2, kernels=(2, 3))
