"""TAdaConvNeXt (ICLR 2022) and TAdaConvNeXtV2 (arXiv:2308.05787): ConvNeXt with TAdaConv.

TAdaConvNeXt (paper Sec. 4 and Appendix D) is ConvNeXt where a 3x4x4 tubelet embedding
(stride 2x4x4, centre-initialised from the 2D 4x4 patch embedding) replaces the stem and
every depth-wise 7x7 convolution becomes a TAdaConv2d calibrated per frame. TAdaConvNeXtV2
(the follow-up) keeps the same network and changes the calibration and the activation:

============  ================================  ============================  =========
              calibration generator             calibrated                    MLP act
============  ================================  ============================  =========
V1 (paper)    RouteFuncMLP (r=4, k=(3, 3))      weight                        GELU
V2            RouteFuncTransformer (r=2, k=3,3) weight and per-frame bias     QuickGELU
============  ================================  ============================  =========

Both aggregate the calibrated conv's output over time like the original code,
``LN(x) + LN_pool(avgpool_3(x))`` with ``LN_pool`` zero-initialised, so an inflated model
starts out as its 2D source run on every other frame. V1's weights were never released;
its block follows V2's layout with V1's route function (``TAdaConvNeXtBlockAvgPoolGELU``
in the authors' code base), and the count matches the paper's 47 GFLOPs per 16-frame view.

Module names follow timm's ``convnext.py`` (``stem``, ``stages.i.downsample``,
``stages.i.blocks.j.{conv_dw,norm,mlp.fc1,mlp.fc2,gamma}``, ``head.{norm,fc}``), so a timm
ConvNeXt state dict inflates with a single key change (``tada_zoo.weights.inflate.inflate_convnext``). Between
blocks activations are frame-major and channels-last, ``(B, T, H, W, C)`` contiguous: the
convolutions run as ``1 x k x k`` Conv3d on the free view ``(B, C, T, H, W)`` in channels-last-3d
memory format (oneDNN's fast depth-wise path; no frame flattening, so fewer dispatched ops), and
the LayerNorms, MLP, calibration and temporal pooling need no transposed copies. The public
interface is ``(B, C, T, H, W)``.
"""
import re
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, Mlp, get_act_layer, trunc_normal_
from timm.layers.activations import QuickGELU
from timm.models import checkpoint_seq, register_model
from timm.models.convnext import checkpoint_filter_fn as convnext_2d_filter

from ..layers import (
    QuickGELUMlp, RouteFuncMLP, RouteFuncTransformer, TAdaConv2d, check_video, depthwise_conv3d, derived, fx_check,
    route_func_transformer_from_original)
from ._base import VideoModelMixin, drop_path_rates
from ._builder import build_video_model
from ._cfg import V2_TRAIN_AUG, VideoFamily, generate_video_cfgs, video_cfg

__all__ = ["TAdaConvNeXt", "TAdaConvNeXtBlock", "checkpoint_filter_fn"]


class TAdaConvNeXtBlock(nn.Module):
    """ConvNeXt block whose depth-wise conv is a TAdaConv2d, on channels-last ``(B, T, H, W, C)`` clips.

    ``y = x + gamma * MLP(LN(z) + LN_pool(avgpool_t(z)))`` with ``z = TAdaConv_dw(x)``.

    Args:
        dim: channels.
        route: ``"mlp"`` (V1: ``RouteFuncMLP``, weight calibration) or ``"transformer"``
            (V2: ``RouteFuncTransformer``, weight and bias calibration).
        rf_ratio, rf_kernels: reduction ratio and temporal kernels of the route function.
        head_dim: attention head width of the V2 route function.
        temporal_agg: add the zero-initialised ``LN_pool(avgpool_t(z))`` branch.
        act_layer: MLP activation (V1 GELU, V2 QuickGELU).
    """

    def __init__(
            self,
            dim: int,
            drop_path: float = 0.,
            ls_init_value: Optional[float] = 1e-6,
            route: str = "mlp",
            rf_ratio: int = 4,
            rf_kernels: Sequence[int] = (3, 3),
            head_dim: int = 48,
            temporal_agg: bool = True,
            mlp_ratio: float = 4.,
            act_layer: Union[str, Callable] = "gelu",
            norm_eps: float = 1e-6,
    ):
        super().__init__()
        if route not in ("mlp", "transformer"):
            raise ValueError(f"route must be 'mlp' (TAdaConvNeXt) or 'transformer' (V2), got {route!r}")
        self.conv_dw = TAdaConv2d(dim, dim, 7, padding=3, groups=dim, bias=True, cal_dim="cout")
        self.dim = dim
        self.bias_cal = route == "transformer"
        if route == "mlp":
            self.conv_dw_rf = RouteFuncMLP(dim, rf_ratio, rf_kernels)
        else:
            self.conv_dw_rf = RouteFuncTransformer(
                dim, rf_ratio, rf_kernels, with_bias_cal=True, zero_init_cal=True, head_dim=head_dim)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        if temporal_agg:
            self.norm_pool = nn.LayerNorm(dim, eps=norm_eps)
            nn.init.zeros_(self.norm_pool.weight)
            nn.init.zeros_(self.norm_pool.bias)
            # the 1/3 average as a fixed depth-wise kernel (not a weight: no state dict entry)
            self.register_buffer("pool_weight", torch.full((dim, 1, 3, 1, 1), 1 / 3), persistent=False)
        else:
            self.norm_pool = None
        act_layer = get_act_layer(act_layer)
        if act_layer is QuickGELU:
            self.mlp = QuickGELUMlp(dim, int(mlp_ratio * dim))
        else:
            self.mlp = Mlp(dim, int(mlp_ratio * dim), act_layer=act_layer)
        self.gamma = nn.Parameter(ls_init_value * torch.ones(dim)) if ls_init_value is not None else None
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, H, W, C)`` -> same shape.

        Every op here is one dispatch (a kernel launch on a GPU) whatever its size, so the
        convolutions run on the free ``(B, C, T, H, W)`` view of the channels-last input (the
        depth-wise conv as a ``1x7x7`` Conv3d, the temporal average as a ``3x1x1`` one), and
        everything else on the contiguous ``(B, T, H, W, C)`` view: the route function, called
        as a module, returns its calibrations as ``(B, T, 1, 1, C)``, so scaling the conv output
        keeps its layout, and the gradients of ``alpha`` reduce over adjacent dims.
        """
        xc = x.permute(0, 4, 1, 2, 3)
        cal = self.conv_dw_rf(xc, frames_last=True)
        alpha, bias_alpha = (cal[0], cal[1]) if self.bias_cal else (cal, None)  # indexing: FX-traceable
        c = self.conv_dw
        weight = derived(self, "conv_dw_weight", lambda: c.weight.unsqueeze(2), c.weight)
        z = depthwise_conv3d(xc, weight)
        z = z.permute(0, 2, 3, 4, 1) * alpha  # per-frame calibration commutes with the conv
        # the per-frame bias made small first: its gradient is then one reduction, not two products
        z = z.add_(c.bias if bias_alpha is None else bias_alpha * c.bias)  # in place: nothing saved
        y = self.norm(z)
        if self.norm_pool is not None:
            # zero-padded average of 3 frames (padding counted, like the original AvgPool3d) as a
            # depth-wise 3x1x1 conv: one op, and on channels-last clips faster than avg_pool3d
            pooled = depthwise_conv3d(z.permute(0, 4, 1, 2, 3), self.pool_weight)
            y = y + self.norm_pool(pooled.permute(0, 2, 3, 4, 1))
        if self.gamma is not None and isinstance(self.drop_path, nn.Identity):
            if isinstance(self.mlp, QuickGELUMlp):
                return self.mlp.forward_residual(y, x, self.gamma)
            return torch.addcmul(x, self.mlp(y), self.gamma)  # residual and layer scale in one pass
        y = self.mlp(y)
        if self.gamma is not None:
            y = y * self.gamma
        # drop path on (B, ...): a whole clip is dropped, never single frames
        return x + self.drop_path(y)


class FrameDownsample(nn.Sequential):
    """timm's ConvNeXt downsampling (LayerNorm, 2x2 stride-2 conv) on ``(B, T, H, W, C)`` clips."""

    def __init__(self, in_chs: int, out_chs: int, norm_eps: float = 1e-6):
        super().__init__(nn.LayerNorm(in_chs, eps=norm_eps), nn.Conv2d(in_chs, out_chs, kernel_size=2, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the 2x2 conv as a 1x2x2 Conv3d on the free (B, C, T, H, W) view: no frame flattening
        conv = self[1]
        weight = derived(self, "weight", lambda: conv.weight.unsqueeze(2), conv.weight)
        y = F.conv3d(self[0](x).permute(0, 4, 1, 2, 3), weight, conv.bias,
                     (1,) + conv.stride, (0,) + conv.padding)
        return y.permute(0, 2, 3, 4, 1)


class TAdaConvNeXtStage(nn.Module):
    """timm's ConvNeXtStage on clips: per-frame downsampling, then TAda blocks."""

    def __init__(self, in_chs: int, out_chs: int, depth: int, drop_path_rates: Sequence[float],
                 downsample: bool = True, **block_args):
        super().__init__()
        self.grad_checkpointing = False
        if downsample:
            self.downsample = FrameDownsample(in_chs, out_chs, block_args.get("norm_eps", 1e-6))
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*[
            TAdaConvNeXtBlock(out_chs, drop_path=drop_path_rates[j], **block_args) for j in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class VideoNormHead(nn.Module):
    """Average over time and space, LayerNorm, dropout, classifier (the original's ``norm`` + ``head.out``).

    The norm comes after the pooling over all frames, so it is not timm's per-image
    ``NormMlpClassifierHead``.
    """

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0., norm_eps: float = 1e-6,
                 global_pool: str = "avg"):
        super().__init__()
        self.in_features = in_features
        self.global_pool = global_pool
        self.norm = nn.LayerNorm(in_features, eps=norm_eps)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.fc = nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, num_classes)``; ``global_pool=''`` returns the map untouched."""
        if not self.global_pool:
            return x
        x = self.norm(x.mean((2, 3, 4)))
        if self.training and self.drop.p > 0:  # eval dropout would still be one dispatched op
            x = self.drop(x)
        return x if pre_logits else self.fc(x)


class TAdaConvNeXt(VideoModelMixin, nn.Module):
    """TAdaConvNeXt / TAdaConvNeXtV2: ``(B, 3, T, H, W)`` clips -> ``(B, num_classes)``.

    Args:
        depths, dims: blocks and channels per stage (ConvNeXt-T: (3, 3, 9, 3), (96, 192, 384, 768)).
        num_frames: input clip length the model is meant for (profiling, pretrained cfg);
            any ``T >= 1`` runs, no weight depends on it. The tubelet stem halves it.
        stem_t_kernel, stem_t_stride: temporal size and stride of the tubelet embedding.
        route, rf_ratio, rf_kernels, head_dim, temporal_agg, act_layer: see ``TAdaConvNeXtBlock``.
        drop_rate: dropout before the classifier (the original uses 0.5).
        drop_path_rate: stochastic depth, linearly increasing over blocks.
    """

    def __init__(
            self,
            depths: Sequence[int] = (3, 3, 9, 3),
            dims: Sequence[int] = (96, 192, 384, 768),
            num_classes: int = 400,
            in_chans: int = 3,
            num_frames: int = 16,
            global_pool: str = "avg",
            stem_t_kernel: int = 3,
            stem_t_stride: int = 2,
            route: str = "mlp",
            rf_ratio: int = 4,
            rf_kernels: Sequence[int] = (3, 3),
            head_dim: int = 48,
            temporal_agg: bool = True,
            act_layer: Union[str, Callable] = "gelu",
            ls_init_value: Optional[float] = 1e-6,
            drop_rate: float = 0.5,
            drop_path_rate: float = 0.,
            norm_eps: float = 1e-6,
    ):
        super().__init__()
        if len(depths) != len(dims):
            raise ValueError(f"depths {tuple(depths)} and dims {tuple(dims)} must have the same length")
        if stem_t_kernel < 1 or stem_t_kernel % 2 == 0:
            raise ValueError(f"stem_t_kernel must be odd, got {stem_t_kernel}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_frames = num_frames
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        self.stem = nn.Sequential(
            nn.Conv3d(in_chans, dims[0], (stem_t_kernel, 4, 4), (stem_t_stride, 4, 4), (stem_t_kernel // 2, 0, 0)),
            nn.LayerNorm(dims[0], eps=norm_eps))
        block_args = dict(
            ls_init_value=ls_init_value, route=route, rf_ratio=rf_ratio, rf_kernels=rf_kernels,
            head_dim=head_dim, temporal_agg=temporal_agg, act_layer=act_layer, norm_eps=norm_eps)
        dpr = drop_path_rates(drop_path_rate, depths)
        stages, self.feature_info, prev, reduction = [], [], dims[0], 4
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            if i > 0:
                reduction *= 2
            stages.append(TAdaConvNeXtStage(prev, dim, depth, dpr[i], downsample=i > 0, **block_args))
            self.feature_info.append(dict(num_chs=dim, reduction=reduction, module=f"stages.{i}"))
            prev = dim
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = prev
        self.head = VideoNormHead(prev, num_classes, drop_rate, norm_eps, global_pool)
        self._init_weights()

    def _init_weights(self) -> None:
        """trunc_normal(.02) and zero biases like ConvNeXt; route functions keep their own
        init (``alpha == 1``), and so does the zero ``norm_pool``."""
        for name, m in self.named_modules():
            if ".conv_dw_rf" in name:
                continue
            if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear, TAdaConv2d)):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ---- timm model API -------------------------------------------------------------

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^stem",
            blocks=r"^stages\.(\d+)" if coarse else [
                (r"^stages\.(\d+)\.downsample", (0,)),
                (r"^stages\.(\d+)\.blocks\.(\d+)", None),
            ])

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    @fx_check
    def _check_input(self, x: torch.Tensor) -> None:
        check_video(x, self.in_chans, f"{type(self).__name__} input")
        if x.shape[-2] < 4 or x.shape[-1] < 4:
            raise ValueError(f"{type(self).__name__} input: H and W must be >= 4, got shape {tuple(x.shape)}")

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> tubelet embeddings ``(B, T', H/4, W/4, C0)``."""
        self._check_input(x)
        return self.stem[1](self.stem[0](x).permute(0, 2, 3, 4, 1))

    # levels (VideoModelMixin): the 4 stages, in the channels-last layout (B, T', H, W, C)
    classifier_name = "head.fc"

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._stem(x)

    def _num_levels(self) -> int:
        return len(self.stages)

    def _run_level(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.stages[i](x)

    def _level_maps(self, x: torch.Tensor, norm: bool) -> List[torch.Tensor]:
        return [x.permute(0, 4, 1, 2, 3)]

    def _output(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage map ``(B, num_features, T', H/32, W/32)``."""
        return x.permute(0, 4, 1, 2, 3)

    def _prune(self, keep: int) -> None:
        self.stages = self.stages[:keep]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)


# ---- weights: original checkpoints, 2D inflation ----------------------------------------

def _original_block_key(rest: str) -> str:
    for old, new in (("dwconv_rf.", "conv_dw_rf."), ("dwconv.", "conv_dw."), ("norm_avgpool.", "norm_pool."),
                     ("pwconv1.", "mlp.fc1."), ("pwconv2.", "mlp.fc2.")):
        if rest.startswith(old):
            return new + rest[len(old):]
    return rest


def checkpoint_filter_fn(state_dict: dict, model: TAdaConvNeXt) -> dict:
    """Original TAdaConv-repo ConvNeXt keys (``backbone.downsample_layers...``) -> ours.

    State dicts already in our layout pass through (``models._helpers.read_checkpoint`` has
    taken the weights out of a ``.pyth`` and removed DDP prefixes). TAdaConv's ``(1, 1, C, 1, 7, 7)`` weight / ``(1, 1, C)`` bias become a Conv2d's,
    the 1x2x2 downsampling Conv3d become Conv2d, the route functions' Conv3d become
    Conv1d / Linear (``route_func_transformer_from_original``); ``backbone.norm`` is the
    head's norm and ``head.out`` its ``fc``.
    """
    if "backbone.downsample_layers.0.0.weight" not in state_dict:
        return state_dict
    out = {}
    for key, value in state_dict.items():
        k = key.replace("head.out.", "head.fc.")
        k = k.replace("backbone.norm.", "head.norm.").replace("backbone.downsample_layers.0.", "stem.")
        m = re.match(r"backbone\.downsample_layers\.(\d+)\.(\d+)\.(.*)", k)
        if m:
            k = f"stages.{m[1]}.downsample.{m[2]}.{m[3]}"
            if value.dim() == 5:  # (O, I, 1, 2, 2)
                value = value.squeeze(2)
        m = re.match(r"backbone\.stages\.(\d+)\.(\d+)\.(.*)", k)
        if m:
            k = f"stages.{m[1]}.blocks.{m[2]}.{_original_block_key(m[3])}"
            if k.endswith("conv_dw.weight") or k.endswith("conv_dw.bias"):
                value = value[0, 0]
        out[k] = value
    # Conv3d -> Conv1d / Linear inside the route functions
    for prefix in {k[:k.index("conv_dw_rf.") + len("conv_dw_rf.")] for k in out if "conv_dw_rf." in k}:
        out = route_func_transformer_from_original(out, prefix)
    return out


def inflate_convnext(model: nn.Module, state_dict: Dict[str, torch.Tensor], strict: bool = True) -> nn.Module:
    """Load 2D ConvNeXt ImageNet weights (timm ``convnext_*`` or the original FB ``.pth``) into ``model``.

    The 4x4 patch embedding becomes the tubelet embedding by centre initialisation (the 2D
    kernel in the middle temporal tap, zeros elsewhere); every other ConvNeXt weight keeps
    its shape and name. The classifier is kept when its size matches ``model``'s. Route
    functions and ``norm_pool`` keep their init, so the inflated model equals its 2D source
    run on frames ``0, s, 2s, ...`` (``s`` = the stem's temporal stride), with the 2D model's
    activation. Returns ``model``; ValueError on missing / unexpected keys.
    """
    if "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    sd = dict(convnext_2d_filter(state_dict, model))  # FB names -> timm names (ours)
    stem_key = "stem.0.weight"
    if stem_key not in sd:
        raise ValueError(f"inflate_convnext: no '{stem_key}' in the 2D state dict: is it a ConvNeXt checkpoint?")
    target = model.stem[0].weight
    w2d = sd[stem_key]
    if w2d.dim() != 4 or w2d.shape[:2] != target.shape[:2] or w2d.shape[2:] != target.shape[3:]:
        raise ValueError(
            f"inflate_convnext: 2D stem weight {tuple(w2d.shape)} does not fit the video stem "
            f"{tuple(target.shape)}: build the video model with the 2D model's dims")
    w3d = torch.zeros_like(target, dtype=w2d.dtype)
    w3d[:, :, target.shape[2] // 2] = w2d
    sd[stem_key] = w3d
    own = model.state_dict()
    for name in ("head.fc.weight", "head.fc.bias"):
        if name in sd and (name not in own or own[name].shape != sd[name].shape):
            del sd[name]
    new = {k: v for k, v in own.items() if k not in sd and (".conv_dw_rf." in k or ".norm_pool." in k
                                                            or k.startswith("head.fc."))}
    sd.update(new)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if strict and (missing or unexpected):
        raise ValueError(f"inflate_convnext: missing {missing[:5]}..., unexpected {unexpected[:5]}... "
                       f"(build the video model with the 2D model's depths and dims)")
    return model


FAMILY = VideoFamily("TAdaConvNeXt", recipe="tadaconvnext", inflate=inflate_convnext,
                     names={"tadaconvnextv2": "TAdaConvNeXtV2"})


# ---- registry ------------------------------------------------------------------------------

def _create(variant: str, pretrained: bool = False, **kwargs) -> TAdaConvNeXt:
    return build_video_model(
        TAdaConvNeXt, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
        **kwargs,
    )



_V2_ZOO = "https://github.com/alibaba-mmai-research/TAdaConv/blob/main/MODEL_ZOO.md"
_DRIVE = "https://drive.google.com/file/d/{}/view?usp=sharing"
_V2 = dict(paper_ids="arXiv:2308.05787", paper_name="Temporally-Adaptive Models for Efficient Video Understanding",
           first_conv="stem.0", classifier="head.fc", origin_url=_V2_ZOO, init_license="mit", **V2_TRAIN_AUG)
_IN1K = "ImageNet-1k ConvNeXt (facebookresearch/ConvNeXt convnext_*_1k_224_ema.pth)"
_IN22K = "ImageNet-22k ConvNeXt (facebookresearch/ConvNeXt convnext_*_22k_224.pth)"


def _v2_recipe(file: str, dataset: str) -> str:
    """The original config of a release (the 16-frame one of its size: the 32-frame and IN-22k
    weights have no config of their own), named as in ``tada_zoo.engine.recipes``."""
    return f"tadaconvnextv2_{file.split('_')[1]}_{dataset}_16f"


# accuracy, eval views and checkpoint links: the original MODEL_ZOO.md (TAdaConvV2 section)
def _v2_k400(frames: int, top1: float, file: str, drive_id: str, init: str = _IN1K, **kw):
    return video_cfg(
        num_classes=400, dataset="kinetics400", num_frames=frames, sampling="interval",
        frame_interval=5 if frames == 16 else 2, eval_clips=4, eval_crops=3, top1=top1,
        train_recipe=_v2_recipe(file, "k400"), original_file=file, original_url=_DRIVE.format(drive_id), init=init, **dict(_V2, **kw))


def _v2_ssv2(frames: int, top1: float, file: str, drive_id: str, init: str = _IN1K + ", then Kinetics-400", **kw):
    return video_cfg(
        num_classes=174, dataset="ssv2", num_frames=frames, sampling="segment", eval_clips=2, eval_crops=3,
        top1=top1, train_recipe=_v2_recipe(file, "ssv2"), original_file=file, original_url=_DRIVE.format(drive_id), init=init, **dict(_V2, **kw))


def _inflated(frames: int):
    return video_cfg(
        num_classes=1000, num_frames=frames, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
        dataset="imagenet-1k", init=(
            "ImageNet-1k ConvNeXt-T of facebookresearch/ConvNeXt (timm convnext_tiny.fb_in1k), "
            "inflated by tada-zoo inflate"),
        init_license="mit", license="mit", first_conv="stem.0", classifier="head.fc",
        origin_url="https://huggingface.co/timm/convnext_tiny.fb_in1k",
        notes=(
            "The paper's TAdaConvNeXt-T weights were never released. These are timm's ImageNet-1k "
            "ConvNeXt-T (convnext_tiny.fb_in1k) inflated into TAdaConvNeXt-T, exactly the paper's starting "
            "point: tubelet stem centre-initialised, calibration at identity, temporal aggregation at zero, "
            "so the model equals ConvNeXt-T applied to every other frame. Not trained on video: fine-tune it.",
            "Built by `tada-zoo inflate --model ARCH.in1k_inflated` (tada_zoo.weights.inflate.inflate_convnext).",
        ))


default_cfgs = generate_video_cfgs({
    # TAdaConvNeXt-T (paper): no released weights; the ImageNet ConvNeXt-T inflated into it
    "tadaconvnext_t_16f.in1k_inflated": _inflated(16),
    "tadaconvnext_t_32f.in1k_inflated": _inflated(32),
    # TAdaConvNeXtV2: the original repository's released checkpoints (projects/tadaconvv2)
    "tadaconvnextv2_t_16f.k400": _v2_k400(16, 79.6, "tadaconvnextv2_tiny_k400_16f.pyth", "1_jkIOP8kYeMzgEGyVznDKXNRG2tSEOkV"),
    "tadaconvnextv2_t_32f.k400": _v2_k400(32, 80.8, "tadaconvnextv2_tiny_k400_32f.pyth", "1FSpmNgDETQ0WchABBUgpTLG9q3N9xBHN"),
    "tadaconvnextv2_s_16f.k400": _v2_k400(16, 80.8, "tadaconvnextv2_small_k400_16f.pyth", "12R74tV2-VRRUxrH0Tubki5voRSCbR3F1"),
    "tadaconvnextv2_s_32f.k400": _v2_k400(32, 81.9, "tadaconvnextv2_small_k400_32f.pyth", "15GDqJZSgy5fQ8gHgq3mEru_rWghelzP3"),
    "tadaconvnextv2_s_32f.in22k_ft_k400": _v2_k400(
        32, 82.9, "tadaconvnextv2_small_in22k_k400_32f.pyth", "1yM-OHpzNOu0180vogZxiMDk9x45SlFFF", init=_IN22K),
    "tadaconvnextv2_b_16f.k400": _v2_k400(16, 81.4, "tadaconvnextv2_base_k400_16f.pyth", "1rtapp_GzQHe6CBrhcNfe4wuBAS106uIk"),
    "tadaconvnextv2_b_32f.k400": _v2_k400(32, 82.3, "tadaconvnextv2_base_k400_32f.pyth", "1_VcPSEa4xd1npk1HMVihmXwzRsjk5xGd"),
    "tadaconvnextv2_b_32f.in22k_ft_k400": _v2_k400(
        32, 83.7, "tadaconvnextv2_base_in22k_k400_32f.pyth", "1yyCKDa144iL1TsibNDFHaNW0dap2Xjpz", init=_IN22K),
    "tadaconvnextv2_t_16f.ssv2": _v2_ssv2(16, 67.2, "tadaconvnextv2_tiny_ssv2_16f.pyth", "1IZaJ4EDrniK4ZxVYnl_2Y6qpx1F6UjqY"),
    "tadaconvnextv2_t_32f.ssv2": _v2_ssv2(32, 69.8, "tadaconvnextv2_tiny_ssv2_32f.pyth", "1WDJ5iMyR9VTkfeIoZwICtiJ8BSQ8u4gp"),
    "tadaconvnextv2_s_16f.ssv2": _v2_ssv2(16, 68.4, "tadaconvnextv2_small_ssv2_16f.pyth", "1X94evPniWrjJfs38-SKPWehVZtYD3Xu7"),
    "tadaconvnextv2_s_32f.ssv2": _v2_ssv2(32, 70.0, "tadaconvnextv2_small_ssv2_32f.pyth", "17TP1v1el5hNBoyNPmTa5Zi_6ZrVJ7oi5"),
    "tadaconvnextv2_s_32f.in22k_ft_ssv2": _v2_ssv2(
        32, 70.6, "tadaconvnextv2_small_in22k_ssv2_32f.pyth", "1plKqnNGnDD5JpPZ_c8K8TZKTvynbrEg8",
        init=_IN22K + ", then Kinetics-400"),
    # a released config (tadaconvnextv2_base_ssv2_16f.yaml) whose weights were not released: the
    # tag gives the SSV2 network, data protocol and training recipe, no weights
    "tadaconvnextv2_b_16f.ssv2": video_cfg(
        num_classes=174, dataset="ssv2", num_frames=16, sampling="segment", eval_clips=2, eval_crops=3,
        train_recipe="tadaconvnextv2_base_ssv2_16f", hf_hub_id=None, init=_IN1K + ", then Kinetics-400",
        notes=("The original repository has this training config but released no weights for it: train "
               "them with `tada-zoo train --model tadaconvnextv2_b_16f.ssv2`.",), **_V2),
    "tadaconvnextv2_b_32f.in22k_ft_ssv2": _v2_ssv2(
        32, 71.1, "tadaconvnextv2_base_in22k_ssv2_32f.pyth", "1IIVxJlstPIVA9xunThZrp9RztBzsPyd6",
        init=_IN22K + ", then Kinetics-400"),
})

_SIZES = dict(
    t=dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), head_dim=48),
    s=dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768), head_dim=48),
    b=dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024), head_dim=64),
)
_V1_ARGS = dict(route="mlp", rf_ratio=4, rf_kernels=(3, 3), act_layer="gelu")
_V2_ARGS = dict(route="transformer", rf_ratio=2, rf_kernels=(3, 3), act_layer="quick_gelu")


def _build(variant: str, size: str, v2: bool, frames: int, pretrained: bool, **kwargs) -> TAdaConvNeXt:
    kwargs.setdefault("num_frames", frames)
    model_args = dict(_SIZES[size], **(_V2_ARGS if v2 else _V1_ARGS))
    if not v2:
        model_args.pop("head_dim")
    return _create(variant, pretrained, **dict(model_args, **kwargs))


@register_model
def tadaconvnext_t_16f(pretrained: bool = False, **kwargs) -> TAdaConvNeXt:
    """TAdaConvNeXt-T (paper, Appendix D), 16 frames: 47 GFLOPs per 256x256 view."""
    return _build("tadaconvnext_t_16f", "t", False, 16, pretrained, **kwargs)


@register_model
def tadaconvnext_t_32f(pretrained: bool = False, **kwargs) -> TAdaConvNeXt:
    """TAdaConvNeXt-T (paper, Appendix D), 32 frames: 94 GFLOPs per 256x256 view."""
    return _build("tadaconvnext_t_32f", "t", False, 32, pretrained, **kwargs)


@register_model
def tadaconvnext_t(pretrained: bool = False, **kwargs) -> TAdaConvNeXt:
    """Alias of ``tadaconvnext_t_16f``."""
    return _build("tadaconvnext_t_16f", "t", False, 16, pretrained, **kwargs)


def _v2_entry(size: str, frames: int):
    name = f"tadaconvnextv2_{size}_{frames}f"

    def fn(pretrained: bool = False, **kwargs) -> TAdaConvNeXt:
        return _build(name, size, True, frames, pretrained, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"TAdaConvNeXtV2-{size.upper()} (arXiv:2308.05787), {frames} input frames."
    fn.__module__ = __name__
    return register_model(fn)


tadaconvnextv2_t_16f = _v2_entry("t", 16)
tadaconvnextv2_t_32f = _v2_entry("t", 32)
tadaconvnextv2_s_16f = _v2_entry("s", 16)
tadaconvnextv2_s_32f = _v2_entry("s", 32)
tadaconvnextv2_b_16f = _v2_entry("b", 16)
tadaconvnextv2_b_32f = _v2_entry("b", 32)
