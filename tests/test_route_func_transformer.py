"""RouteFuncTransformer (TAdaConvV2's calibration generator) against the original layer's outputs."""
import pytest
import torch

from tada_zoo.layers import RouteFuncTransformer, route_func_transformer_from_original


def _ours_from_reference(ref):
    m = RouteFuncTransformer(96, ratio=2, kernels=(3, 3), with_bias_cal=True, zero_init_cal=True, head_dim=16)
    m.load_state_dict(route_func_transformer_from_original(ref.state_dict()))
    return m.eval()


def test_matches_original(reference):
    ref = reference("ops/route_func_transformer")
    m = _ours_from_reference(ref)
    x = ref.input([2, 96, 8, 7, 7])
    assert ref.fill.tensor_sha256(x) == ref.meta["input_sha256"]
    with torch.no_grad():
        alpha, bias_alpha = m(x)
        fa, fb = m.forward_frames(x.transpose(1, 2).contiguous())
    torch.testing.assert_close(alpha, ref.expected["weight_alpha"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(bias_alpha, ref.expected["bias_alpha"], atol=1e-5, rtol=1e-4)
    # frame-major entry point gives the same calibration
    torch.testing.assert_close(fa.transpose(1, 2), alpha)
    torch.testing.assert_close(fb.transpose(1, 2), bias_alpha)


def test_head_layout_matters(reference):
    """The standard ``h * head_dim + d`` split of qkv gives different numbers: we reproduce the odd one."""
    ref = reference("ops/route_func_transformer")
    m = _ours_from_reference(ref)
    x = ref.input([2, 96, 8, 7, 7])
    with torch.no_grad():
        w = m.qkv_proj.weight.view(3, 16, 3, 48).transpose(1, 2).reshape(144, 48).clone()
        b = m.qkv_proj.bias.view(3, 16, 3).transpose(1, 2).reshape(144).clone()
        m.qkv_proj.weight.copy_(w)
        m.qkv_proj.bias.copy_(b)
        alpha, _ = m(x)
    assert (alpha - ref.expected["weight_alpha"]).abs().max() > 1e-3


def test_init_and_variants():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 5, 3, 3)
    m = RouteFuncTransformer(32, ratio=2, with_bias_cal=True, zero_init_cal=True, head_dim=8)
    alpha, bias_alpha = m(x)
    assert alpha.shape == bias_alpha.shape == (2, 32, 5, 1, 1)
    assert torch.equal(alpha, torch.ones_like(alpha)) and torch.equal(bias_alpha, torch.ones_like(alpha))
    raw = RouteFuncTransformer(32, ratio=2, with_bias_cal=False, zero_init_cal=False, head_dim=8)
    out = raw(x)
    assert torch.is_tensor(out) and out.shape == (2, 32, 5, 1, 1) and out.abs().max() < 1
    out.sum().backward()
    assert raw.qkv_proj.weight.grad is not None


def test_bad_input():
    with pytest.raises(ValueError, match="divisible by head_dim"):
        RouteFuncTransformer(96, ratio=2, head_dim=20)
    m = RouteFuncTransformer(32, ratio=2, head_dim=8)
    with pytest.raises(ValueError, match="5D"):
        m(torch.randn(2, 32, 5))
    with pytest.raises(ValueError, match="32 channels"):
        m(torch.randn(2, 16, 5, 3, 3))
