"""Speed paths that must not change results: kept derived weights, the depth-wise conv's
backward, the layout-aware spatial mean, and the QuickGELU MLP with and without autograd."""
import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

import tada_zoo  # noqa: F401
from tada_zoo.layers import QuickGELUMlp, clear_derived, depthwise_conv3d, derived, spatial_mean


class _Scaled(nn.Module):
    """``derived`` on a weight: counts how often the derivation runs."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3))
        self.runs = 0

    def forward(self, x):
        def double():
            self.runs += 1
            return self.weight * 2
        return x * derived(self, "double", double, self.weight)


def test_derived_is_kept_without_autograd_and_recomputed_when_a_source_changes():
    m, x = _Scaled(), torch.ones(3)
    with torch.no_grad():
        m(x), m(x)
        assert m.runs == 1
        m.weight.add_(1)  # in place: a new version
        assert torch.equal(m(x), (m.weight * 2))
        assert m.runs == 2
    m.load_state_dict({"weight": torch.zeros(3)})
    with torch.inference_mode():
        assert torch.equal(m(x), torch.zeros(3)) and m.runs == 3
    m.double()  # new storage, new dtype
    with torch.no_grad():
        assert m(x.double()).dtype == torch.float64 and m.runs == 4
        m.weight.data.fill_(5.)  # .data escapes version counting: clear_derived is the way out
        clear_derived(m)
        assert torch.equal(m(x.double()), torch.full((3,), 10., dtype=torch.float64)) and m.runs == 5


def test_derived_is_never_kept_under_autograd():
    m, x = _Scaled(), torch.ones(3)
    m(x).sum().backward()
    m(x).sum().backward()
    assert m.runs == 2
    torch.testing.assert_close(m.weight.grad, torch.full((3,), 4.))  # the gradient reached the parameter


@pytest.mark.parametrize("name, kw", [
    ("tadaconvnextv2_t_16f", dict(depths=(1, 1), dims=(32, 64), num_classes=5, head_dim=16)),
    ("tada2d_r50_8f", dict(layers=(1, 1), widths=(8, 16), stem_width=8, num_classes=5)),
])
def test_a_model_sees_new_weights_after_load_state_dict_in_eval(name, kw):
    """The kept forms (TAdaConvNeXtV2: concatenated route weights, 5D conv weights, scaled biases;
    TAda2D: BNs folded into the route function and the aggregation) follow the weights: eval
    output after loading other weights is that model's."""
    a = timm.create_model(name, **kw).eval()
    b = timm.create_model(name, **kw).eval()
    for m in (a, b):
        for t in m.state_dict().values():
            if t.is_floating_point():
                with torch.no_grad():
                    t.uniform_(0.5, 1.0) if t.dim() == 1 else t.normal_(0, 0.2)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        ya, yb = a(x), b(x)
        assert not torch.allclose(ya, yb)
        a.load_state_dict(b.state_dict())
        torch.testing.assert_close(a(x), yb, rtol=0, atol=0)


@pytest.mark.parametrize("kernel", [(1, 7, 7), (3, 1, 1), (3, 3, 5)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_depthwise_conv3d_gradients_equal_aten(kernel, channels_last):
    C = 4
    x = torch.randn(2, C, 5, 9, 8, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    x.requires_grad_()
    w = torch.randn(C, 1, *kernel, dtype=torch.float64, requires_grad=True)
    y = depthwise_conv3d(x, w)
    ref = F.conv3d(x, w, None, 1, tuple(k // 2 for k in kernel), 1, C)
    torch.testing.assert_close(y, ref)
    g = torch.randn_like(ref)
    expected = torch.autograd.grad(ref, (x, w), g)
    for a, b in zip(torch.autograd.grad(y, (x, w), g), expected):
        torch.testing.assert_close(a, b)
    x2 = x.detach().requires_grad_()  # only the input gradient asked for
    (gx,) = torch.autograd.grad(depthwise_conv3d(x2, w.detach()), (x2,), g)
    torch.testing.assert_close(gx, expected[0])


@pytest.mark.parametrize("channels_last", [True, False])
def test_spatial_mean_equals_mean_over_h_w(channels_last):
    x = torch.randn(2, 6, 3, 5, 4)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(spatial_mean(x), x.mean((3, 4)))


@pytest.mark.parametrize("bias", [True, False])
def test_quick_gelu_forward_residual_equals_the_plain_mlp(bias):
    """With autograd (scaled weights, out of place) and without (in place): shortcut + gamma * mlp(x)."""
    mlp = QuickGELUMlp(8, 32, bias=bias).double()
    x = (torch.randn(2, 3, 4, 8, dtype=torch.float64) * 3).requires_grad_()
    shortcut, gamma = torch.randn(2, 3, 4, 8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    for p in mlp.parameters():
        with torch.no_grad():
            p.normal_()

    def reference(x):
        h = F.linear(x, mlp.fc1.weight, mlp.fc1.bias)
        return shortcut + gamma * F.linear(h * torch.sigmoid(1.702 * h), mlp.fc2.weight, mlp.fc2.bias)

    y, ref = mlp.forward_residual(x, shortcut, gamma), reference(x)
    torch.testing.assert_close(y, ref)
    g = torch.randn_like(ref)
    params = [x, *mlp.parameters()]
    for a, b in zip(torch.autograd.grad(y, params, g), torch.autograd.grad(ref, params, g)):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        torch.testing.assert_close(mlp.forward_residual(x, shortcut, gamma), ref)
        torch.testing.assert_close(shortcut + gamma * mlp(x), ref)


@pytest.mark.parametrize("kernel, time_dim", [(3, 1), (5, 2), (7, 1)])
def test_temporal_sum_gradient_is_the_same_sum(kernel, time_dim):
    """Under autograd ``temporal_sum`` is one Function whose backward is the sum again (self-adjoint)."""
    from tada_zoo.layers import temporal_sum
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64) if time_dim == 1 else torch.randn(2, 3, 4, 5, dtype=torch.float64)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: temporal_sum(t, kernel, time_dim), (x,))
