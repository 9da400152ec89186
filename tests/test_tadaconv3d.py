"""TAdaConv3d: the original op's fixture, fast path == literal reference path (values and
gradients), and clear errors on bad input."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings, strategies as st

from tada_zoo import TAdaConv3d


def test_reproduces_original_fixture(reference):
    ref = reference("ops/tadaconv3d_cin_bias")
    sd = ref.state_dict()
    conv = TAdaConv3d(32, 24, kernel_size=[3, 3, 3], padding=[1, 1, 1], bias=True, cal_dim="cin")
    conv.load_state_dict({"weight": sd["weight"][0, 0], "bias": sd["bias"][0, 0]})
    x = ref.fill.reference_input([2, 32, 6, 6, 6], 0)  # meta["input"]
    assert ref.fill.tensor_sha256(x) == ref.meta["input_sha256"]
    alpha = ref.expected["alpha"]
    with torch.no_grad():
        for y in (conv(x, alpha), conv.forward_reference(x, alpha)):
            torch.testing.assert_close(y, ref.expected["output"], atol=1e-4, rtol=1e-4)
        # the fixture does tell the semantics apart: calibrating each INPUT frame by its own
        # alpha (a plain Conv3d on alpha * x) is far off
        wrong = F.conv3d(x * alpha, conv.weight, conv.bias, padding=1)
        assert (wrong - ref.expected["output"]).abs().max() > 0.1


def _same_with_grads(conv, x, alpha):
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    alphas = [alpha.clone().requires_grad_(), alpha.clone().requires_grad_()]
    outs = [conv(xs[0], alphas[0]), conv.forward_reference(xs[1], alphas[1])]
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-4)
    grad_out = torch.randn_like(outs[0])
    grads = []
    for out, xi, ai in zip(outs, xs, alphas):
        params = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
        grads.append(torch.autograd.grad(out, [xi, ai] + params, grad_out))
    for fast, slow in zip(*grads):
        torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4)


@settings(max_examples=12, deadline=None)
@given(
    cal_dim=st.sampled_from(["cin", "cout"]),
    groups=st.sampled_from([1, 2]),
    kernel=st.tuples(st.sampled_from([1, 2, 3]), st.sampled_from([1, 3]), st.sampled_from([1, 2])),
    stride=st.tuples(st.sampled_from([1, 2]), st.sampled_from([1, 2]), st.just(1)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 1)),
    dilation=st.tuples(st.sampled_from([1, 2]), st.just(1), st.sampled_from([1, 2])),
    bias=st.booleans(),
    frames=st.integers(3, 5),
    seed=st.integers(0, 2 ** 16),
)
def test_fast_equals_reference(cal_dim, groups, kernel, stride, padding, dilation, bias, frames, seed):
    torch.manual_seed(seed)
    assume(frames + 2 * padding[0] > dilation[0] * (kernel[0] - 1))  # at least one output frame
    conv = TAdaConv3d(4, 6, kernel, stride, padding, dilation, groups, bias, cal_dim).double()
    x = torch.randn(2, 4, frames, 5, 6, dtype=torch.float64)
    t_out = conv.output_frames(frames)
    alpha = 1 + 0.5 * torch.randn(2, conv.cal_channels, t_out, 1, 1, dtype=torch.float64)
    _same_with_grads(conv, x, alpha)
    # and the frame-major entry point agrees with the public one
    torch.testing.assert_close(
        conv.forward_frames(x.transpose(1, 2), alpha.transpose(1, 2)).transpose(1, 2), conv(x, alpha))


def test_identity_calibration_is_conv3d():
    """alpha == 1 gives back nn.Conv3d with the same weight (what tadafy relies on)."""
    torch.manual_seed(0)
    plain = torch.nn.Conv3d(8, 6, (3, 3, 3), (1, 2, 2), (1, 1, 1), bias=True)
    conv = TAdaConv3d(8, 6, (3, 3, 3), (1, 2, 2), (1, 1, 1), bias=True)
    conv.load_state_dict(plain.state_dict())
    x = torch.randn(1, 8, 4, 7, 7)
    torch.testing.assert_close(conv(x, torch.ones(1, 8, 4, 1, 1)), plain(x), atol=1e-5, rtol=1e-5)


def test_temporal_conv_3x1x1():
    """The R(2+1)D temporal conv: kernel (3, 1, 1), padding (1, 0, 0), cin calibration."""
    conv = TAdaConv3d(6, 4, (3, 1, 1), padding=(1, 0, 0)).double()
    x = torch.randn(2, 6, 4, 3, 3, dtype=torch.float64)
    _same_with_grads(conv, x, 1 + torch.randn(2, 6, 4, 1, 1, dtype=torch.float64))


@pytest.mark.parametrize("x_shape, alpha_shape, match", [
    ((2, 8, 4, 5), (2, 8, 4, 1, 1), "5D video"),
    ((2, 7, 4, 5, 5), (2, 8, 4, 1, 1), "expected 8 channels"),
    ((2, 8, 4, 5, 5), (2, 8, 3, 1, 1), r"alpha: expected shape \(2, 8, 4, 1, 1\)"),
    ((2, 8, 4, 5, 5), (2, 6, 4, 1, 1), "alpha: expected shape"),
    ((2, 8, 4, 5, 5), (2, 8, 4), "alpha: expected shape"),
    ((2, 8, 1, 5, 5), (2, 8, 1, 1, 1), "too few"),
])
def test_bad_input(x_shape, alpha_shape, match):
    conv = TAdaConv3d(8, 6, (5, 3, 3), padding=(1, 1, 1)) if "too few" == match else TAdaConv3d(8, 6, 3, padding=1)
    with pytest.raises(ValueError, match=match):
        conv(torch.randn(x_shape), torch.randn(alpha_shape))


def test_bad_constructor():
    with pytest.raises(ValueError, match="divisible by groups"):
        TAdaConv3d(6, 4, 3, groups=4)
    with pytest.raises(ValueError, match="cal_dim"):
        TAdaConv3d(6, 4, 3, cal_dim="cmid")
    with pytest.raises(ValueError, match=r"\(t, h, w\)"):
        TAdaConv3d(6, 4, (3, 3))
