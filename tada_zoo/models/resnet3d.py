"""R3D and R(2+1)D ResNet-50 video networks (Table A2), with and without TAdaConv.

Paper: "TAda! Temporally-Adaptive Convolutions for Video Understanding" (ICLR 2022),
Table 3 (plug-in evaluation), Table A2 and Appendix D.

Both share the R2D layout of ``tada2d.py``: a 1x7x7 stem with stride (1, 2, 2), no
max-pool, spatial stride 2 in the first block of res2 as well, bottlenecks (3, 4, 6, 3),
time never downsampled. R(2+1)D adds a 3x1x1 temporal conv (+ BN + ReLU) after each
bottleneck's 1x3x3 conv; R3D makes that conv 3x3x3 (and the stem 3x7x7). The TAda
versions replace

* ``"2d"``: the 1x3x3 conv by a TAdaConv2d (RouteFuncMLP r=4, k=(3, 3)) followed by the
  temporal aggregation of Eq. 7 instead of its BN + ReLU (as in TAda2D);
* ``"1d"``: R(2+1)D's 3x1x1 conv by a TAdaConv3d (same route function, plain BN + ReLU);
* ``"3d"``: R3D's 3x3x3 conv by a TAdaConv3d (same route function, plain BN + ReLU).

The bottleneck is the one of every ResNet here (``_resnet.Bottleneck``, as in SlowOnly /
SlowFast: same block, other stem and per-stage temporal kernels). Unlike TSN/TAda2D these nets
are true 3D convolution networks, so activations stay in the ``(B, C, T, H, W)`` layout of
``Conv3d``.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from timm.models import register_model

from ..layers import check_video
from ._builder import build_video_model
from ._cfg import VideoFamily, generate_video_cfgs, video_cfg
from ._resnet import ResNetBase

__all__ = ["ResNet3d", "tada_from_baseline", "inflate_2d_state_dict"]

class ResNet3d(ResNetBase):
    """3D-conv video ResNet: ``(B, 3, T, H, W)`` clips -> ``(B, num_classes)``.

    R3D, R(2+1)D and SlowOnly, and each pathway of SlowFast.

    Args:
        layers: blocks per stage (ResNet-50: ``(3, 4, 6, 3)``).
        widths: bottleneck widths per stage (outputs are 4x these).
        stem_width: stem channels.
        stem_kernel_t: temporal size of the 7x7 stem conv (padded to keep T).
        stem_pool: 1x3x3 max-pool after the stem (SlowFast/SlowOnly) instead of a
            stride-2 first stage (R2D layout of Appendix D).
        temporal_kernels: temporal size of each stage's ``conv1`` (SlowOnly: (1, 1, 3, 3)).
        mid, tada: the middle conv of every block and which of its parts are TAdaConvs
            (see ``_resnet.Bottleneck``).
        lateral_chs: extra input channels of each stage (SlowFast's fused fast features).
        num_frames: clip length the model is meant for (profiling, pretrained cfg).
        drop_rate: dropout before the classifier; drop_path_rate: stochastic depth.
        block_args: more ``Bottleneck`` args (``rf_ratio``, ``rf_kernels``, ``agg_kernel``, ``agg_pool``).
    """

    def __init__(
            self,
            layers: Sequence[int] = (3, 4, 6, 3),
            widths: Sequence[int] = (64, 128, 256, 512),
            stem_width: int = 64,
            stem_kernel_t: int = 1,
            stem_pool: bool = False,
            temporal_kernels: Sequence[int] = (1, 1, 1, 1),
            mid: str = "2d",
            tada: Sequence[str] = (),
            lateral_chs: Sequence[int] = (0, 0, 0, 0),
            num_classes: int = 400,
            in_chans: int = 3,
            num_frames: int = 8,
            global_pool: str = "avg",
            drop_rate: float = 0.5,
            drop_path_rate: float = 0.,
            bn_eps: float = 1e-5,
            block_args: Optional[dict] = None,
    ):
        super().__init__()
        if not (len(layers) == len(widths) == len(temporal_kernels) == len(lateral_chs)):
            raise ValueError(
                f"layers {tuple(layers)}, widths {tuple(widths)}, temporal_kernels {tuple(temporal_kernels)} "
                f"and lateral_chs {tuple(lateral_chs)} must have the same length")
        self._init_attributes(num_classes, in_chans, num_frames, drop_rate, tada)
        self.conv1 = nn.Conv3d(
            in_chans, stem_width, (stem_kernel_t, 7, 7), (1, 2, 2), (stem_kernel_t // 2, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(stem_width, eps=bn_eps)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)) if stem_pool else nn.Identity()
        reduction = 4 if stem_pool else 2
        self.feature_info = [dict(num_chs=stem_width, reduction=reduction, module="maxpool" if stem_pool else "act1")]
        strides = [1 if (i == 0 and stem_pool) else 2 for i in range(len(layers))]
        self._init_stages(stem_width, reduction, layers, widths, strides, drop_path_rate, bn_eps, num_classes,
                          global_pool, drop_rate, extra_in=lateral_chs,
                          per_stage=[dict(temporal_kernel=k) for k in temporal_kernels], mid=mid, tada=self.tada,
                          **(block_args or {}))

    # ---- timm model API -------------------------------------------------------------

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x, self.in_chans, f"{type(self).__name__} input")
        return self.maxpool(self.act1(self.bn1(self.conv1(x))))


# ---- weights: baselines, 2D inflation, original checkpoints ------------------------------

def tada_from_baseline(state_dict: dict, model: nn.Module) -> dict:
    """A baseline's state dict (``r3d_r50_8f``, ``slowfast_r50_8x8``...) for its TAda version.

    Shared weights are copied (reshaped where TAdaConv2d drops the unit temporal dim),
    ``bn2`` of a block that aggregates becomes ``agg2.norm``; the route functions and the
    aggregation's second BN keep ``model``'s init (alpha = 1, zero), so at init the TAda
    model computes exactly what the baseline does.
    """
    out = {}
    for key, target in model.state_dict().items():
        src = key
        if ".agg2.norm." in key:
            src = key.replace(".agg2.norm.", ".bn2.")
        if src in state_dict and state_dict[src].numel() == target.numel():
            out[key] = state_dict[src].reshape(target.shape)
        else:
            out[key] = target
    return out


def inflate_2d_state_dict(state_dict: dict, model: nn.Module, prefix: str = "") -> Tuple[dict, List[str]]:
    """ImageNet 2D ResNet weights (timm ``resnet50`` names) -> ``model`` (Appendix D).

    Every key of ``model`` (after removing ``prefix``, e.g. ``"slow."``) that a 2D key
    matches is copied: a ``(O, I, kh, kw)`` weight goes to every temporal tap of a
    ``(O, I, kt, kh, kw)`` one divided by ``kt`` (R3D: "weights reduced by 3 times, evenly
    distributed in adjacent time steps"), so a clip of identical frames gives the 2D
    output; ``bn2`` feeds a TAda block's ``agg2.norm``. R(2+1)D's temporal convs, route
    functions, the aggregation's second BN, keys whose shapes do not fit (SlowFast's
    fused inputs, the fast pathway) and the classifier keep ``model``'s init.
    Returns ``(state_dict, keys_kept_from_init)``.
    """
    out, kept = {}, []
    for key, target in model.state_dict().items():
        if not key.startswith(prefix) or key.startswith(prefix + "fc."):
            out[key] = target
            kept.append(key)
            continue
        src = key[len(prefix):].replace(".agg2.norm.", ".bn2.")
        value = state_dict.get(src)
        if value is not None and value.dim() == 4 and target.dim() == 5 and value.shape == target.shape[:2] + target.shape[3:]:
            kt = target.shape[2]
            value = value.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt
        if value is not None and value.shape == target.shape:
            out[key] = value.to(target.dtype)
        else:
            out[key] = target
            kept.append(key)
    return out, kept


def checkpoint_filter_fn(state_dict: dict, model: ResNet3d) -> dict:
    """Our own keys, or a baseline's for a TAda model (SlowOnly's original keys: ``slowfast.py``).

    The original code base has no R3D / R(2+1)D ResNet-50s: its ``R2Plus1D`` (R(2+1)D-10)
    and ``R2D3D`` (R-2D3D-18) are different networks (see docs/models.md).
    """
    if any(k.startswith("backbone.") for k in state_dict):
        raise ValueError(
            f"{type(model).__name__}: this original checkpoint is not a SlowOnly / SlowFast one; the "
            "original R2Plus1D (R(2+1)D-10) and R2D3D (R-2D3D-18) are different networks from our "
            "R(2+1)D / R3D ResNet-50s (see docs/models.md)")
    if model.tada and not any("_rf." in k for k in state_dict):
        return tada_from_baseline(state_dict, model)
    return state_dict


def inflate_resnet3d(model: nn.Module, state_dict_2d: dict) -> nn.Module:
    """ImageNet 2D ResNet weights into R3D / R(2+1)D / SlowOnly (``inflate_2d_state_dict``), in place."""
    model.load_state_dict(inflate_2d_state_dict(state_dict_2d, model)[0])
    return model


FAMILY = VideoFamily("ResNet3D", recipe="tada2d", inflate=inflate_resnet3d,
                     names={"r2plus1d": "R(2+1)D", "r3d": "R3D"})


# ---- registry ------------------------------------------------------------------------

def _create(variant: str, pretrained: bool = False, **kwargs) -> ResNet3d:
    return build_video_model(
        ResNet3d, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3, 4)),
        **kwargs,
    )


def _cfg(**kwargs):
    # no released weights: the cfgs give preprocessing defaults (K400 8x8 as in Table 3)
    return video_cfg(hf_hub_id=None, num_frames=8, sampling="interval", frame_interval=8, **kwargs)


default_cfgs = generate_video_cfgs({
    "r2plus1d_r50_8f": _cfg(),
    "r2plus1d_r50_8f_tada2d": _cfg(),
    "r2plus1d_r50_8f_tada2d1d": _cfg(),
    "r3d_r50_8f": _cfg(),
    "r3d_r50_8f_tada3d": _cfg(),
})


def _resnet3d(variant: str, pretrained: bool, **kwargs) -> ResNet3d:
    kwargs.setdefault("num_frames", 8)
    return _create(variant, pretrained, **kwargs)


@register_model
def r2plus1d_r50_8f(pretrained: bool = False, **kwargs) -> ResNet3d:
    """R(2+1)D ResNet-50 (Table A2), 8 frames."""
    return _resnet3d("r2plus1d_r50_8f", pretrained, **dict(dict(mid="2+1d"), **kwargs))


@register_model
def r2plus1d_r50_8f_tada2d(pretrained: bool = False, **kwargs) -> ResNet3d:
    """R(2+1)D ResNet-50 with TAdaConv2d spatial convs (Table 3, "2d")."""
    return _resnet3d("r2plus1d_r50_8f_tada2d", pretrained, **dict(dict(mid="2+1d", tada=("2d",)), **kwargs))


@register_model
def r2plus1d_r50_8f_tada2d1d(pretrained: bool = False, **kwargs) -> ResNet3d:
    """R(2+1)D ResNet-50 with TAdaConv2d spatial and TAdaConv3d temporal convs (Table 3, "2d+1d")."""
    return _resnet3d(
        "r2plus1d_r50_8f_tada2d1d", pretrained, **dict(dict(mid="2+1d", tada=("2d", "1d")), **kwargs))


@register_model
def r3d_r50_8f(pretrained: bool = False, **kwargs) -> ResNet3d:
    """R3D ResNet-50 (Table A2): 3x7x7 stem, 3x3x3 middle convs, 8 frames."""
    return _resnet3d("r3d_r50_8f", pretrained, **dict(dict(mid="3d", stem_kernel_t=3), **kwargs))


@register_model
def r3d_r50_8f_tada3d(pretrained: bool = False, **kwargs) -> ResNet3d:
    """R3D ResNet-50 with TAdaConv3d middle convs (Table 3, "3d")."""
    return _resnet3d(
        "r3d_r50_8f_tada3d", pretrained, **dict(dict(mid="3d", stem_kernel_t=3, tada=("3d",)), **kwargs))
