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
from functools import partial
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath
from timm.models import register_model

from ..layers import RouteFuncMLP, TAdaConv2d, TemporalAggregation, check_video, unflatten_frames
from ._base import StagedVideoMixin, drop_path_rates
from ._builder import build_video_model
from ._cfg import VideoFamily, generate_video_cfgs, video_cfg
from ._helpers import load_inflated

__all__ = ["VideoResNet", "Bottleneck", "TAdaBottleneck"]


class StridedPointwiseConv2d(nn.Conv2d):
    """A strided 1x1 conv (the shortcut's downsampling) run as the stride-1 conv of the subsampled
    input: the same result, and on CPU a quarter of the backward pass's copies (oneDNN's strided
    backward copies the whole input; 1.6x faster fwd + bwd on 8 x 64 x 112 x 112)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sh, sw = self.stride
        return F.conv2d(x[:, :, ::sh, ::sw], self.weight, self.bias)


class Bottleneck(nn.Module):
    """ResNet bottleneck (timm names) on frame-major ``(B, T, C, H, W)`` clips, one frame at a time."""
    expansion = 4

    def __init__(
            self,
            in_chs: int,
            chs: int,
            stride: int = 1,
            downsample: Optional[nn.Module] = None,
            drop_path: float = 0.,
            bn_eps: float = 1e-5,
            **kwargs,
    ):
        super().__init__()
        out_chs = chs * self.expansion
        norm = partial(nn.BatchNorm2d, eps=bn_eps)
        self.conv1 = nn.Conv2d(in_chs, chs, 1, bias=False)
        self.bn1 = norm(chs)
        self.act1 = nn.ReLU(inplace=True)
        self.init_conv2(chs, stride, bn_eps, **kwargs)
        self.conv3 = nn.Conv2d(chs, out_chs, 1, bias=False)
        self.bn3 = norm(out_chs)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act3 = nn.ReLU(inplace=True)

    def init_conv2(self, chs: int, stride: int, bn_eps: float) -> None:
        self.conv2 = nn.Conv2d(chs, chs, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(chs, eps=bn_eps)
        self.act2 = nn.ReLU(inplace=True)

    def forward_conv2(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial 3x3 stage on ``(B, T, C, H, W)``."""
        return unflatten_frames(self.act2(self.bn2(self.conv2(x.flatten(0, 1)))), x.shape)

    tada_conv = "conv2"  # the conv tada_zoo.tadafy replaces (through to_tada)

    def to_tada(
            self,
            rf_ratio: int = 4,
            rf_kernels: Sequence[int] = (3, 3),
            aggregation: bool = True,
            agg_kernel: int = 3,
            agg_pool: str = "avg",
            cal_dim: str = "cin",
    ) -> "TAdaBottleneck":
        """This block as a ``TAdaBottleneck`` with the same weights, equal to it at init
        (``bn2`` becomes ``agg2.norm``; for ``tada_zoo.tadafy``)."""
        if isinstance(self, TAdaBottleneck):
            return self
        if not aggregation or cal_dim != "cin":
            raise ValueError(
                "TAdaBottleneck (TAda2D) always aggregates and calibrates input channels: "
                f"got aggregation={aggregation}, cal_dim={cal_dim!r}")
        drop_path = self.drop_path.drop_prob if isinstance(self.drop_path, DropPath) else 0.
        block = TAdaBottleneck(
            self.conv1.in_channels, self.conv1.out_channels, self.conv2.stride[0], self.downsample,
            drop_path, self.bn1.eps, rf_ratio=rf_ratio, rf_kernels=rf_kernels, agg_kernel=agg_kernel,
            agg_pool=agg_pool)
        state = {("agg2.norm." + k[4:] if k.startswith("bn2.") else k): v for k, v in self.state_dict().items()}
        missing, unexpected = block.load_state_dict(state, strict=False)
        if unexpected or not all(k.startswith(("conv2_rf.", "agg2.norm_pool.")) for k in missing):
            raise RuntimeError(f"Bottleneck.to_tada: unexpected {unexpected}, missing {missing}")
        return block.to(self.conv1.weight.device, self.conv1.weight.dtype).train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.flatten(0, 1)
        y = unflatten_frames(self.act1(self.bn1(self.conv1(frames))), x.shape)
        y = self.bn3(self.conv3(self.forward_conv2(y).flatten(0, 1)))
        shortcut = frames if self.downsample is None else self.downsample(frames)
        # drop path on the clip view: a whole clip is dropped, never single frames
        y = self.drop_path(unflatten_frames(y, x.shape)) + unflatten_frames(shortcut, x.shape)
        return self.act3(y)


class TAdaBottleneck(Bottleneck):
    """Bottleneck whose 3x3 conv is a TAdaConv2d followed by the aggregation of Eq. 7.

    The calibration is computed from the conv's input (before any stride), as in the
    original code.
    """

    def init_conv2(
            self,
            chs: int,
            stride: int,
            bn_eps: float,
            rf_ratio: int = 4,
            rf_kernels: Sequence[int] = (3, 3),
            agg_kernel: int = 3,
            agg_pool: str = "avg",
    ) -> None:
        self.conv2 = TAdaConv2d(chs, chs, 3, stride, 1, cal_dim="cin")
        self.conv2_rf = RouteFuncMLP(chs, rf_ratio, rf_kernels)
        self.agg2 = TemporalAggregation(chs, agg_kernel, agg_pool, eps=bn_eps)

    def forward_conv2(self, x: torch.Tensor) -> torch.Tensor:
        B, T = x.shape[:2]
        return unflatten_frames(self._conv2_flat(x.flatten(0, 1), B, T), x.shape)

    def _conv2_flat(self, frames: torch.Tensor, B: int, T: int) -> torch.Tensor:
        """The TAda stage on flat frames ``(B * T, C, H, W)``: calibration, conv, aggregation.

        The frames stay flat (only the route function sees the clip), so the block
        dispatches about as few ops as a plain bottleneck plus the calibration's own;
        the route function is called as a module, so its hooks (``tada_zoo.inference.visualize``) see it.
        """
        alpha = self.conv2_rf(frames.reshape((B, T) + frames.shape[1:]).transpose(1, 2))  # (B, C, T, 1, 1)
        alpha = alpha.transpose(1, 2).reshape(B * T, -1, 1, 1)
        return self.agg2.forward_flat(self.conv2.forward_flat(frames, alpha), T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T = x.shape[:2]
        frames = x.flatten(0, 1)
        y = self.bn3(self.conv3(self._conv2_flat(self.act1(self.bn1(self.conv1(frames))), B, T)))
        shortcut = frames if self.downsample is None else self.downsample(frames)
        if not isinstance(self.drop_path, nn.Identity):
            # drop path on the clip view: a whole clip is dropped, never single frames
            return self.act3(self.drop_path(unflatten_frames(y, x.shape)) + unflatten_frames(shortcut, x.shape))
        return unflatten_frames(self.act3(y + shortcut), x.shape)


class VideoResNet(StagedVideoMixin, nn.Module):
    """R2D video ResNet (TSN) and TAda2D: ``(B, 3, T, H, W)`` clips -> ``(B, num_classes)``.

    Args:
        block: ``Bottleneck`` (TSN/R2D) or ``TAdaBottleneck`` (TAda2D).
        layers: blocks per stage (ResNet-50: ``(3, 4, 6, 3)``).
        widths: bottleneck widths per stage (outputs are 4x these).
        stem_width: stem channels.
        num_frames: clip length the model is meant for (used for profiling and the
            pretrained cfg; any T >= 1 runs).
        drop_rate: dropout before the classifier (the paper uses 0.5).
        drop_path_rate: stochastic depth, linearly increasing over blocks.
        block_args: passed to every block (TAda2D: ``rf_ratio``, ``rf_kernels``,
            ``agg_kernel``, ``agg_pool``).
    """

    def __init__(
            self,
            block=TAdaBottleneck,
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
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_frames = num_frames
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        block_args = block_args or {}

        self.conv1 = nn.Conv2d(in_chans, stem_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width, eps=bn_eps)
        self.act1 = nn.ReLU(inplace=True)
        self.feature_info = [dict(num_chs=stem_width, reduction=2, module="act1")]

        # no max-pool: every stage halves the resolution, res2 included (Appendix D)
        dpr = drop_path_rates(drop_path_rate, layers)
        in_chs, reduction = stem_width, 2
        self.stage_names = []
        for i, (depth, chs) in enumerate(zip(layers, widths)):
            out_chs = chs * block.expansion
            downsample = nn.Sequential(
                StridedPointwiseConv2d(in_chs, out_chs, 1, 2, bias=False), nn.BatchNorm2d(out_chs, eps=bn_eps))
            blocks = []
            for j in range(depth):
                blocks.append(block(
                    in_chs if j == 0 else out_chs, chs, stride=2 if j == 0 else 1,
                    downsample=downsample if j == 0 else None, drop_path=dpr[i][j], bn_eps=bn_eps,
                    **block_args))
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            in_chs, reduction = out_chs, reduction * 2
            self.feature_info.append(dict(num_chs=out_chs, reduction=reduction, module=name))

        self.num_features = self.head_hidden_size = in_chs
        self.global_pool = global_pool
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, TAdaConv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    # ---- timm model API -------------------------------------------------------------

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^conv1|bn1", blocks=r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)")

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> frame-major stem features ``(B, T, C', H', W')``."""
        check_video(x, self.in_chans, f"{type(self).__name__} input")
        B, _, T = x.shape[:3]
        frames = x.transpose(1, 2).flatten(0, 1)
        return unflatten_frames(self.act1(self.bn1(self.conv1(frames))), (B, T))

    def to_video(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)  # frame-major (B, T, C, H, W) -> (B, C, T, H, W), a view


def _create(variant: str, pretrained: bool = False, **kwargs) -> VideoResNet:
    return build_video_model(
        VideoResNet, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3, 4)),
        **kwargs,
    )


def inflate_resnet(model: nn.Module, state_dict_2d: Dict[str, torch.Tensor]) -> nn.Module:
    """timm / torchvision ResNet state dict -> TSN or TAda2D (``VideoResNet``), in place.

    Key names are shared; TAda2D's BN after the 3x3 conv becomes BN1 of the
    aggregation (``agg2.norm``); the ImageNet ``fc`` is dropped.
    """
    tada = any(isinstance(m, TAdaBottleneck) for m in model.modules())
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
    model_args = dict(block=TAdaBottleneck if tada else Bottleneck, layers=(3, 4, 6, 3))
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


# ---- original checkpoints ------------------------------------------------------------

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
    tada = isinstance(model.layer1[0], TAdaBottleneck)
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
