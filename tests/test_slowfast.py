"""SlowOnly / SlowFast: original checkpoints, Table 3 sizes, TAda identity init, feature API, input checks."""
import pytest
import timm
import torch

import tada_zoo  # noqa: F401  (registers the models)
from tada_zoo.models import load_checkpoint
from tada_zoo.models._helpers import map_checkpoint
from tada_zoo.models.resnet3d import tada_from_baseline
from tada_zoo.models.slowfast import SlowFast, checkpoint_filter_fn
from tada_zoo.deploy.profile import count_gmacs, count_params

# paper Table 3 (K400 head): params (M) and GFLOPs at 256x256, the test crop
TABLE3 = {
    "slowonly_r50_8x8": (32.5, 54.52, 8),
    "slowonly_r50_8x8_tada": (35.6, 54.53, 8),
    "slowfast_r50_4x16": (34.5, 36.10, 32),
    "slowfast_r50_4x16_tada": (37.7, 36.11, 32),
    "slowfast_r50_8x8": (34.5, 65.71, 32),
    "slowfast_r50_8x8_tada": (37.7, 65.73, 32),
}


def _tiny(tada=False, **kwargs):
    args = dict(alpha=4, beta=2, fusion_kernel=7, layers=(1, 1, 1, 1), widths=(8, 8, 8, 8), stem_width=8,
                num_classes=5, num_frames=8, tada=("2d",) if tada else ())
    return SlowFast(**dict(args, **kwargs))


def _randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.weight is not None:
            for t in (m.running_mean, m.bias):
                t.data.copy_(0.1 * torch.randn(t.shape, generator=g))
            m.running_var.data.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.mark.parametrize("arch,name", [("slowfast_4x16_k400", "slowfast_r50_4x16"),
                                       ("slowfast_8x8_k400", "slowfast_r50_8x8")])
def test_original_checkpoint_reproduces_reference(reference, arch, name):
    ref = reference(arch)
    model = timm.create_model(name).eval()
    assert count_params(model) == ref.meta["num_params"]
    # the original .pyth layout ({"model_state": ...}) through the one checkpoint path
    load_checkpoint(model, ref.checkpoint()["model_state"])
    with torch.no_grad():
        features = model.forward_head(model.forward_features(ref.input()), pre_logits=True)
        logits = model.get_classifier()(features)
    torch.testing.assert_close(features, ref.expected["features"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, ref.expected["logits"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(TABLE3))
def test_table3_params_and_gflops(name):
    params, gflops, frames = TABLE3[name]
    with torch.device("meta"):  # shapes only: counting needs no arithmetic
        model = timm.create_model(name)
    assert count_params(model) / 1e6 == pytest.approx(params, rel=0.005)
    assert count_gmacs(model, (1, 3, frames, 256, 256)) == pytest.approx(gflops, rel=0.002)


def test_slow_pathway_frames_match_original_pipeline():
    model = _tiny()
    # base_dataset.py: linspace(0, T, T // alpha + 1).long()[:-1]
    assert model.slow_indices(32).tolist() == [0, 4, 8, 12, 16, 20, 24, 28]
    assert timm.create_model("slowfast_r50_4x16").slow_indices(32).tolist() == [0, 8, 16, 24]


def test_tada_equals_baseline_at_init():
    torch.manual_seed(0)
    base, tada = _tiny().eval(), _tiny(tada=True).eval()
    _randomize_bn(base)
    tada.load_state_dict(tada_from_baseline(base.state_dict(), tada))
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(tada(x), base(x), atol=1e-5, rtol=1e-5)
        # the calibration is live: a non-zero route function changes the output
        torch.nn.init.normal_(tada.fast.layer2[0].conv2_rf.b.weight)
        assert (tada(x) - base(x)).abs().max() > 1e-3
    # the checkpoint filter does the same for a baseline state dict
    assert set(checkpoint_filter_fn(base.state_dict(), tada)) == set(tada.state_dict())


def test_features_only_both_pathways():
    model = timm.create_model("slowfast_r50_8x8", features_only=True, pretrained=False,
                              layers=(1, 1, 1, 1), widths=(8, 16, 16, 16), stem_width=16, beta=2)
    x = torch.randn(1, 3, 8, 64, 64)
    feats = model(x)
    shapes = [tuple(f.shape) for f in feats]
    assert shapes == [(1, 16, 2, 16, 16), (1, 8, 8, 16, 16), (1, 32, 2, 16, 16), (1, 16, 8, 16, 16),
                      (1, 64, 2, 8, 8), (1, 32, 8, 8, 8), (1, 64, 2, 4, 4), (1, 32, 8, 4, 4),
                      (1, 64, 2, 2, 2), (1, 32, 8, 2, 2)]
    assert model.feature_info.channels() == [s[1] for s in shapes]
    assert model.feature_info.reduction() == [64 // s[-1] for s in shapes]


def test_intermediates_and_head_match_forward():
    model = _tiny().eval()
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        assert len(inter) == 10
        torch.testing.assert_close(inter[-2], final[0])
        torch.testing.assert_close(inter[-1], final[1])
        torch.testing.assert_close(model.forward_head(final), model(x))
        assert model.forward_head(final, pre_logits=True).shape == (1, 32 + 16)
        few = model.forward_intermediates(x, indices=[0, 3], stop_early=True, intermediates_only=True)
        assert [f.shape[1] for f in few] == [8, 16]


def test_grad_checkpointing_and_group_matcher():
    model = _tiny(tada=True)
    model.set_grad_checkpointing()
    model(torch.randn(2, 3, 8, 32, 32)).sum().backward()
    assert model.fast.layer1[0].conv2.weight.grad is not None
    for coarse in (False, True):
        groups = timm.models.group_parameters(model, model.group_matcher(coarse))
        names = [[n for n in group if n.startswith("fuse")] for group in groups.values()]
        assert len(groups) == 6  # stem, res2..res5 (each with the fusion feeding it), head
        assert [sorted({n.split(".")[0] for n in g}) for g in names] == [[], ["fuse1"], ["fuse2"], ["fuse3"], ["fuse4"], []]


def test_slowonly_is_the_slow_pathway_without_fusion():
    model = timm.create_model("slowonly_r50_8x8", layers=(1, 1, 1, 1), widths=(4, 4, 4, 4), stem_width=8)
    assert [b[0].conv1.kernel_size[0] for b in (model.layer1, model.layer2, model.layer3, model.layer4)] == [1, 1, 3, 3]
    assert isinstance(model.maxpool, torch.nn.MaxPool3d) and model.layer1[0].conv2.stride == (1, 1, 1)
    assert model(torch.randn(1, 3, 8, 32, 32)).shape == (1, 400)


@pytest.mark.parametrize("shape,match", [((1, 3, 6, 32, 32), "multiple of alpha"),
                                         ((1, 3, 2, 32, 32), "multiple of alpha"),
                                         ((1, 4, 8, 32, 32), "channels"),
                                         ((3, 8, 32, 32), "5D")])
def test_bad_inputs(shape, match):
    with pytest.raises(ValueError, match=match):
        _tiny()(torch.randn(shape))



_OURS_TO_ORIGINAL = {"downsample.0": "short_cut", "downsample.1": "short_cut_bn", "conv1": "conv_branch.a",
                     "bn1": "conv_branch.a_bn", "conv2": "conv_branch.b", "bn2": "conv_branch.b_bn",
                     "conv3": "conv_branch.c", "bn3": "conv_branch.c_bn"}


def _original_slowonly_key(k):
    if k.startswith("fc."):
        return "head.out." + k[3:]
    if k.startswith(("conv1.", "bn1.")):
        return "backbone.slow_conv1." + ("a." if k.startswith("conv1.") else "a_bn.") + k.split(".", 1)[1]
    layer, block, rest = k.split(".", 2)
    for ours, orig in _OURS_TO_ORIGINAL.items():
        if rest.startswith(ours + "."):
            rest = orig + rest[len(ours):]
            break
    return f"backbone.slow_conv{int(layer[5:]) + 1}.res_{int(block) + 1}.{rest}"


def test_slowonly_maps_original_slow_pathway_keys():
    """Original SlowOnly checkpoints carry SlowFast's ``slow_*`` keys; the one checkpoint path finds the
    filter by model name (slowonly_* is registered in slowfast.py, its class lives in resnet3d.py)."""
    from tada_zoo.models import resnet3d

    model = timm.create_model("slowonly_r50_8x8", layers=(1, 1, 1, 1), widths=(4, 4, 4, 4), stem_width=8)
    ours = {k: torch.randn(v.shape) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    original = {_original_slowonly_key(k): v for k, v in ours.items()}
    mapped = map_checkpoint(original, model)  # found by name: slowonly_* is registered in slowfast.py
    assert mapped.keys() == ours.keys() and all(torch.equal(mapped[k], ours[k]) for k in ours)
    with pytest.raises(ValueError, match="different networks"):
        resnet3d.checkpoint_filter_fn({"backbone.conv1.a1.weight": torch.zeros(1)}, model)
