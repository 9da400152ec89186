"""TAdaFormer: original outputs, sizes vs the paper, CLIP inflation, timm API on tiny variants."""

import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import tada_zoo  # noqa: F401  registers the models
from tada_zoo.layers import route_func_transformer_from_original
from tada_zoo.models.tadaformer import (
    TAdaBlock, TAdaFormer, _from_original_key, _from_original_value, checkpoint_filter_fn)
from tada_zoo.weights.inflate import inflate, inflate_clip_vit

TINY = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, rf_head_dim=16, num_classes=5)


def _tiny(name="tadaformer_b16_16f", **kwargs):
    torch.manual_seed(0)
    return timm.create_model(name, **dict(TINY, **kwargs))


def _perturb_tada(model):
    """Give the zero-initialised TAda parts non-zero values so the tests see them."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".tada" in n and (n.endswith("proj.weight") or "norm_pool" in n):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model


# ---- the original code's outputs ---------------------------------------------------------

def test_tadaconv2dv2_op_matches_original(reference):
    """The single TAdaConv2dV2 of TAdaFormer (token layout, internal route function, BN aggregation)."""
    ref = reference("ops/tadaconv2dv2_tadaformer")
    block = TAdaBlock(128, reduction=2, rf_ratio=2, rf_head_dim=16).eval()
    sd = {}
    for k, v in ref.state_dict().items():
        ours = _from_original_key(".tadaconv." + k)[1:]
        sd[ours] = _from_original_value(ours, v)
    missing, unexpected = block.load_state_dict(route_func_transformer_from_original(sd, "conv_rf."), strict=False)
    assert not unexpected and all(k.startswith(("pre_proj.", "proj.")) for k in missing)
    x = ref.input([2, 64, 6, 4, 4])
    assert ref.fill.tensor_sha256(x) == ref.meta["input_sha256"]
    B, C, T, H, W = x.shape
    tokens = x.permute(0, 2, 3, 4, 1).reshape(B * T, H * W, C)  # ours: (B*T, L, C)
    with torch.no_grad():
        y = block.forward_conv(tokens, (T, H, W))
    torch.testing.assert_close(y.transpose(0, 1), ref.expected["output"], atol=1e-4, rtol=1e-4)


def _check_reference(reference, arch, name):
    ref = reference(arch)
    with torch.device("meta"):  # skip the random init: every tensor comes from the checkpoint
        model = timm.create_model(name, num_classes=ref.meta["num_classes"]).eval()
    assert sum(p.numel() for p in model.parameters()) == ref.meta["num_params"]
    # the original .pyth layout: {"model_state": ..., "cfg": ...}
    model.load_state_dict(checkpoint_filter_fn(ref.checkpoint()["model_state"], model), strict=True, assign=True)
    with torch.no_grad():
        feats = model.forward_head(model.forward_features(ref.input()), pre_logits=True)
        logits = model.head(feats)
    torch.testing.assert_close(feats, ref.expected["features"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, ref.expected["logits"], atol=1e-4, rtol=1e-4)


def test_b16_k400_matches_original(reference):
    _check_reference(reference, "tadaformer_b16_k400", "tadaformer_b16_16f.k400")


def test_b16_ssv2_matches_original(reference):
    """SSV2 checkpoints are another network (two TAda blocks per layer, Conv3d projections)."""
    _check_reference(reference, "tadaformer_b16_ssv2", "tadaformer_b16_16f.ssv2")


@pytest.mark.parametrize("arch,name", [("tadaformer_l14_k400", "tadaformer_l14_16f.k400"),
                                       ("tadaformer_l14_ssv2", "tadaformer_l14_16f.ssv2")])
def test_l14_matches_original(reference, arch, name):
    _check_reference(reference, arch, name)


@pytest.mark.parametrize("arch,name", [("tadaformer_l14_k400", "tadaformer_l14_16f.k400"),
                                       ("tadaformer_l14_ssv2", "tadaformer_l14_16f.ssv2")])
def test_l14_converts(reference, arch, name):
    """L/14 keys and shapes map exactly (built on the meta device: no memory, no fill)."""
    ref = reference(arch)
    with torch.device("meta"):
        model = timm.create_model(name, num_classes=ref.meta["num_classes"])
        sd = {key: torch.empty(shape) for key, shape, _ in ref.manifest}
    assert sum(p.numel() for p in model.parameters()) == ref.meta["num_params"]
    ours = checkpoint_filter_fn(sd, model)
    expected = model.state_dict()
    assert set(ours) == set(expected)
    assert all(ours[k].shape == expected[k].shape for k in ours)


# ---- sizes vs the paper (arXiv:2308.05787 / MODEL_ZOO: GFLOPs per view) ---------------------

@pytest.mark.parametrize("name,frames,gflops", [
    ("tadaformer_b16_16f", 16, 153), ("tadaformer_b16_16f.ssv2", 16, 187),
    ("tadaformer_l14_16f", 16, 703)])
def test_gflops_match_paper(name, frames, gflops):
    with torch.device("meta"):
        model = timm.create_model(name).eval()
        x = torch.zeros(1, 3, frames, 224, 224)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    assert counter.get_total_flops() / 2e9 == pytest.approx(gflops, rel=0.005)


def test_registry_and_cfgs():
    names = timm.list_models("tadaformer_*")
    for arch in ("b16", "l14"):
        for f in (16, 32, 64):
            assert f"tadaformer_{arch}_{f}f" in names
    tags = timm.list_pretrained("tadaformer_*")
    assert {"tadaformer_b16_16f.k400", "tadaformer_b16_16f.k710_ft_k400",
            "tadaformer_b16_16f.ssv2", "tadaformer_b16_32f.ssv2", "tadaformer_l14_64f.k710_ft_k400",
            "tadaformer_l14_32f.ssv2"} <= set(tags)
    cfg = timm.models.get_pretrained_cfg("tadaformer_l14_64f.k710_ft_k400")
    assert (cfg.top1, cfg.num_frames, cfg.eval_clips, cfg.eval_crops) == (89.9, 64, 4, 3)
    assert timm.models.get_pretrained_cfg("tadaformer_b16_16f.ssv2").num_classes == 174
    k710 = timm.models.get_pretrained_cfg("tadaformer_l14_16f.k710")  # no released checkpoint: no weights
    assert k710.num_classes == 710 and k710.hf_hub_id is None and "tadaformer_l14_16f.k710" not in tags


# ---- inflation from CLIP ----------------------------------------------------------------------

def test_inflated_equals_clip_vit_per_frame():
    from timm.layers import QuickGELU
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, pre_norm=True,
                            class_token=True, global_pool="token", act_layer=QuickGELU, num_classes=7,
                            norm_layer=torch.nn.LayerNorm).eval()
    with torch.no_grad():  # non-trivial norms and biases
        for n, p in vit.named_parameters():
            if "norm" in n or n.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model = inflate(_tiny(), vit.state_dict()).eval()  # dispatches to inflate_clip_vit
    x = torch.randn(2, 3, 8, 32, 32)
    frames = x[:, :, ::2].transpose(1, 2).flatten(0, 1)  # the stride-2 tubelet's centre taps
    with torch.no_grad():
        ours = model.forward_head(model.forward_features(x), pre_logits=True)
        tokens = vit.blocks(vit.norm_pre(vit._pos_embed(vit.patch_embed(frames))))  # un-normed, per frame
        expected = vit.norm(tokens[:, 0].view(2, 4, -1).mean(1))
        maps = model.forward_intermediates(x, intermediates_only=True)
        vit_maps = vit.forward_intermediates(frames, intermediates_only=True)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    for m, v in zip(maps, vit_maps):
        torch.testing.assert_close(m.transpose(1, 2).flatten(0, 1), v, atol=1e-5, rtol=1e-5)
    # the TAda branches are what makes it a video model: once trained they change the output
    with torch.no_grad():
        assert (_perturb_tada(model).forward_head(model.forward_features(x), True) - ours).abs().max() > 1e-3


def test_inflate_rejects_mismatch():
    from timm.models.vision_transformer import VisionTransformer
    vit = VisionTransformer(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2, pre_norm=True)
    with pytest.raises(ValueError, match="stem weight"):
        inflate_clip_vit(_tiny(), vit.state_dict())


# ---- timm API on tiny variants ----------------------------------------------------------------

def test_forward_shapes_and_num_frames():
    model = _tiny().eval()
    assert model.num_frames == 16 and _tiny("tadaformer_l14_32f").num_frames == 32
    x = torch.randn(2, 3, 6, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 3, 17, 64)  # 6 frames -> 3 token frames, 1 + 4x4 tokens
        assert model(x).shape == (2, 5)
        assert model.forward_head(feats, pre_logits=True).shape == (2, 64)
        assert model(torch.randn(1, 3, 6, 48, 48)).shape == (1, 5)  # pos_embed resampled
    model.reset_classifier(0)
    assert model(x).shape == (2, 64)


def test_ssv2_tag_builds_ssv2_network():
    m = _tiny("tadaformer_b16_16f.ssv2")
    assert m.blocks[0].tada2 is not None and m.blocks[0].tada.pre_proj.weight.dim() == 3
    k = _tiny("tadaformer_b16_16f.k400")
    assert k.blocks[0].tada2 is None and k.blocks[0].tada.pre_proj.weight.dim() == 2
    with torch.no_grad():
        assert _perturb_tada(m.eval())(torch.randn(1, 3, 4, 32, 32)).shape == (1, 5)


def test_features_only_and_intermediates():
    model = _tiny(features_only=True, out_indices=(0, 1))
    with torch.no_grad():
        feats = model(torch.randn(2, 3, 8, 32, 32))
    assert [f.shape for f in feats] == [(2, 64, 4, 4, 4)] * 2
    assert model.feature_info.channels() == [64, 64] and model.feature_info.reduction() == [8, 8]
    m = _tiny().eval()
    with torch.no_grad():
        last, inter = m.forward_intermediates(torch.randn(1, 3, 4, 32, 32), indices=1, norm=True)
    assert last.shape == (1, 2, 17, 64) and inter[0].shape == (1, 64, 2, 4, 4)
    assert m.prune_intermediate_layers(indices=1) == [1] and len(m.blocks) == 2


def test_grad_checkpointing_and_groups():
    model = _perturb_tada(_tiny(drop_rate=0.)).train()
    x = torch.randn(2, 3, 4, 32, 32)
    loss = model(x).square().sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).square().sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], atol=1e-5, rtol=1e-4)
    assert model.blocks[0].tada.proj.weight.grad.abs().sum() > 0
    from timm.optim import create_optimizer_v2
    opt = create_optimizer_v2(model, "adamw", lr=1e-3, layer_decay=0.7)
    scales = sorted({g["lr_scale"] for g in opt.param_groups})
    assert len(scales) == 5  # stem, 2 blocks, final norm, head
    assert model.no_weight_decay() == {"pos_embed", "cls_token"}


def test_drop_path_drops_whole_clips():
    model = _perturb_tada(_tiny(drop_path_rate=1.0, drop_rate=0.)).train()
    blk = model.blocks[1]  # rate 1.0: every residual dropped -> identity
    x = torch.randn(2 * 3, 17, 64)
    torch.testing.assert_close(blk(x, (3, 4, 4)), x)


def test_bad_input():
    model = _tiny()
    with pytest.raises(ValueError, match="5D video"):
        model(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(1, 1, 4, 32, 32))
    with pytest.raises(ValueError, match="patch"):
        model(torch.randn(1, 3, 4, 4, 4))
