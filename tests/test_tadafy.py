"""tadafy: the TAda version of a network equals it at init, keeps its weights, and learns."""
import pytest
import timm
import torch
import torch.nn as nn

import tada_zoo
from tada_zoo import TAdaConv2d, TAdaConv3d, tadafy
from tada_zoo.models._resnet import Bottleneck
from tada_zoo.tadafy import TAdaConvAdapter


class ThirdPartyBlock(nn.Module):
    """A (2+1)D-style residual block written like a torchvision / pytorchvideo one."""

    def __init__(self, c: int):
        super().__init__()
        self.conv_a = nn.Conv3d(c, c, 1, bias=False)  # 1x1x1: not a spatial conv, kept
        self.bn_a = nn.BatchNorm3d(c)
        self.conv_b = nn.Conv3d(c, c, (1, 3, 3), padding=(0, 1, 1), bias=False)  # -> TAdaConv2d
        self.bn_b = nn.BatchNorm3d(c)
        self.conv_t = nn.Conv3d(c, c, (3, 1, 1), padding=(1, 0, 0), bias=False)  # temporal only: kept
        self.bn_t = nn.BatchNorm3d(c)
        self.conv_c = nn.Conv3d(c, c, 3, padding="same", groups=2, bias=True)  # -> TAdaConv3d
        self.bn_c = nn.BatchNorm3d(c, eps=1e-3)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.bn_a(self.conv_a(x)))
        y = self.relu(self.bn_b(self.conv_b(y)))
        y = self.relu(self.bn_t(self.conv_t(y)))
        y = self.bn_c(self.conv_c(y))
        return self.relu(x + y)


class ThirdPartyNet(nn.Module):
    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.stem = nn.Sequential(  # 3 input channels: the stem is kept
            nn.Conv3d(3, 16, (3, 5, 5), (1, 2, 2), (1, 2, 2), bias=False), nn.BatchNorm3d(16), nn.ReLU())
        self.layer1 = nn.Sequential(ThirdPartyBlock(16), ThirdPartyBlock(16))
        self.down = nn.Sequential(  # temporal stride 2: one calibration per frame impossible, kept
            nn.Conv3d(16, 32, 3, (2, 2, 2), 1, bias=False), nn.BatchNorm3d(32), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv3d(32, 32, (3, 3, 3), padding=1), nn.BatchNorm3d(32), nn.ReLU())
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.layer2(self.down(self.layer1(self.stem(x))))
        return self.fc(x.mean((2, 3, 4)))


def _randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affines, so a misplaced BN cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(1 + 0.2 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.2 * torch.randn(n, generator=g))


def _train_step(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = model(x).logsumexp(-1).sum()
    opt.zero_grad()
    loss.backward()
    for m in model.modules():
        if isinstance(m, TAdaConvAdapter) or isinstance(m, Bottleneck) and m.tada:
            rf = m.route if isinstance(m, TAdaConvAdapter) else m.conv2_rf
            assert rf.b.weight.grad is not None and rf.b.weight.grad.abs().max() > 0, "no gradient to the calibration"
    opt.step()
    model.eval()


@torch.no_grad()
def _outputs(model, x):
    return model.eval()(x)


def test_third_party_model_identity_at_init_then_learns():
    torch.manual_seed(0)
    model = ThirdPartyNet()
    _randomise_norms(model)
    x = torch.randn(2, 3, 4, 16, 16)
    before = _outputs(model, x)
    weight = model.layer1[0].conv_b.weight.clone()
    assert tadafy(model) is model
    adapters = {n: m for n, m in model.named_modules() if isinstance(m, TAdaConvAdapter)}
    assert sorted(adapters) == [
        "layer1.0.conv_b", "layer1.0.conv_c", "layer1.1.conv_b", "layer1.1.conv_c", "layer2.0"]
    assert isinstance(adapters["layer1.0.conv_b"].conv, TAdaConv2d)
    assert isinstance(adapters["layer1.0.conv_c"].conv, TAdaConv3d)
    assert adapters["layer1.0.conv_c"].conv.groups == 2 and adapters["layer1.0.conv_c"].agg.norm.eps == 1e-3
    # the host BNs moved into the aggregation; the others stay
    assert isinstance(model.layer1[0].bn_b, nn.Identity) and isinstance(model.layer1[0].bn_c, nn.Identity)
    assert isinstance(model.layer2[1], nn.Identity)
    assert isinstance(model.layer1[0].bn_t, nn.BatchNorm3d) and isinstance(model.stem[1], nn.BatchNorm3d)
    assert torch.equal(adapters["layer1.0.conv_b"].conv.weight, weight[:, :, 0])
    torch.testing.assert_close(_outputs(model, x), before, atol=1e-5, rtol=1e-5)

    _train_step(model, x)
    assert (_outputs(model, x) - before).abs().max() > 1e-3


def test_tsn_baseline_becomes_tada2d():
    cfg = dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), stem_width=8, num_classes=5)
    torch.manual_seed(0)
    model = timm.create_model("tsn_r50_8f", **cfg)
    _randomise_norms(model)
    x = torch.randn(2, 3, 4, 32, 32)
    before = _outputs(model, x)
    tadafy(model)
    assert all(getattr(model, f"layer{i}")[0].tada == ("2d",) for i in range(1, 5))
    # exactly TAda2D's parameters and buffers, so TAda2D checkpoints load into it
    reference = timm.create_model("tada2d_r50_8f", **cfg)
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}
    torch.testing.assert_close(_outputs(model, x), before, atol=1e-5, rtol=1e-5)
    _train_step(model, x)
    assert (_outputs(model, x) - before).abs().max() > 1e-3


@pytest.mark.skipif("r2plus1d_r50_8f" not in timm.list_models(), reason="needs tada_zoo.models.resnet3d")
@pytest.mark.parametrize("name", ["r2plus1d_r50_8f", "r3d_r50_8f"])
def test_3d_baselines(name):
    cfg = dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), stem_width=8, num_classes=5)
    torch.manual_seed(0)
    model = timm.create_model(name, **cfg)
    _randomise_norms(model)
    x = torch.randn(1, 3, 4, 32, 32)
    before = _outputs(model, x)
    tadafy(model)
    assert sum(isinstance(m, TAdaConvAdapter) for m in model.modules()) >= 4
    torch.testing.assert_close(_outputs(model, x), before, atol=1e-5, rtol=1e-5)


def test_options_regex_no_aggregation_cout():
    torch.manual_seed(0)
    model = ThirdPartyNet()
    _randomise_norms(model)
    x = torch.randn(1, 3, 4, 16, 16)
    before = _outputs(model, x)
    tadafy(model, r"conv_[bt]$", aggregation=False, cal_dim="cout", rf_kernels=(3,))
    adapters = {n: m for n, m in model.named_modules() if isinstance(m, TAdaConvAdapter)}
    assert sorted(adapters) == ["layer1.0.conv_b", "layer1.0.conv_t", "layer1.1.conv_b", "layer1.1.conv_t"]
    assert all(m.agg is None and m.conv.cal_dim == "cout" for m in adapters.values())
    assert isinstance(model.layer1[0].bn_b, nn.BatchNorm3d)
    torch.testing.assert_close(_outputs(model, x), before, atol=1e-5, rtol=1e-5)


def test_explicit_norms_mapping():
    class ConvsThenNorms(nn.Module):  # conv, conv, bn, bn: the next-sibling rule cannot pair them
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv3d(8, 8, (1, 3, 3), padding=(0, 1, 1))
            self.c2 = nn.Conv3d(8, 8, (1, 3, 3), padding=(0, 1, 1))
            self.b1, self.b2 = nn.BatchNorm3d(8), nn.BatchNorm3d(8)

        def forward(self, x):
            return self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))

    model = ConvsThenNorms()
    _randomise_norms(model)
    x = torch.randn(1, 8, 3, 6, 6)
    before = _outputs(model, x)
    with pytest.raises(ValueError, match="no BatchNorm follows 'c1'"):
        tadafy(ConvsThenNorms())
    tadafy(model, norms={"c1": "b1", "c2": "b2"})
    assert isinstance(model.b1, nn.Identity) and isinstance(model.b2, nn.Identity)
    torch.testing.assert_close(_outputs(model, x), before, atol=1e-5, rtol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="no convolution was selected"):
        tadafy(nn.Sequential(nn.Conv3d(3, 8, 1), nn.ReLU()))
    with pytest.raises(ValueError, match="keep the length of time"):
        tadafy(ThirdPartyNet(), r"^down\.0$")
    with pytest.raises(ValueError, match="not a module"):
        tadafy(ThirdPartyNet(), norms={"layer2.0": "nope"})
    with pytest.raises(ValueError, match="cal_dim"):
        tadafy(ThirdPartyNet(), cal_dim="both")
    with pytest.raises(ValueError, match="always aggregates"):
        tadafy(timm.create_model("tsn_r50_8f", layers=(1, 1, 1, 1), widths=(8, 8, 8, 8), stem_width=8),
               aggregation=False)
