"""SlowOnly and SlowFast ResNet-50, with and without TAdaConv (paper Table 3).

SlowFast (Feichtenhofer et al., ICCV 2019) exactly as the original TAdaConv code base
builds it (``tadaconv/models/base/slowfast.py``, ``configs/pool/backbone/slowfast_*.yaml``):

* slow pathway: ResNet-50 with a 1x7x7 stem + 1x3x3 max-pool, 3x1x1 ``conv1`` in res4/res5;
* fast pathway: 1/8 of the widths (beta = 8), 5x7x7 stem, 3x1x1 ``conv1`` in every stage;
* before each slow stage (res2..res5) the fast features are fused into it: a
  time-strided ``(k, 1, 1)`` conv (stride alpha, 2x the fast channels) + BN + ReLU,
  concatenated after the slow channels;
* head: the pathways' globally pooled features concatenated (2048 + 256 = 2304) -> fc.

4x16: alpha 8, fusion kernel 5; 8x8: alpha 4, fusion kernel 7; both take 32 frames.
The model takes the fast clip ``(B, 3, T, H, W)`` and picks the slow frames itself like
the original data pipeline (``base_dataset.py``): ``idx = linspace(0, T, T // alpha + 1)[:-1]``.

SlowOnly 8x8 is the slow pathway alone on 8 frames (no fusion). The TAda versions
replace every 1x3x3 conv (both pathways) by a TAdaConv2d with RouteFuncMLP (r=4,
k=(3, 3)) and the aggregation of Eq. 7, as in TAda2D; the original repo has no TAda
SlowFast config, so this follows the paper's "plug-in substitution for the spatial
convolutions" (Sec. 5.1).
"""
import re
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from timm.models import register_model

from ..layers import check_video, fx_check
from ._base import VideoModelMixin
from ._builder import build_video_model
from ._cfg import VideoFamily, generate_video_cfgs, video_cfg
from ._resnet import Bottleneck, init_weights
from .resnet3d import ResNet3d, inflate_resnet3d, tada_from_baseline

__all__ = ["SlowFast", "FuseFastToSlow"]


class FuseFastToSlow(nn.Module):
    """Lateral connection: fast features -> slow frame rate, ``ratio`` x the channels."""

    def __init__(self, chs: int, ratio: int = 2, kernel_size: int = 5, alpha: int = 8, bn_eps: float = 1e-5):
        super().__init__()
        self.conv = nn.Conv3d(chs, chs * ratio, (kernel_size, 1, 1), (alpha, 1, 1), (kernel_size // 2, 0, 0),
                              bias=False)
        self.bn = nn.BatchNorm3d(chs * ratio, eps=bn_eps)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SlowFast(VideoModelMixin, nn.Module):
    """SlowFast: fast-rate clips ``(B, 3, T, H, W)`` -> ``(B, num_classes)``.

    Args:
        alpha: frame-rate ratio fast / slow (T must be a multiple of it).
        beta: channel ratio slow / fast.
        fusion_kernel, fusion_ratio: temporal kernel and channel multiplier of the lateral convs.
        layers, widths, stem_width: the slow pathway (ResNet-50); the fast one has widths / beta.
        slow_temporal, fast_temporal: temporal size of each stage's ``conv1`` per pathway.
        fast_stem_kernel_t: temporal size of the fast stem conv.
        tada: ``("2d",)`` for the TAda version (every 1x3x3 conv becomes a TAdaConv2d).
        num_frames: fast clip length the model is meant for.
    """

    def __init__(
            self,
            alpha: int = 8,
            beta: int = 8,
            fusion_kernel: int = 5,
            fusion_ratio: int = 2,
            layers: Sequence[int] = (3, 4, 6, 3),
            widths: Sequence[int] = (64, 128, 256, 512),
            stem_width: int = 64,
            slow_temporal: Sequence[int] = (1, 1, 3, 3),
            fast_temporal: Sequence[int] = (3, 3, 3, 3),
            fast_stem_kernel_t: int = 5,
            tada: Sequence[str] = (),
            num_classes: int = 400,
            in_chans: int = 3,
            num_frames: int = 32,
            global_pool: str = "avg",
            drop_rate: float = 0.5,
            drop_path_rate: float = 0.,
            bn_eps: float = 1e-5,
            block_args: Optional[dict] = None,
    ):
        super().__init__()
        if alpha < 1 or any(w % beta for w in (stem_width, *widths)):
            raise ValueError(f"alpha must be >= 1 and beta ({beta}) must divide the widths {(stem_width, *widths)}")
        self.alpha = alpha
        self._init_attributes(num_classes, in_chans, num_frames, drop_rate, tada)
        common = dict(layers=layers, stem_pool=True, mid="2d", tada=tada, num_classes=0, in_chans=in_chans,
                      drop_path_rate=drop_path_rate, bn_eps=bn_eps, block_args=block_args)
        fast_stem, fast_widths = stem_width // beta, [w // beta for w in widths]
        fast_outs = [fast_stem] + [w * Bottleneck.expansion for w in fast_widths[:-1]]
        self.slow = ResNet3d(
            widths=widths, stem_width=stem_width, temporal_kernels=slow_temporal,
            lateral_chs=[c * fusion_ratio for c in fast_outs], num_frames=num_frames // alpha, **common)
        self.fast = ResNet3d(
            widths=fast_widths, stem_width=fast_stem, stem_kernel_t=fast_stem_kernel_t,
            temporal_kernels=fast_temporal, num_frames=num_frames, **common)
        self.stage_names = self.slow.stage_names
        for i, chs in enumerate(fast_outs):
            self.add_module(f"fuse{i + 1}", FuseFastToSlow(chs, fusion_ratio, fusion_kernel, alpha, bn_eps))
        # feature levels interleaved: slow stem, fast stem, slow res2, fast res2, ...
        self.feature_info = []
        for s, f in zip(self.slow.feature_info, self.fast.feature_info):
            self.feature_info += [dict(s, module="slow." + s["module"]), dict(f, module="fast." + f["module"])]

        self.init_pooled_head(self.slow.num_features + self.fast.num_features, num_classes, global_pool, drop_rate)
        init_weights(self)

    # ---- timm model API -------------------------------------------------------------

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        # fuse{i} feeds layer{i} of the slow pathway: same group
        return dict(
            stem=r"^(?:slow|fast)\.(?:conv1|bn1)",
            blocks=r"^(?:(?:slow|fast)\.layer|fuse)(\d+)" if coarse else [
                (r"^(?:slow|fast)\.layer(\d+)\.(\d+)", None), (r"^fuse(\d+)", (0,))])

    def slow_indices(self, num_frames: int) -> torch.Tensor:
        """Frames of a fast clip that the slow pathway sees (the original data pipeline's choice)."""
        return torch.linspace(0, num_frames, num_frames // self.alpha + 1).long()[:-1]

    @fx_check
    def _check_input(self, x: torch.Tensor) -> None:
        check_video(x, self.in_chans, "SlowFast input (the fast-rate clip)")
        T = x.shape[2]
        if T < self.alpha or T % self.alpha:
            raise ValueError(
                f"SlowFast input: the fast clip's T={T} must be a positive multiple of alpha={self.alpha} "
                f"(the slow pathway takes every {self.alpha}th frame); e.g. T={self.num_frames}")

    def _stems(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        self._check_input(x)
        slow = x.index_select(2, self.slow_indices(x.shape[2]).to(x.device))
        return self.slow.stem(slow), self.fast.stem(x)

    def _stage(self, i: int, slow: torch.Tensor, fast: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        name = self.stage_names[i]
        slow = torch.cat((slow, getattr(self, f"fuse{i + 1}")(fast)), 1)
        return self.slow.stage(name, slow), self.fast.stage(name, fast)

    def forward_features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """``_stage`` inlined, so the unfused slow map is freed once fused (the generic level loop
        keeps a level's input alive through the level: ~20% of the inference peak)."""
        slow, fast = self._stems(x)
        for i in range(self._num_levels()):
            name = self.stage_names[i]
            slow = torch.cat((slow, getattr(self, f"fuse{i + 1}")(fast)), 1)
            slow = self.slow.stage(name, slow)
            fast = self.fast.stage(name, fast)
        return [slow, fast]

    # levels (VideoModelMixin): stems, then the 4 stages of both pathways; maps: slow, fast
    stem_is_level = True
    maps_per_level = 2

    def _embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self._stems(x)

    def _num_levels(self) -> int:
        return sum(not isinstance(getattr(self.slow, n), nn.Identity) for n in self.stage_names)  # not pruned

    def _run_level(self, i: int, x: Tuple[torch.Tensor, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        return self._stage(i, *x)

    def _level_maps(self, x, norm: bool) -> List[torch.Tensor]:
        return list(x)  # the slow map is taken before the fast features are fused into it

    def _output(self, x) -> List[torch.Tensor]:
        """``[slow map (B, 2048, T/alpha, H/32, W/32), fast map (B, 256, T, H/32, W/32)]``."""
        return list(x)

    def _prune(self, keep: int) -> None:
        """Drop the stages (both pathways, and their fusions) after the first ``keep``."""
        for i, name in enumerate(self.stage_names[keep:], start=keep):
            setattr(self.slow, name, nn.Identity())
            setattr(self.fast, name, nn.Identity())
            setattr(self, f"fuse{i + 1}", nn.Identity())

    def forward_head(self, x: Sequence[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """Pool each pathway over time and space, concatenate (slow first), dropout, classifier."""
        if self.global_pool != "avg":
            return list(x)  # unpooled: the maps (no torch.is_tensor test, which FX tracing cannot answer)
        x = self.head_drop(torch.cat([t.mean((2, 3, 4)) for t in x], 1))
        return x if pre_logits else self.fc(x)


# ---- weights: original checkpoints ------------------------------------------------------

_ORIGINAL_BLOCK_NAMES = (  # original SlowfastBranch block -> ours
    ("short_cut_bn.", "downsample.1."),
    ("short_cut.", "downsample.0."),
    ("conv_branch.a_bn.", "bn1."),
    ("conv_branch.a.", "conv1."),
    ("conv_branch.b_bn.", "bn2."),
    ("conv_branch.b.", "conv2."),
    ("conv_branch.c_bn.", "bn3."),
    ("conv_branch.c.", "conv3."),
)


def _original_key(key: str) -> str:
    k = key.replace("backbone.", "", 1).replace("head.out.", "fc.")
    m = re.match(r"(slow|fast)_conv1\.a(_bn)?\.(.*)", k)
    if m:
        return f"{m[1]}.{'bn1' if m[2] else 'conv1'}.{m[3]}"
    m = re.match(r"slowfast_fusion(\d)\.(conv_fast_to_slow|bn)\.(.*)", k)
    if m:
        return f"fuse{m[1]}.{'conv' if m[2] == 'conv_fast_to_slow' else 'bn'}.{m[3]}"
    m = re.match(r"(slow|fast)_conv(\d)\.res_(\d+)\.(.*)", k)
    if m:
        rest = m[4]
        for old, new in _ORIGINAL_BLOCK_NAMES:
            if rest.startswith(old):
                rest = new + rest[len(old):]
                break
        return f"{m[1]}.layer{int(m[2]) - 1}.{int(m[3]) - 1}.{rest}"
    return k


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """Original TAdaConv-repo SlowFast / SlowOnly keys (``backbone.slow_conv2.res_1...``) -> ours.

    Shapes are unchanged (both are Conv3d networks). SlowOnly (``ResNet3d``) takes the slow
    pathway's keys without the ``slow.`` prefix. A baseline state dict given to a TAda
    model is mapped by ``tada_from_baseline``.
    """
    if any(k.startswith("backbone.") for k in state_dict):
        out = {}
        for key, value in state_dict.items():
            k = _original_key(key)
            if isinstance(model, ResNet3d):
                if k.startswith("fast.") or k.startswith("fuse"):
                    continue
                k = k[len("slow."):] if k.startswith("slow.") else k
            out[k] = value
        state_dict = out
    if model.tada and not any("_rf." in k for k in state_dict):
        state_dict = tada_from_baseline(state_dict, model)
    return state_dict


FAMILY = VideoFamily("SlowFast", recipe="tada2d", inflate=inflate_resnet3d, names={"slowonly": "SlowOnly"})


# ---- registry ------------------------------------------------------------------------

def _cfg(frames: int, interval: int, **kwargs):
    # no released weights: the cfgs give preprocessing defaults (K400, Table 3). Both stems take
    # the input clip, so both adapt to another in_chans when weights load
    kwargs.setdefault("first_conv", ("slow.conv1", "fast.conv1"))
    return video_cfg(hf_hub_id=None, num_frames=frames, sampling="interval", frame_interval=interval, **kwargs)


default_cfgs = generate_video_cfgs({
    "slowonly_r50_8x8": _cfg(8, 8, first_conv="conv1"),
    "slowonly_r50_8x8_tada": _cfg(8, 8, first_conv="conv1"),
    "slowfast_r50_4x16": _cfg(32, 2),
    "slowfast_r50_4x16_tada": _cfg(32, 2),
    "slowfast_r50_8x8": _cfg(32, 2),
    "slowfast_r50_8x8_tada": _cfg(32, 2),
})


def _slowonly(variant: str, pretrained: bool, tada: bool, **kwargs) -> ResNet3d:
    model_args = dict(stem_pool=True, temporal_kernels=(1, 1, 3, 3), num_frames=8, tada=("2d",) if tada else ())
    return build_video_model(
        ResNet3d, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3, 4)), **dict(model_args, **kwargs))


def _slowfast(variant: str, pretrained: bool, tada: bool, alpha: int, fusion_kernel: int, **kwargs) -> SlowFast:
    model_args = dict(alpha=alpha, fusion_kernel=fusion_kernel, tada=("2d",) if tada else ())
    return build_video_model(
        SlowFast, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=tuple(range(10))), **dict(model_args, **kwargs))


@register_model
def slowonly_r50_8x8(pretrained: bool = False, **kwargs) -> ResNet3d:
    """SlowOnly ResNet-50 8x8 (Table 3): the slow pathway of SlowFast on 8 frames."""
    return _slowonly("slowonly_r50_8x8", pretrained, False, **kwargs)


@register_model
def slowonly_r50_8x8_tada(pretrained: bool = False, **kwargs) -> ResNet3d:
    """SlowOnly ResNet-50 8x8 with TAdaConv2d spatial convs (Table 3)."""
    return _slowonly("slowonly_r50_8x8_tada", pretrained, True, **kwargs)


@register_model
def slowfast_r50_4x16(pretrained: bool = False, **kwargs) -> SlowFast:
    """SlowFast ResNet-50 4x16: 32-frame input, slow pathway every 8th frame."""
    return _slowfast("slowfast_r50_4x16", pretrained, False, 8, 5, **kwargs)


@register_model
def slowfast_r50_4x16_tada(pretrained: bool = False, **kwargs) -> SlowFast:
    """SlowFast ResNet-50 4x16 with TAdaConv2d spatial convs in both pathways (Table 3)."""
    return _slowfast("slowfast_r50_4x16_tada", pretrained, True, 8, 5, **kwargs)


@register_model
def slowfast_r50_8x8(pretrained: bool = False, **kwargs) -> SlowFast:
    """SlowFast ResNet-50 8x8: 32-frame input, slow pathway every 4th frame."""
    return _slowfast("slowfast_r50_8x8", pretrained, False, 4, 7, **kwargs)


@register_model
def slowfast_r50_8x8_tada(pretrained: bool = False, **kwargs) -> SlowFast:
    """SlowFast ResNet-50 8x8 with TAdaConv2d spatial convs in both pathways (Table 3)."""
    return _slowfast("slowfast_r50_8x8_tada", pretrained, True, 4, 7, **kwargs)


@register_model
def slowfast_tada(pretrained: bool = False, **kwargs) -> SlowFast:
    """Alias of ``slowfast_r50_8x8_tada``."""
    return _slowfast("slowfast_r50_8x8_tada", pretrained, True, 4, 7, **kwargs)
