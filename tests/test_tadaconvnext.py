"""TAdaConvNeXt (paper) and TAdaConvNeXtV2: original outputs, paper sizes, inflation, timm API."""
import importlib.util
import json
from pathlib import Path

import pytest
import timm
import timm.optim
import torch
from safetensors.torch import load_file, save_file
from timm.models.convnext import ConvNeXt
from torch.utils.flop_counter import FlopCounterMode

import tada_zoo  # noqa: F401
from tada_zoo.weights.inflate import inflate, inflate_convnext
from tada_zoo.models.tadaconvnext import TAdaConvNeXt, checkpoint_filter_fn

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128))
TINY_V2 = dict(TINY, head_dim=8)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Mostly tiny ops: one thread avoids OpenMP sync stalls on a shared, loaded CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- converted original checkpoints reproduce the original code ------------------------------

@pytest.mark.parametrize("size,arch", [("t", "tiny"), ("s", "small"), ("b", "base")])
def test_v2_reference_outputs(reference, size, arch):
    ref = reference(f"tadaconvnextv2_{arch}_k400")
    model = timm.create_model(f"tadaconvnextv2_{size}_16f").eval()
    assert sum(p.numel() for p in model.parameters()) == ref.meta["num_params"]
    model.load_state_dict(checkpoint_filter_fn(ref.state_dict(), model))
    with torch.no_grad():
        features = model.forward_head(model.forward_features(ref.input()), pre_logits=True)
        logits = model.get_classifier()(features)
    torch.testing.assert_close(features, ref.expected["features"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, ref.expected["logits"], atol=1e-4, rtol=1e-4)


def test_original_checkpoint_format_and_ssv2_head(reference):
    """A ``.pyth`` dict (``model_state``) converts with strict keys; SSV2 differs only in head.out."""
    ref = reference("tadaconvnextv2_tiny_k400")
    with torch.device("meta"):
        model = timm.create_model("tadaconvnextv2_t_16f", num_classes=174)
    ckpt = ref.checkpoint()
    ckpt["model_state"]["head.out.weight"] = ckpt["model_state"]["head.out.weight"][:174]
    ckpt["model_state"]["head.out.bias"] = ckpt["model_state"]["head.out.bias"][:174]
    sd = checkpoint_filter_fn(ckpt["model_state"], model)
    own = model.state_dict()
    assert sorted(sd) == sorted(own)
    assert all(sd[k].shape == own[k].shape for k in own)
    assert checkpoint_filter_fn(sd, model) is sd  # ours pass through


# ---- paper / model-zoo sizes -------------------------------------------------------------------

def _gmacs(name: str, frames: int, size: int, **kwargs) -> float:
    with torch.device("meta"):
        model = timm.create_model(name, **kwargs).eval()
        x = torch.zeros(1, 3, frames, size, size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2e9


@pytest.mark.parametrize("name,frames,paper", [
    ("tadaconvnext_t_16f", 16, 47),  # paper Tables 3, 10 (256x256 views); what `tada-zoo profile` counts
    ("tadaconvnext_t_32f", 32, 94),
    ("tadaconvnextv2_t_16f", 16, 47),  # TAdaConvV2 model zoo
    ("tadaconvnextv2_s_16f", 16, 91),
    ("tadaconvnextv2_b_32f", 32, 324),
])
def test_gflops_match_papers(name, frames, paper):
    assert _gmacs(name, frames, 256) == pytest.approx(paper, rel=0.02)


def test_names_and_tags():
    for name in ("tadaconvnext_t", "tadaconvnext_t_16f", "tadaconvnext_t_32f",
                 *(f"tadaconvnextv2_{s}_{f}f" for s in "tsb" for f in (16, 32))):
        assert timm.is_model(name), name
    tags = set(timm.list_pretrained("tadaconvnext*"))
    assert {"tadaconvnext_t_16f.in1k_inflated", "tadaconvnextv2_t_16f.k400", "tadaconvnextv2_b_32f.in22k_ft_k400",
            "tadaconvnextv2_t_32f.ssv2", "tadaconvnextv2_b_32f.in22k_ft_ssv2"} <= tags
    cfg = timm.models.get_pretrained_cfg("tadaconvnextv2_s_32f.k400")
    assert (cfg.top1, cfg.num_frames, cfg.eval_clips, cfg.eval_crops) == (81.9, 32, 4, 3)
    cfg = timm.models.get_pretrained_cfg("tadaconvnextv2_t_16f.ssv2")
    assert (cfg.top1, cfg.num_classes, cfg.eval_clips, cfg.eval_crops) == (67.2, 174, 2, 3)
    with torch.device("meta"):
        assert timm.create_model("tadaconvnextv2_s_32f").num_frames == 32
        assert timm.create_model("tadaconvnextv2_s_32f", num_frames=8).num_frames == 8


# ---- inflation: at init the video model is its 2D source, frame by frame -------------------------

def _random_convnext(act_layer: str) -> ConvNeXt:
    torch.manual_seed(0)
    net = ConvNeXt(num_classes=10, act_layer=act_layer, **TINY).eval()
    with torch.no_grad():  # perturb everything, so layer scale / LN affine matter
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return net


@pytest.mark.parametrize("v2", [False, True])
def test_inflated_equals_2d_source_frame_by_frame(v2):
    net2d = _random_convnext("quick_gelu" if v2 else "gelu")
    name = "tadaconvnextv2_t_16f" if v2 else "tadaconvnext_t_16f"
    video = timm.create_model(name, num_classes=10, **(TINY_V2 if v2 else TINY)).eval()
    assert inflate(video, net2d.state_dict()) is video  # dispatches to inflate_convnext
    x = torch.randn(2, 3, 6, 64, 64)
    frames = x[:, :, ::2].transpose(1, 2).flatten(0, 1)  # the stride-2 tubelet's centre taps: 0, 2, 4
    with torch.no_grad():
        feats = video.forward_features(x)
        ref = net2d.forward_features(frames).unflatten(0, (2, 3)).transpose(1, 2)
        logits = video(x)
        norm = net2d.head.norm  # LayerNorm2d: the same affine LN over channels, here on pooled vectors
        pooled = torch.nn.functional.layer_norm(ref.mean((2, 3, 4)), norm.normalized_shape, norm.weight, norm.bias,
                                                norm.eps)
        ref_logits = net2d.head.fc(pooled)
    torch.testing.assert_close(feats, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)
    # the calibration is live: once the route functions move, so does the output
    with torch.no_grad():
        for blk in video.stages[0].blocks:
            blk.conv_dw_rf.b.weight.normal_()
        assert (video.forward_features(x) - feats).abs().max() > 1e-3


def test_inflate_accepts_original_fb_names_and_rejects_mismatch():
    net2d = _random_convnext("gelu")
    sd = {}
    for k, v in net2d.state_dict().items():  # timm -> original ConvNeXt repo names
        k = k.replace("stem.", "downsample_layers.0.").replace("head.fc.", "head.").replace("head.norm.", "norm.")
        k = k.replace("conv_dw", "dwconv").replace("mlp.fc", "pwconv")
        parts = k.split(".")
        if parts[0] == "stages" and parts[2] == "downsample":
            k = ".".join(["downsample_layers", parts[1]] + parts[3:])
        elif parts[0] == "stages":
            k = ".".join(["stages", parts[1]] + parts[3:])
        sd[k] = v
    video = timm.create_model("tadaconvnext_t_16f", num_classes=10, **TINY).eval()
    inflate_convnext(video, {"model": sd})
    torch.testing.assert_close(video.stem[0].weight[:, :, 1], net2d.stem[0].weight)
    assert video.stem[0].weight[:, :, 0].abs().max() == 0
    wrong = timm.create_model("tadaconvnext_t_16f", num_classes=10, depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
    with pytest.raises(ValueError, match="dims"):
        inflate_convnext(wrong, net2d.state_dict())


def test_inflation_script(tmp_path):
    net2d = _random_convnext("gelu")
    src = tmp_path / "convnext_2d.safetensors"
    save_file(net2d.state_dict(), str(src))
    out = tmp_path / "out"
    spec = importlib.util.spec_from_file_location("inflate_convnext_script", ROOT / "conversion" / "inflate_convnext.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--source", str(src), "--model", "tadaconvnext_t_16f", "--output", str(out),
                 "--model-args", json.dumps(TINY)])
    with pytest.raises(FileNotFoundError):
        script.main(["--source", str(tmp_path / "missing.pth"), "--output", str(out)])
    assert json.loads((out / "config.json").read_text())["num_classes"] == 10
    video = timm.create_model("tadaconvnext_t_16f", num_classes=10, **TINY).eval()
    video.load_state_dict(load_file(str(out / "model.safetensors")))
    x = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        ref = net2d.forward_features(x[:, :, 0])
        torch.testing.assert_close(video.forward_features(x)[:, :, 0], ref, atol=1e-4, rtol=1e-4)


# ---- timm API ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,extra", [("tadaconvnext_t_16f", TINY), ("tadaconvnextv2_t_16f", TINY_V2)])
def test_features_only(name, extra):
    model = timm.create_model(name, features_only=True, **extra).eval()
    assert model.feature_info.channels() == [16, 32, 64, 128]
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        feats = model(torch.randn(2, 3, 8, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(2, c, 4, 64 // r, 64 // r) for c, r in
                                               zip([16, 32, 64, 128], [4, 8, 16, 32])]
    sub = timm.create_model(name, features_only=True, out_indices=(1, 3), **extra)
    assert sub.feature_info.channels() == [32, 128]


def test_timm_api_and_intermediates():
    model = timm.create_model("tadaconvnextv2_t_16f", num_classes=7, **TINY_V2).eval()
    x = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x, indices=2)
        assert [t.shape[1] for t in inter] == [64, 128]
        torch.testing.assert_close(final, model.forward_features(x))
        assert model.forward_head(final, pre_logits=True).shape == (2, model.num_features)
        assert model(x).shape == (2, 7)
    assert model.get_classifier().out_features == 7
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    model.reset_classifier(0, "")
    assert model(x).shape == final.shape
    with pytest.raises(ValueError):
        model.reset_classifier(3, "max")
    model = timm.create_model("tadaconvnextv2_t_16f", num_classes=7, **TINY_V2)
    model.prune_intermediate_layers(indices=(1,))
    assert len(model.stages) == 2 and isinstance(model.get_classifier(), torch.nn.Identity)


def test_layer_decay_groups():
    model = timm.create_model("tadaconvnext_t_16f", num_classes=5, **TINY)
    opt = timm.optim.create_optimizer_v2(model, "adamw", lr=1e-3, layer_decay=0.7)
    scales = sorted({g["lr_scale"] for g in opt.param_groups})
    # stem, 5 blocks (a stage's downsampling joins its first block), head: 7 layers
    assert scales == pytest.approx([0.7 ** i for i in range(6, -1, -1)])
    stem = [g for g in opt.param_groups if any(p is model.stem[0].weight for p in g["params"])]
    assert stem[0]["lr_scale"] == pytest.approx(0.7 ** 6)


def test_grad_checkpointing_and_training_step():
    torch.manual_seed(0)
    model = timm.create_model("tadaconvnextv2_t_16f", num_classes=4, drop_path_rate=0.0, **TINY_V2)
    with torch.no_grad():  # move off the identity init, so every path carries gradient
        for blk in model.modules():
            if hasattr(blk, "conv_dw_rf"):
                blk.conv_dw_rf.b.weight.normal_(std=0.1)
                blk.norm_pool.weight.fill_(0.5)
    model.train()
    x = torch.randn(2, 3, 4, 32, 32)
    model.head.drop.p = 0.0
    model(x).square().sum().backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert ref["stages.0.blocks.0.conv_dw_rf.qkv_proj.weight"].abs().max() > 0
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).square().sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[n], atol=1e-5, rtol=1e-4, msg=n)
    dp = timm.create_model("tadaconvnext_t_16f", num_classes=4, drop_path_rate=0.5, **TINY).train()
    dp(x).sum().backward()


def test_bad_input():
    model = timm.create_model("tadaconvnext_t_16f", num_classes=4, **TINY).eval()
    with pytest.raises(ValueError, match="5D"):
        model(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="3 channels"):
        model(torch.randn(2, 1, 4, 32, 32))
    with pytest.raises(ValueError, match=">= 4"):
        model(torch.randn(2, 3, 4, 2, 2))
    with pytest.raises(ValueError, match="route"):
        TAdaConvNeXt(route="conv", **TINY)
    with pytest.raises(ValueError, match="same length"):
        TAdaConvNeXt(depths=(1, 1), dims=(8, 16, 32))


def test_calibrated_dwconv_is_one_plain_depthwise_conv(monkeypatch):
    """The fast path never builds per-frame weights: every spatial conv (2D, or 3D with a
    1-frame kernel; the 3x1x1 one is the temporal average) has at most C groups."""
    model = timm.create_model("tadaconvnextv2_t_16f", num_classes=4, **TINY_V2).eval()
    seen = []

    def spy(conv):
        def run(x, w, *args, **kwargs):
            if x.dim() == 4 or w.shape[2] == 1:
                frames = x.shape[0] * (x.shape[2] if x.dim() == 5 else 1)
                seen.append((frames, w.shape[0], args[-1] if len(args) >= 5 else kwargs.get("groups", 1)))
            return conv(x, w, *args, **kwargs)
        return run

    for name in ("conv2d", "conv3d"):
        monkeypatch.setattr(torch.nn.functional, name, spy(getattr(torch.nn.functional, name)))
    with torch.no_grad():
        model(torch.randn(2, 3, 8, 32, 32))
    depthwise = [s for s in seen if s[2] > 1]
    assert len(depthwise) == sum(TINY["depths"])
    assert all(n == 2 * 4 and groups == c for n, c, groups in depthwise)  # B*T' frames, groups == channels


@pytest.mark.parametrize("bias", [True, False])
def test_quick_gelu_mlp_equals_timm_mlp(bias):
    from timm.layers import Mlp
    from timm.layers.activations import QuickGELU
    from tada_zoo.layers import QuickGELUMlp
    fast, ref = QuickGELUMlp(8, 32, bias=bias).double(), Mlp(8, 32, act_layer=QuickGELU, bias=bias).double()
    ref.load_state_dict(fast.state_dict())
    x = (torch.randn(2, 5, 8, dtype=torch.float64) * 3).requires_grad_()
    y_fast, y_ref = fast(x), ref(x)
    torch.testing.assert_close(y_fast, y_ref)
    g = torch.randn_like(y_ref)
    grads_fast = torch.autograd.grad(y_fast, [x, *fast.parameters()], g)
    grads_ref = torch.autograd.grad(y_ref, [x, *ref.parameters()], g)
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="QuickGELU"):
        QuickGELUMlp(8, 32, act_layer=torch.nn.GELU)
