"""TAdaFormer: CLIP ViTs with TAdaConvV2 blocks between their layers.

Paper: "Temporally-Adaptive Models for Efficient Video Understanding" (arXiv:2308.05787),
code and checkpoints in the original TAdaConv repository (``projects/tadaconvv2``).

The backbone is OpenAI CLIP's ViT (pre-norm blocks, QuickGELU, LayerNorm eps 1e-5) with
a tubelet stem: a ``(3, P, P)`` Conv3d with temporal stride 2, so 16 input frames give 8
token frames. Every frame attends over its own ``1 + H * W`` tokens exactly as in CLIP;
the temporal modelling is in a TAda block added before each attention (residual, class
token untouched)::

    y = proj(QuickGELU(agg(TAdaConv2d_dw3x3(pre_proj(x_patches), alpha, bias_alpha))))

at half the width, with ``alpha``/``bias_alpha`` from a ``RouteFuncTransformer`` (no +1)
and ``agg = BN(y) + BN(avgpool_t(y))``. ``proj`` starts at zero, so a model inflated from
CLIP is CLIP run frame by frame (see ``tada_zoo.weights.inflate.inflate_clip_vit``). The SSV2 checkpoints are a
different network: a second TAda block before each MLP and a temporal kernel of 3 in
``pre_proj`` (the original ``DOUBLE_TADA`` / ``TEMP_ENHANCE``); the ``.ssv2`` tags build it.

Classification follows the original: the final LayerNorm (``norm``, CLIP's ``ln_post``) is
applied to the time-averaged class tokens, then dropout and a Linear ``head``.

Tokens flow as ``(B * T, 1 + H * W, D)`` between blocks, so attention, MLP and norms are
timm's ViT code on a batch of frames; names follow timm's ``vision_transformer.py``, so
timm's CLIP ViT state dict loads with only the stem inflated.
"""
import math
from functools import partial
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from timm.layers import Mlp, QuickGELU, resample_abs_pos_embed, trunc_normal_
from timm.models import get_pretrained_cfg, register_model
from timm.models.vision_transformer import Block, _convert_openai_clip
from torch.utils.checkpoint import checkpoint

from ..layers import QuickGELUMlp, TAdaConv2d, TemporalAggregation, check_video, fx_check, fx_leaf, unflatten_frames
from ..layers.calibration import RouteFuncTransformer, route_func_transformer_from_original
from ._base import VideoModelMixin, drop_path_rates
from ._builder import build_video_model
from ._cfg import V2_TRAIN_AUG, VideoFamily, generate_video_cfgs, video_cfg

__all__ = ["TAdaFormer", "TAdaFormerBlock", "TAdaBlock", "TemporalLinear", "checkpoint_filter_fn"]


class TemporalLinear(nn.Module):
    """A Linear over channels with a temporal kernel, on frame-major tokens ``(B, T, L, C)``.

    The same map as the original's ``Conv3d(kernel=(k, 1, 1), padding=(k // 2, 0, 0))`` on
    ``(B, C, T, H, W)``, computed as one matmul into ``k`` outputs that are added with a
    shift in time, so the tokens never leave their channels-last layout.
    Weight ``(out, in, k)`` like ``nn.Conv1d``'s.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.in_features = in_features
        self.out_features = out_features
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(out_features, in_features, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_features))
        trunc_normal_(self.weight, std=.02)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, kernel_size={self.kernel_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, c = self.kernel_size, self.out_features
        z = F.linear(x, self.weight.permute(2, 0, 1).reshape(k * c, -1))
        z = z.view(z.shape[:-1] + (k, c))  # not unflatten: see layers.unflatten_frames
        return _add_shifted_taps(z[..., k // 2, :] + self.bias, z)


@fx_leaf
def _add_shifted_taps(y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``y[:, t] += z[:, t + o, ..., j]`` for every tap ``j`` of ``z`` (..., k, C) off the centre
    (``o = j - k // 2``), in place (one FX node: in-place slice updates do not trace)."""
    k = z.shape[-2]
    if torch.onnx.is_in_onnx_export():  # the TorchScript-based exporter loses in-place updates of views
        for j in range(k):
            o = j - k // 2
            if o:
                y = y + F.pad(z[:, max(o, 0):z.shape[1] + min(o, 0), :, j], (0, 0, 0, 0, max(-o, 0), max(o, 0)))
        return y
    for j in range(k):
        o = j - k // 2  # out[t] += W_j x[t + o]
        if o < 0:
            y[:, -o:] += z[:, :o, :, j]
        elif o > 0:
            y[:, :-o] += z[:, o:, :, j]
    return y


class TAdaBlock(nn.Module):
    """The TAda branch of a TAdaFormer layer on patch tokens ``(B * T, H * W, D)``.

    ``pre_proj`` (Linear, or ``TemporalLinear`` for the SSV2 nets) to ``D // reduction``,
    depthwise 3x3 ``TAdaConv2d`` calibrated per output channel and per frame (weight and
    bias), temporal aggregation ``BN(y) + BN(avgpool_t(y))``, QuickGELU, ``proj`` back to
    ``D`` (zero at init).
    """

    def __init__(
            self,
            dim: int,
            reduction: int = 2,
            rf_ratio: int = 2,
            rf_kernels: Sequence[int] = (3, 3),
            rf_head_dim: int = 64,
            temporal_kernel: int = 1,
            act_layer=QuickGELU,
    ):
        super().__init__()
        mid = dim // reduction
        self.pre_proj = nn.Linear(dim, mid) if temporal_kernel == 1 else TemporalLinear(dim, mid, temporal_kernel)
        self.conv = TAdaConv2d(mid, mid, 3, padding=1, groups=mid, bias=True, cal_dim="cout")
        self.conv_rf = RouteFuncTransformer(
            mid, rf_ratio, rf_kernels, with_bias_cal=True, zero_init_cal=False, head_dim=rf_head_dim)
        self.agg = TemporalAggregation(mid, 3, "avg", act_layer=None)
        self.act = act_layer()
        self.proj = nn.Linear(mid, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # the original: trunc_normal(.02) and zero biases, tada_proj zero, bn_b zero
        for m in (self.pre_proj, self.proj):
            trunc_normal_(m.weight, std=.02)
            nn.init.zeros_(m.bias)
        trunc_normal_(self.conv.weight, std=.02)
        nn.init.zeros_(self.conv.bias)
        nn.init.zeros_(self.proj.weight)

    def forward_conv(self, x: torch.Tensor, grid: Tuple[int, int, int]) -> torch.Tensor:
        """TAdaConvV2 (route function, calibrated conv, aggregation): ``(B*T, H*W, C)`` -> same."""
        T, H, W = grid
        BT, L, C = x.shape
        B = BT // T
        # descriptors GAP_s(x) are all the route function needs: pass them as 1x1 frames
        alpha, bias_alpha = self.conv_rf.forward_frames(x.mean(1).view(B, T, C, 1, 1))
        y = x.view(B, T, H, W, C).permute(0, 1, 4, 2, 3)  # (B, T, C, H, W), channels-last view
        y = self.conv.forward_frames(y, alpha, bias_alpha, check=False)
        y = self.agg.forward_frames(y)
        return y.permute(0, 1, 3, 4, 2).reshape(BT, L, C)

    def forward(self, x: torch.Tensor, grid: Tuple[int, int, int]) -> torch.Tensor:
        T = grid[0]
        if isinstance(self.pre_proj, TemporalLinear):
            y = self.pre_proj(unflatten_frames(x, (-1, T))).flatten(0, 1)
        else:
            y = self.pre_proj(x)
        return self.proj(self.act(self.forward_conv(y, grid)))


class TAdaFormerBlock(Block):
    """CLIP's pre-norm ViT block (timm ``Block``) with a TAda branch before the attention
    (and, with ``double_tada``, a second one before the MLP), on ``(B * T, 1 + H * W, D)``.

    The TAda branches see the patch tokens only; the class token passes them unchanged.
    Stochastic depth drops whole clips, never single frames (the original ``L(BT)C`` mode).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4., drop_path: float = 0.,
                 act_layer=QuickGELU, norm_layer=nn.LayerNorm, double_tada: bool = False,
                 tada_args: Optional[dict] = None):
        super().__init__(dim, num_heads, mlp_ratio, qkv_bias=True, drop_path=drop_path,
                         act_layer=act_layer, norm_layer=norm_layer,
                         mlp_layer=QuickGELUMlp if act_layer is QuickGELU else Mlp)
        tada_args = tada_args or {}
        self.tada = TAdaBlock(dim, act_layer=act_layer, **tada_args)
        self.tada2 = TAdaBlock(dim, act_layer=act_layer, **tada_args) if double_tada else None

    @staticmethod
    def _drop(drop_path: nn.Module, y: torch.Tensor, T: int) -> torch.Tensor:
        if isinstance(drop_path, nn.Identity):
            return y
        return drop_path(y.reshape(-1, T * y.shape[1], y.shape[2])).view(y.shape)

    def _add_tada(self, x: torch.Tensor, tada: TAdaBlock, grid, drop_path: nn.Module) -> torch.Tensor:
        y = self._drop(drop_path, tada(x[:, 1:], grid), grid[0])
        return torch.cat((x[:, :1], x[:, 1:] + y), dim=1)

    def forward(self, x: torch.Tensor, grid: Tuple[int, int, int]) -> torch.Tensor:
        T = grid[0]
        x = self._add_tada(x, self.tada, grid, self.drop_path1)
        x = x + self._drop(self.drop_path1, self.ls1(self.attn(self.norm1(x))), T)
        if self.tada2 is not None:
            x = self._add_tada(x, self.tada2, grid, self.drop_path2)
        x = x + self._drop(self.drop_path2, self.ls2(self.mlp(self.norm2(x))), T)
        return x


@fx_leaf
def _pos_embed_for(pos_embed: torch.Tensor, grid: Tuple[int, int], model_grid: Tuple[int, int],
                   num_prefix_tokens: int) -> torch.Tensor:
    """``pos_embed`` (made for ``model_grid`` patches) for a ``grid`` of patches: bicubic resampling
    (one FX node: the comparison of the grids needs the input's shape)."""
    if tuple(grid) == tuple(model_grid):
        return pos_embed
    if torch.onnx.is_in_onnx_export() and torch.jit.is_tracing():
        raise RuntimeError(
            f"TAdaFormer: the TorchScript-based ONNX exporter cannot resample pos_embed from {tuple(model_grid)} "
            f"to {tuple(grid)} patches (antialiased bicubic); call model.set_input_size(...) with the export "
            f"size first (tada_zoo.deploy.export.export_model does), or export with dynamo=True")
    return resample_abs_pos_embed(pos_embed, grid, model_grid, num_prefix_tokens)


class PatchEmbed3d(nn.Module):
    """Tubelet embedding: ``Conv3d((kt, P, P), stride (st, P, P), padding (kt // 2, 0, 0))``, no bias (CLIP)."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 tubelet_size: int = 3, tubelet_stride: int = 2):
        super().__init__()
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.tubelet_stride = tubelet_stride
        self.proj = nn.Conv3d(in_chans, embed_dim, (tubelet_size, patch_size, patch_size),
                              (tubelet_stride, patch_size, patch_size), (tubelet_size // 2, 0, 0), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class TAdaFormer(VideoModelMixin, nn.Module):
    """TAdaFormer: ``(B, 3, T, H, W)`` clips -> ``(B, num_classes)``.

    Args:
        img_size: training resolution, ``S`` or ``(H, W)`` (sets ``pos_embed``; other sizes are resampled).
        patch_size, embed_dim, depth, num_heads, mlp_ratio: the CLIP ViT.
        num_frames: input frames the model is meant for (the original builds its modules
            for it; no weight depends on it, any T runs). Token frames: ``num_frames // 2``.
        tubelet_size, tubelet_stride: temporal kernel and stride of the stem.
        reduction: width reduction of the TAda branch (2).
        rf_ratio, rf_kernels, rf_head_dim: the route function (2, (3, 3), 64).
        temporal_kernel: temporal kernel of the TAda branch's ``pre_proj`` (1; 3 for SSV2).
        double_tada: a second TAda branch before each MLP (SSV2).
        global_pool: ``'token'`` (mean over time of the class tokens, the original),
            ``'avg'`` (mean of all patch tokens) or ``''``.
        drop_rate: dropout before the classifier (0.5 in the original configs).
        drop_path_rate: stochastic depth, linear over blocks.
    """

    def __init__(
            self,
            img_size: int = 224,
            patch_size: int = 16,
            in_chans: int = 3,
            num_classes: int = 400,
            num_frames: int = 16,
            embed_dim: int = 768,
            depth: int = 12,
            num_heads: int = 12,
            mlp_ratio: float = 4.,
            tubelet_size: int = 3,
            tubelet_stride: int = 2,
            reduction: int = 2,
            rf_ratio: int = 2,
            rf_kernels: Sequence[int] = (3, 3),
            rf_head_dim: int = 64,
            temporal_kernel: int = 1,
            double_tada: bool = False,
            global_pool: str = "token",
            drop_rate: float = 0.5,
            drop_path_rate: float = 0.,
            norm_eps: float = 1e-5,
    ):
        super().__init__()
        if global_pool not in ("token", "avg", ""):
            raise ValueError(f"global_pool must be 'token', 'avg' or '', got {global_pool!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_frames = num_frames
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1
        self.patch_size = patch_size
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)  # timm saves (H, W)
        self.grid_size = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.grad_checkpointing = False
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)

        self.patch_embed = PatchEmbed3d(patch_size, in_chans, embed_dim, tubelet_size, tubelet_stride)
        scale = embed_dim ** -0.5
        self.cls_token = nn.Parameter(scale * torch.randn(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(scale * torch.randn(1, self.grid_size[0] * self.grid_size[1] + 1, embed_dim))
        self.norm_pre = norm_layer(embed_dim)
        tada_args = dict(reduction=reduction, rf_ratio=rf_ratio, rf_kernels=rf_kernels,
                         rf_head_dim=rf_head_dim, temporal_kernel=temporal_kernel)
        dpr = drop_path_rates(drop_path_rate, [depth])[0]
        self.blocks = nn.Sequential(*[
            TAdaFormerBlock(embed_dim, num_heads, mlp_ratio, dpr[i], QuickGELU, norm_layer, double_tada, tada_args)
            for i in range(depth)])
        self.feature_info = [dict(module=f"blocks.{i}", num_chs=embed_dim, reduction=patch_size)
                             for i in range(depth)]
        self.norm = norm_layer(embed_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    # ---- timm model API -------------------------------------------------------------

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {"pos_embed", "cls_token"}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        # layer decay treats each block (with its TAda branches) as a layer; the final norm is a
        # group of its own after the blocks (the original's ln_post shares the head's learning rate),
        # not timm ViT's (99999,), which merges it into the last block
        return dict(stem=r"^cls_token|pos_embed|patch_embed|norm_pre",
                    blocks=[(r"^blocks\.(\d+)", None), (r"^norm\.", (100000,))])

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ("token", "avg", ""):
                raise ValueError(f"global_pool must be 'token', 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def set_input_size(self, img_size) -> None:
        """Resample ``pos_embed`` once to ``img_size`` (``S`` or ``(H, W)``), as timm's ViT: that size
        then runs without resampling per call, and exports with the TorchScript-based ONNX exporter
        (which cannot export the antialiased bicubic resampling); the weights keep the new grid."""
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        grid = (img_size[0] // self.patch_size, img_size[1] // self.patch_size)
        if min(grid) < 1:
            raise ValueError(f"set_input_size: {img_size} is smaller than one {self.patch_size}x{self.patch_size} patch")
        if grid != tuple(self.grid_size):
            with torch.no_grad():
                resampled = resample_abs_pos_embed(self.pos_embed, grid, self.grid_size, self.num_prefix_tokens)
            self.pos_embed = nn.Parameter(resampled, requires_grad=self.pos_embed.requires_grad)
            self.grid_size = grid

    @fx_check
    def _check_input(self, x: torch.Tensor) -> None:
        check_video(x, self.in_chans, f"{type(self).__name__} input")
        if min(x.shape[-2:]) < self.patch_size:
            raise ValueError(
                f"{type(self).__name__} input: frames of {tuple(x.shape[-2:])} are smaller than one "
                f"{self.patch_size}x{self.patch_size} patch; resize the clip (e.g. to 224x224)")

    def _embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int, int]]:
        """``(B, C, T, H, W)`` -> tokens ``(B * T', 1 + H' * W', D)`` and the grid ``(T', H', W')``."""
        self._check_input(x)
        x = self.patch_embed(x)
        B, D, T, H, W = x.shape
        x = x.permute(0, 2, 3, 4, 1).reshape(B * T, H * W, D)
        pos_embed = _pos_embed_for(self.pos_embed, (H, W), tuple(self.grid_size), self.num_prefix_tokens)
        x = torch.cat((self.cls_token.expand(B * T, -1, -1).to(x.dtype), x), dim=1) + pos_embed.to(x.dtype)
        return self.norm_pre(x), (T, H, W)

    def _block(self, blk: nn.Module, x: torch.Tensor, grid) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting() and torch.is_grad_enabled():
            return checkpoint(blk, x, grid, use_reentrant=False)
        return blk(x, grid)

    # levels (VideoModelMixin): the blocks; state: tokens (B * T', 1 + H' * W', D) and the grid (T', H', W')
    classifier_name = "head"

    def _num_levels(self) -> int:
        return len(self.blocks)

    def _run_level(self, i: int, h):
        x, grid = h
        return self._block(self.blocks[i], x, grid), grid

    def _level_maps(self, h, norm: bool, return_prefix_tokens: bool = False) -> list:
        """The patch tokens as a ``(B, D, T', H', W')`` map (``norm``: after the final LayerNorm);
        ``return_prefix_tokens``: ``(map, class tokens (B, D, T'))`` pairs."""
        x, (T, H, W) = h
        y = self.norm(x) if norm else x
        fmap = y[:, 1:].reshape(-1, T, H, W, y.shape[-1]).permute(0, 4, 1, 2, 3)
        if return_prefix_tokens:
            return [(fmap, y[:, 0].reshape(-1, T, y.shape[-1]).transpose(1, 2))]
        return [fmap]

    def _output(self, h) -> torch.Tensor:
        """Tokens ``(B, T', 1 + H' * W', D)`` (class token first, not normed)."""
        x, (T, _, _) = h
        return unflatten_frames(x, (-1, T))

    def _prune(self, keep: int) -> None:
        self.blocks = self.blocks[:keep]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool (class tokens averaged over time), final LayerNorm, dropout, classifier."""
        if self.global_pool == "token":
            x = x[:, :, 0].mean(1)
        elif self.global_pool == "avg":
            x = x[:, :, self.num_prefix_tokens:].mean((1, 2))
        x = self.norm(x)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)


# ---- weights: original checkpoints, CLIP inflation --------------------------------------

_ORIGINAL_SWAPS = (  # original (CLIP-style) names -> ours, applied in order after "backbone."
    ("conv1.", "patch_embed.proj."),
    ("ln_pre.", "norm_pre."),
    ("ln_post.", "norm."),
    ("layers.", "blocks."),
    (".ln_1.", ".norm1."),
    (".ln_2.", ".norm2."),
    (".attn.in_proj_", ".attn.qkv."),
    (".attn.out_proj.", ".attn.proj."),
    (".mlp.c_fc.", ".mlp.fc1."),
    (".mlp.c_proj.", ".mlp.fc2."),
    (".tada_pre_proj.", ".pre_proj."),
    (".tada_proj.", ".proj."),
    (".tadaconv.rf_func.", ".conv_rf."),
    (".tadaconv.bn_a.", ".agg.norm."),
    (".tadaconv.bn_b.", ".agg.norm_pool."),
    (".tadaconv.", ".conv."),
)


def _from_original_key(key: str) -> str:
    """One original TAdaFormer / TAdaConv2dV2 key (without ``backbone.``) -> ours."""
    for old, new in _ORIGINAL_SWAPS:
        key = key.replace(old, new)
    return key


def _from_original_value(key: str, value: torch.Tensor) -> torch.Tensor:
    """Original tensor layout -> ours for our key ``key``."""
    if key.endswith("conv.weight") and value.dim() == 6:  # TAdaConv (1, 1, O, I, kh, kw)
        return value[0, 0]
    if key.endswith("conv.bias") and value.dim() == 3:  # (1, 1, O)
        return value.reshape(-1)
    if key.endswith("pre_proj.weight") and value.dim() == 5:  # Conv3d (O, I, k, 1, 1)
        return value[..., 0, 0]
    if key.endswith(".proj.weight") and ".tada" in key and value.dim() == 5:  # Conv3d 1x1x1
        return value[..., 0, 0, 0]
    return value


def checkpoint_filter_fn(state_dict: dict, model: TAdaFormer) -> dict:
    """Original TAdaConv-repo TAdaFormer keys (``backbone.layers.0.tada...``) -> ours.

    ``class_embedding`` / ``positional_embedding`` gain timm's leading dims, the
    ``nn.MultiheadAttention`` ``in_proj`` is timm's fused ``qkv``, TAdaConv's
    ``(1, 1, O, 1, 3, 3)`` weight is a depthwise ``(O, 1, 3, 3)``, the SSV2 nets' Conv3d
    projections become ``TemporalLinear`` / Linear, the route functions' Conv3d become
    Conv1d / Linear. ``pos_embed`` is resampled if the model's grid differs. State dicts
    already in our layout pass through.
    """
    if "backbone.conv1.weight" not in state_dict:
        return state_dict
    out = {}
    for key, value in state_dict.items():
        if key.startswith("head."):
            k = key.replace("head.out.", "head.")
        elif key.startswith("backbone."):
            k = _from_original_key(key[len("backbone."):])
        else:
            continue
        if k == "class_embedding":
            k, value = "cls_token", value.reshape(1, 1, -1)
        elif k == "positional_embedding":
            k, value = "pos_embed", value.unsqueeze(0)
            if value.shape[1] != model.pos_embed.shape[1]:
                old = int(math.isqrt(value.shape[1] - 1))
                value = resample_abs_pos_embed(value, model.grid_size, (old, old), 1)
        elif k == "proj":  # CLIP's text projection, unused by the classifier
            continue
        out[k] = _from_original_value(k, value)
    for i in range(len(model.blocks)):
        for name in ("tada", "tada2"):
            out = route_func_transformer_from_original(out, f"blocks.{i}.{name}.conv_rf.")
    return out


def inflate_clip_vit(model: nn.Module, state_dict: Dict[str, torch.Tensor]) -> nn.Module:
    """Initialise ``model`` from a 2D CLIP ViT: timm's ``vit_*_clip_*`` state dict
    (``vit_base_patch16_clip_quickgelu_224.openai`` holds OpenAI's ViT-B/16) or OpenAI's own
    ``ViT-B-16.pt`` keys (``visual.*``, converted with timm's converter).

    The stem ``(D, 3, P, P)`` becomes ``(D, 3, kt, P, P)`` with the 2D kernel on the centre
    tap (the original's inflation); everything else of the ViT is copied; the TAda branches
    keep their init (``proj`` = 0, so they add nothing) and the head is not copied. The
    result equals the ViT run on frames 0, 2, 4, ..., with the final LayerNorm applied to
    the time-averaged class token. Returns ``model``.
    """
    if any(k.startswith("visual.") for k in state_dict):
        state_dict = _convert_openai_clip(state_dict, None)
    sd = {k: v for k, v in state_dict.items() if not k.startswith("head.")}
    if "patch_embed.proj.weight" not in sd:
        raise ValueError("inflate_clip_vit: expected a timm CLIP ViT state dict (patch_embed.proj.weight missing)")
    w2d = sd["patch_embed.proj.weight"]
    w3d = model.patch_embed.proj.weight
    if w2d.dim() != 4 or w2d.shape != w3d.shape[:2] + w3d.shape[3:]:
        raise ValueError(
            f"inflate_clip_vit: stem weight {tuple(w2d.shape)} does not fit the model's "
            f"{tuple(w3d.shape)}; pick the model variant with the same width and patch size")
    inflated = w2d.new_zeros(w3d.shape)
    inflated[:, :, w3d.shape[2] // 2] = w2d
    sd["patch_embed.proj.weight"] = inflated
    if sd["pos_embed"].shape != model.pos_embed.shape:
        old = int(math.isqrt(sd["pos_embed"].shape[1] - 1))
        sd["pos_embed"] = resample_abs_pos_embed(sd["pos_embed"], model.grid_size, (old, old), 1)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    bad_missing = [k for k in missing if ".tada" not in k and not k.startswith("head.")]
    if bad_missing or unexpected:
        raise ValueError(
            f"inflate_clip_vit: state dict does not match the model: missing {bad_missing[:5]}, "
            f"unexpected {list(unexpected)[:5]}")
    return model


FAMILY = VideoFamily("TAdaFormer", recipe="tadaformer", inflate=inflate_clip_vit)


# ---- registry ----------------------------------------------------------------------------

def _create(variant: str, pretrained: bool = False, **kwargs) -> TAdaFormer:
    return build_video_model(
        TAdaFormer, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=3),
        **kwargs,
    )



_ZOO = "https://github.com/alibaba-mmai-research/TAdaConv/blob/main/MODEL_ZOO.md"
_DRIVE = "https://drive.google.com/file/d/{}/view?usp=sharing"
_PAPER = dict(paper_ids="arXiv:2308.05787",
              paper_name="Temporally-Adaptive Models for Efficient Video Understanding")
_CLIP = {"b16": "OpenAI CLIP ViT-B/16 (openai/CLIP ViT-B-16.pt)", "l14": "OpenAI CLIP ViT-L/14 (openai/CLIP ViT-L-14.pt)"}


def _cfg(arch: str, frames: int, file: str = None, drive_id: str = None, **kwargs):
    patch = int(arch[1:])  # b16, l14
    cfg = dict(
        num_frames=frames, sampling="segment", mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD,
        test_input_size=(3, 224, 224), crop_pct=1.0, test_crop_pct=1.0, pool_size=(224 // patch, 224 // patch),
        first_conv="patch_embed.proj", classifier="head", origin_url=_ZOO,
        original_file=file, original_url=_DRIVE.format(drive_id) if drive_id else None,
        init=_CLIP[arch], init_license="mit", **_PAPER, **V2_TRAIN_AUG)
    cfg.update(kwargs)
    short = {"kinetics400": "k400", "ssv2": "ssv2"}.get(cfg.get("dataset"))
    if short:  # the original config of this network and dataset (engine.recipes), whatever the frames
        cfg["train_recipe"] = f"tadaformer_{arch}_{short}_16f"
    return video_cfg(**cfg)


# accuracy, eval views and checkpoint links: the original MODEL_ZOO.md (TAdaConvV2 section)
def _k400(arch, frames, top1, file, drive_id, k710=False, **kw):
    # MODEL_ZOO: "GFLOPS ... x3x4" = 3 crops x 4 clips. The K710 -> K400 checkpoints were
    # fine-tuned with the K400 config: their stored TRAIN.DATASET is "kinetics400"
    return _cfg(arch, frames, file, drive_id, dataset="kinetics400", num_classes=400, eval_clips=4, eval_crops=3,
                top1=top1, init=_CLIP[arch] + (", then Kinetics-710" if k710 else ""), **kw)


def _k710(arch, frames, **kw):
    # K710-pretrained networks (710 classes): no such checkpoint is in the original release list
    # (conversion/releases.json), so no Hub repo; the tag builds the 710-class network
    return _cfg(arch, frames, dataset="kinetics710", num_classes=710, hf_hub_id=None, **kw)


def _ssv2(arch, frames, top1, file, drive_id, **kw):
    # MODEL_ZOO: "x3x2" = 3 crops x 2 clips
    return _cfg(arch, frames, file, drive_id, dataset="ssv2", num_classes=174, eval_clips=2, eval_crops=3,
                top1=top1, **kw)


default_cfgs = generate_video_cfgs({
    "tadaformer_b16_16f.k710_ft_k400": _k400(
        "b16", 16, 86.6, "tadaformer_b16_k710_k400_16f.pyth", "1pAhjXycxdT_eOH5kO-5t7y8o5MjtlQdZ", k710=True),
    "tadaformer_b16_16f.k400": _k400("b16", 16, 84.5, "tadaformer_b16_k400_16f.pyth", "1E7IE762YLJnfeiqtjv0jBb91_dZhNK0Q"),
    "tadaformer_b16_16f.k710": _k710("b16", 16),
    "tadaformer_b16_16f.ssv2": _ssv2("b16", 16, 70.4, "tadaformer_b16_ssv2_16f.pyth", "1D-pKrxdrP2IcGXnd_e47ryci7OYCt8BK"),
    # no K400 weights at 32 frames: the tag names the K400 network and recipe (timm's default tag: .ssv2)
    "tadaformer_b16_32f.k400": _cfg("b16", 32, hf_hub_id=None, dataset="kinetics400", num_classes=400,
                                    eval_clips=4, eval_crops=3),
    "tadaformer_b16_32f.ssv2": _ssv2("b16", 32, 71.3, "tadaformer_b16_ssv2_32f.pyth", "1uY9tt0rcP_bQDs36oBNWPaqzxqibBQFt"),
    "tadaformer_b16_64f": _cfg("b16", 64, hf_hub_id=None),
    "tadaformer_l14_16f.k710_ft_k400": _k400(
        "l14", 16, 88.9, "tadaformer_l14_k710_k400_16f.pyth", "1qx3M33hsdoBcPsXihOdeViqI0VHUXnRf", k710=True),
    "tadaformer_l14_16f.k400": _k400("l14", 16, 87.6, "tadaformer_l14_k400_16f.pyth", "1chSLHo0nbFNObsLlCRSsAJE2vbYwIaYJ"),
    "tadaformer_l14_16f.k710": _k710("l14", 16),
    "tadaformer_l14_16f.ssv2": _ssv2("l14", 16, 72.4, "tadaformer_l14_ssv2_16f.pyth", "1jXzh9_WFbrHAkrzijnNs0vIJHWTQNsbA"),
    "tadaformer_l14_32f.k710_ft_k400": _k400(
        "l14", 32, 89.5, "tadaformer_l14_k710_k400_32f.pyth", "1T99YSQEe8yVUl3b03r_Wd04Qm36lN5Us", k710=True),
    "tadaformer_l14_32f.k710": _k710("l14", 32),
    "tadaformer_l14_32f.ssv2": _ssv2("l14", 32, 73.6, "tadaformer_l14_ssv2_32f.pyth", "1hj8O3j_lf6VVp93nfy5z7zRGQ_W7Pou_"),
    "tadaformer_l14_64f.k710_ft_k400": _k400(
        "l14", 64, 89.9, "tadaformer_l14_k710_k400_64f.pyth", "1DBTfkCa0pHXqAm51gZSmmOVdGnBYacsM", k710=True),
    "tadaformer_l14_64f.k710": _k710("l14", 64),
})

_ARCHS = {
    "b16": dict(patch_size=16, embed_dim=768, depth=12, num_heads=12),
    "l14": dict(patch_size=14, embed_dim=1024, depth=24, num_heads=16),
}
# the original SSV2 nets (TEMP_ENHANCE, DOUBLE_TADA): a different network, same weights otherwise
SSV2_ARGS = dict(temporal_kernel=3, double_tada=True)


def _tag(pretrained_cfg) -> str:
    if isinstance(pretrained_cfg, str):
        return pretrained_cfg
    if isinstance(pretrained_cfg, dict):  # from a Hub / local-dir config.json
        return pretrained_cfg.get("tag") or ""
    return getattr(pretrained_cfg, "tag", None) or ""


def _tadaformer(arch: str, frames: int, pretrained: bool, **kwargs) -> TAdaFormer:
    variant = f"tadaformer_{arch}_{frames}f"
    model_args = dict(_ARCHS[arch], num_frames=frames)
    tag = _tag(kwargs.get("pretrained_cfg"))
    if kwargs.get("pretrained_cfg") is None:  # the default tag (b16_32f: .ssv2), pretrained or not
        tag = get_pretrained_cfg(variant).tag or ""
    if tag.startswith("ssv2"):
        model_args.update(SSV2_ARGS)
    return _create(variant, pretrained, **dict(model_args, **kwargs))


@register_model
def tadaformer_b16_16f(pretrained: bool = False, **kwargs) -> TAdaFormer:
    """TAdaFormer-B/16, 16 input frames (8 token frames). ``.ssv2`` builds the SSV2 network."""
    return _tadaformer("b16", 16, pretrained, **kwargs)


@register_model
def tadaformer_b16_32f(pretrained: bool = False, **kwargs) -> TAdaFormer:
    """TAdaFormer-B/16, 32 input frames."""
    return _tadaformer("b16", 32, pretrained, **kwargs)


@register_model
def tadaformer_b16_64f(pretrained: bool = False, **kwargs) -> TAdaFormer:
    """TAdaFormer-B/16, 64 input frames (no released weights)."""
    return _tadaformer("b16", 64, pretrained, **kwargs)


@register_model
def tadaformer_l14_16f(pretrained: bool = False, **kwargs) -> TAdaFormer:
    """TAdaFormer-L/14, 16 input frames. ``.ssv2`` builds the SSV2 network."""
    return _tadaformer("l14", 16, pretrained, **kwargs)


@register_model
def tadaformer_l14_32f(pretrained: bool = False, **kwargs) -> TAdaFormer:
    """TAdaFormer-L/14, 32 input frames."""
    return _tadaformer("l14", 32, pretrained, **kwargs)


@register_model
def tadaformer_l14_64f(pretrained: bool = False, **kwargs) -> TAdaFormer:
    """TAdaFormer-L/14, 64 input frames."""
    return _tadaformer("l14", 64, pretrained, **kwargs)


@register_model
def tadaformer_b16(pretrained: bool = False, **kwargs) -> TAdaFormer:
    """Alias of ``tadaformer_b16_16f``."""
    return _tadaformer("b16", 16, pretrained, **kwargs)


@register_model
def tadaformer_l14(pretrained: bool = False, **kwargs) -> TAdaFormer:
    """Alias of ``tadaformer_l14_16f``."""
    return _tadaformer("l14", 16, pretrained, **kwargs)
