"""TSN (R2D) and TAda2D: 2D ResNet video networks with and without TAdaConv.

Paper: "TAda! Temporally-Adaptive Convolutions for Video Understanding" (ICLR 2022),
Sec. 4, Appendix D and Table A2.

R2D is ResNet-50 applied to every frame with two changes (Appendix D): no max-pool after
the 1x7x7 stem, and spatial stride 2 in the first block of res2 instead. Frame scores are
averaged (TSN). TAda2D replaces each bottleneck's 3x3 convolution by a TAdaConv2d
calibrated by a RouteFuncMLP (r=4, k=(3, 3)), followed by the temporal aggregation of
Eq. 7 (k=3) instead of its BN + ReLU. Module names follow timm's ``resnet.py``, so the
ImageNet ``resnet50`` state dict loads into TSN as is (see ``tada_zoo.weights.inflate``).

Activations flow between blocks in the frame-major layout ``(B, T, C, H, W)``, so every
2D op runs on the free view ``(B * T, C, H, W)``; the public interface is ``(B, C, T, H, W)``.
"""
import re
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from timm.models import register_model

from ..layers import check_video, unflatten_frames
from ._builder import build_video_model
from ._cfg import VideoFamily, generate_video_cfgs, video_cfg
from ._helpers import load_inflated
from ._resnet import Bottleneck, ResNetBase

__all__ = ["VideoResNet"]


class VideoResNet(ResNetBase):
    """R2D video ResNet (TSN) and TAda2D: ``(B, 3, T, H, W)`` clips -> ``(B, num_classes)``.

    Args:
        tada: ``("2d",)`` for TAda2D (every 3x3 conv a TAdaConv2d + Eq. 7 aggregation), ``()`` for TSN.
        layers: blocks per stage (ResNet-50: ``(3, 4, 6, 3)``).
        widths: bottleneck widths per stage (outputs are 4x these).
        stem_width: stem channels.
        num_frames: clip length the model is meant for (used for profiling and the
            pretrained cfg; any T >= 1 runs).
        drop_rate: dropout before the classifier (the paper uses 0.5).
        drop_path_rate: stochastic depth, linearly increasing over blocks.
        block_args: passed to every block (``rf_ratio``, ``rf_kernels``, ``agg_kernel``, ``agg_pool``).
    """

    def __init__(
            self,
            tada: Sequence[str] = ("2d",),
            layers: Sequence[int] = (3, 4, 6, 3),
            widths: Sequence[int] = (64, 128, 256, 512),
            stem_width: int = 64,
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
        if len(layers) != len(widths):
            raise ValueError(f"layers {tuple(layers)} and widths {tuple(widths)} must have the same length")
        self._init_attributes(num_classes, in_chans, num_frames, drop_rate, tada)
        self.conv1 = nn.Conv2d(in_chans, stem_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width, eps=bn_eps)
        self.act1 = nn.ReLU(inplace=True)
        self.feature_info = [dict(num_chs=stem_width, reduction=2, module="act1")]
        # no max-pool: every stage halves the resolution, res2 included (Appendix D)
        self._init_stages(stem_width, 2, layers, widths, [2] * len(layers), drop_path_rate, bn_eps, num_classes,
                          global_pool, drop_rate, frames=True, tada=self.tada, **(block_args or {}))

    # ---- timm model API -------------------------------------------------------------

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> frame-major stem features ``(B, T, C', H', W')``."""
        check_video(x, self.in_chans, f"{type(self).__name__} input")
        B, _, T = x.shape[:3]
        frames = x.transpose(1, 2).flatten(0, 1)
        return unflatten_frames(self.act1(self.bn1(self.conv1(frames))), (B, T))

    def to_video(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)  # frame-major (B, T, C, H, W) -> (B, C, T, H, W), a view


# ---- weights: original checkpoints, 2D inflation ----------------------------------------

_ORIGINAL_BLOCK_NAMES = (  # original TAda2DBlock / R2D branch -> ours (first match)
    ("short_cut_bn.", "downsample.1."),
    ("short_cut.", "downsample.0."),
    ("conv_branch.a_bn.", "bn1."),
    ("conv_branch.a.", "conv1."),
    ("conv_branch.b_rf.", "conv2_rf."),
    ("conv_branch.b_avgpool_bn.", "agg2.norm_pool."),
    ("conv_branch.b.", "conv2."),
    ("conv_branch.c_bn.", "bn3."),
    ("conv_branch.c.", "conv3."),
)


def checkpoint_filter_fn(state_dict: dict, model: VideoResNet) -> dict:
    """Original TAdaConv-repo ResNet keys (``backbone.conv2.res_1...``) -> ours.

    Conv3d weights with a temporal kernel of 1 lose that dim, TAdaConv's
    ``(1, 1, O, I, kh, kw)`` becomes ``(O, I, kh, kw)``, the route functions' 1x1x1 /
    kx1x1 Conv3d become Linear / Conv1d. State dicts already in our layout pass through.
    """
    if "backbone.conv1.a.weight" not in state_dict:
        return state_dict
    tada = "2d" in model.layer1[0].tada
    out = {}
    for key, value in state_dict.items():
        k = key.replace("backbone.", "", 1).replace("head.out.", "fc.")
        k = k.replace("conv1.a_bn.", "bn1.").replace("conv1.a.", "conv1.")
        m = re.match(r"conv(\d)\.res_(\d+)\.(.*)", k)
        if m:
            rest = m[3]
            for old, new in _ORIGINAL_BLOCK_NAMES:
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
            if rest.startswith("conv_branch.b_bn."):
                rest = rest.replace("conv_branch.b_bn.", "agg2.norm." if tada else "bn2.")
            k = f"layer{int(m[1]) - 1}.{int(m[2]) - 1}.{rest}"
        if ".conv2_rf." in k and value.dim() == 5:
            value = value.flatten(1) if k.endswith("g.weight") else value[..., 0, 0]
        elif value.dim() == 6:  # TAdaConv (1, 1, O, I, kh, kw)
            value = value[0, 0]
        elif value.dim() == 5:
            value = value.squeeze(2)
        out[k] = value
    return out


def inflate_resnet(model: nn.Module, state_dict_2d: Dict[str, torch.Tensor]) -> nn.Module:
    """timm / torchvision ResNet state dict -> TSN or TAda2D (``VideoResNet``), in place.

    Key names are shared; TAda2D's BN after the 3x3 conv becomes BN1 of the
    aggregation (``agg2.norm``); the ImageNet ``fc`` is dropped.
    """
    tada = any(isinstance(m, Bottleneck) and "2d" in m.tada for m in model.modules())  # tadafy'd TSN too
    sd = {}
    for k, v in state_dict_2d.items():
        if k.startswith("fc."):
            continue
        if tada and ".bn2." in k:
            k = k.replace(".bn2.", ".agg2.norm.")
        sd[k] = v
    load_inflated(model, sd, new_parts=(".conv2_rf.", ".agg2.norm_pool.", "fc."))
    return model


FAMILY = VideoFamily("TAda2D", recipe="tada2d", inflate=inflate_resnet, names={"tsn": "TSN"})


# ---- registry ------------------------------------------------------------------------

def _create(variant: str, pretrained: bool = False, **kwargs) -> VideoResNet:
    return build_video_model(
        VideoResNet, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3, 4)),
        **kwargs,
    )

_ZOO = "https://github.com/alibaba-mmai-research/TAdaConv/blob/main/MODEL_ZOO.md"
_DRIVE = "https://drive.google.com/file/d/{}/view?usp=sharing"
_INIT = dict(init="ImageNet-1k ResNet-50 (torchvision resnet50-19c8e357.pth)", init_license="bsd-3-clause")


# accuracy, eval views and checkpoint links: the original MODEL_ZOO.md (TAdaConv section)
def _k400(frames: int, interval: int, top1: float, top5: float, file: str, drive_id: str, **kwargs):
    return video_cfg(
        num_classes=400, dataset="kinetics400", num_frames=frames, sampling="interval",
        frame_interval=interval, eval_clips=10, eval_crops=3, top1=top1, top5=top5,
        original_file=file, original_url=_DRIVE.format(drive_id), origin_url=_ZOO, train_recipe=file.split(".")[0],
        **_INIT, **kwargs)


def _ssv2(frames: int, top1: float, top5: float, file: str, drive_id: str, **kwargs):
    return video_cfg(
        num_classes=174, dataset="ssv2", num_frames=frames, sampling="segment",
        eval_clips=2, eval_crops=3, top1=top1, top5=top5, original_file=file,
        original_url=_DRIVE.format(drive_id), origin_url=_ZOO, train_recipe=file.split(".")[0], **_INIT, **kwargs)


default_cfgs = generate_video_cfgs({
    "tada2d_r50_8f.k400": _k400(8, 8, 76.7, 92.6, "tada2d_8x8_k400.pyth", "1YsbTKLoDwxtStAsP5oxUMbIsw85NvY0O"),
    "tada2d_r50_16f.k400": _k400(16, 5, 77.4, 93.1, "tada2d_16x5_k400.pyth", "1UQDurxakmnDxa5D2tBuTqTH60BVyW3XM"),
    "tada2d_r50_8f.ssv2": _ssv2(8, 64.2, 88.0, "tada2d_8f_ssv2.pyth", "16y6dDf-hcMmJ2jDCV9tRla8aRJZKJXSk"),
    "tada2d_r50_16f.ssv2": _ssv2(16, 65.6, 89.1, "tada2d_16f_ssv2.pyth", "1xwCxuFW6DZ0xpEsp_tFJYQRGuHPJe4uS"),
    # no released TSN weights: the untagged cfgs give preprocessing defaults only
    "tsn_r50_8f": video_cfg(hf_hub_id=None, num_frames=8),
    "tsn_r50_16f": video_cfg(hf_hub_id=None, num_frames=16),
})


def _tada2d(variant: str, frames: int, pretrained: bool, tada: bool, **kwargs) -> VideoResNet:
    kwargs.setdefault("num_frames", frames)  # a num_frames kwarg (e.g. from a Hub config.json) wins
    model_args = dict(tada=("2d",) if tada else (), layers=(3, 4, 6, 3))
    return _create(variant, pretrained, **dict(model_args, **kwargs))


@register_model
def tsn_r50_8f(pretrained: bool = False, **kwargs) -> VideoResNet:
    """TSN / R2D ResNet-50 baseline, 8 frames (Table A2)."""
    return _tada2d("tsn_r50_8f", 8, pretrained, tada=False, **kwargs)


@register_model
def tsn_r50_16f(pretrained: bool = False, **kwargs) -> VideoResNet:
    """TSN / R2D ResNet-50 baseline, 16 frames."""
    return _tada2d("tsn_r50_16f", 16, pretrained, tada=False, **kwargs)


@register_model
def tada2d_r50_8f(pretrained: bool = False, **kwargs) -> VideoResNet:
    """TAda2D ResNet-50, 8 frames (K400 8x8, SSV2 8f)."""
    return _tada2d("tada2d_r50_8f", 8, pretrained, tada=True, **kwargs)


@register_model
def tada2d_r50_16f(pretrained: bool = False, **kwargs) -> VideoResNet:
    """TAda2D ResNet-50, 16 frames (K400 16x5, SSV2 16f)."""
    return _tada2d("tada2d_r50_16f", 16, pretrained, tada=True, **kwargs)


@register_model
def tada2d_r50(pretrained: bool = False, **kwargs) -> VideoResNet:
    """Alias of ``tada2d_r50_8f``."""
    return _tada2d("tada2d_r50_8f", 8, pretrained, tada=True, **kwargs)


@register_model
def tsn_r50(pretrained: bool = False, **kwargs) -> VideoResNet:
    """Alias of ``tsn_r50_8f``."""
    return _tada2d("tsn_r50_8f", 8, pretrained, tada=False, **kwargs)
