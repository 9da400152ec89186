"""The one ResNet bottleneck of every ResNet family here (TSN / TAda2D, R3D / R(2+1)D, SlowOnly / SlowFast).

A bottleneck is ``conv1`` (1x1, or kx1x1) -> the middle -> ``conv3`` (1x1) + shortcut, with timm's
module names. What differs between the families is only

* the **layout**: ``frames=True`` runs on frame-major clips ``(B, T, C, H, W)`` with every op a 2D op
  on the free view ``(B * T, C, H, W)`` (TSN, TAda2D: the ImageNet ResNet's own 4D weights);
  ``frames=False`` runs on ``(B, C, T, H, W)`` with ``Conv3d`` (R3D, R(2+1)D, SlowOnly, SlowFast);
* the **middle** (``mid``): ``"2d"`` a 1x3x3 conv, ``"2+1d"`` a 1x3x3 then a 3x1x1 (``conv2t``),
  ``"3d"`` a 3x3x3; and which of its parts are TAdaConvs (``tada``): ``"2d"`` (the 1x3x3 as a
  TAdaConv2d followed by the temporal aggregation of Eq. 7, ``agg2``, in place of ``bn2`` + ReLU),
  ``"1d"`` (the 3x1x1), ``"3d"`` (the 3x3x3) as TAdaConv3d with plain BN + ReLU (paper Table 3).

Each middle conv ``conv{s}`` is one *part* with its route function ``conv{s}_rf`` when it is a
TAdaConv, then ``agg{s}`` or ``bn{s}`` + ``act{s}``; the part names (``"2"``, ``"2t"``) keep the
state-dict keys of the released checkpoints.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath

from ..layers import RouteFuncMLP, TAdaConv2d, TAdaConv3d, TemporalAggregation
from ._base import StagedVideoMixin, drop_path_rates

__all__ = ["Bottleneck", "ResNetBase", "make_stage", "init_weights", "tada_conv2d_ncthw", "MIDS", "TADA_PARTS"]

MIDS = ("2d", "2+1d", "3d")
TADA_PARTS = {"2d": ("2d",), "2+1d": ("2d", "1d"), "3d": ("3d",)}
# the middle's parts: (name suffix, kind in TADA_PARTS, (kt, kh, kw)); the spatial conv takes the block's stride
_PARTS = {
    "2d": (("2", "2d", (1, 3, 3)),),
    "2+1d": (("2", "2d", (1, 3, 3)), ("2t", "1d", (3, 1, 1))),
    "3d": (("2", "3d", (3, 3, 3)),),
}


class StridedPointwiseConv2d(nn.Conv2d):
    """A strided 1x1 conv (the shortcut's downsampling) run as the stride-1 conv of the subsampled
    input: the same result, and on CPU a quarter of the backward pass's copies (oneDNN's strided
    backward copies the whole input; docs/performance.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sh, sw = self.stride
        return F.conv2d(x[:, :, ::sh, ::sw], self.weight, self.bias)


def tada_conv2d_ncthw(conv: TAdaConv2d, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """An input-calibrated TAdaConv2d on ``(B, C, T, H, W)`` as one (1, kh, kw) Conv3d of the
    calibrated input (``(alpha_t W) * X_t == W * (alpha_t X_t)``), with no layout change.

    Without autograd ``x`` (a block's own activation) is scaled IN PLACE: no new tensor.
    """
    x = x.mul_(alpha) if not torch.is_grad_enabled() else x * alpha
    return F.conv3d(
        x, conv.weight.unsqueeze(2), conv.bias, (1, *conv.stride), (0, *conv.padding),
        (1, *conv.dilation), conv.groups)


def _mid_conv(kind: str, kernel: Sequence[int], chs: int, stride: int, frames: bool, tada: bool) -> nn.Module:
    """One middle conv: plain, TAdaConv2d (spatial kernel) or TAdaConv3d, in the block's layout."""
    strides = (1, stride, stride) if kernel[1] > 1 else (1, 1, 1)
    padding = tuple(k // 2 for k in kernel)
    if kind == "2d" and tada:
        return TAdaConv2d(chs, chs, kernel[1:], strides[1:], padding[1:], cal_dim="cin")
    if tada:
        return TAdaConv3d(chs, chs, kernel, strides, padding, cal_dim="cin")
    if frames:
        return nn.Conv2d(chs, chs, kernel[1:], strides[1:], padding[1:], bias=False)
    return nn.Conv3d(chs, chs, kernel, strides, padding, bias=False)


class Bottleneck(nn.Module):
    """ResNet bottleneck with a pluggable middle, in either layout (module docstring).

    Args:
        frames: frame-major ``(B, T, C, H, W)`` with 2D ops (TSN / TAda2D), else ``(B, C, T, H, W)``.
        temporal_kernel: temporal size of ``conv1`` (1, or 3 in SlowFast's later stages).
        mid: ``"2d"``, ``"2+1d"`` or ``"3d"``; tada: which of its parts are TAdaConvs (``TADA_PARTS``).
        rf_ratio, rf_kernels: the route functions (paper: 4, (3, 3)); agg_kernel, agg_pool: Eq. 7.
    """
    expansion = 4

    def __init__(
            self,
            in_chs: int,
            chs: int,
            stride: int = 1,
            downsample: Optional[nn.Module] = None,
            drop_path: float = 0.,
            bn_eps: float = 1e-5,
            frames: bool = False,
            temporal_kernel: int = 1,
            mid: str = "2d",
            tada: Sequence[str] = (),
            rf_ratio: int = 4,
            rf_kernels: Sequence[int] = (3, 3),
            agg_kernel: int = 3,
            agg_pool: str = "avg",
    ):
        super().__init__()
        if mid not in MIDS:
            raise ValueError(f"mid must be one of {MIDS}, got {mid!r}")
        tada = tuple(tada)
        bad = [t for t in tada if t not in TADA_PARTS[mid]]
        if bad:
            raise ValueError(f"tada parts {bad} do not exist in a {mid!r} bottleneck (choose from {TADA_PARTS[mid]})")
        if frames and (mid != "2d" or temporal_kernel != 1):
            raise ValueError("a frame-major (frames=True) bottleneck has 2D convs only: mid='2d', temporal_kernel=1")
        self.frames, self.mid, self.tada = frames, mid, tada
        conv = nn.Conv2d if frames else nn.Conv3d
        norm = (lambda c: nn.BatchNorm2d(c, eps=bn_eps)) if frames else (lambda c: nn.BatchNorm3d(c, eps=bn_eps))
        out_chs = chs * self.expansion

        kt = (temporal_kernel,) if not frames else ()
        self.conv1 = conv(in_chs, chs, kt + (1, 1), padding=tuple(k // 2 for k in kt) + (0, 0), bias=False)
        self.bn1 = norm(chs)
        self.act1 = nn.ReLU(inplace=True)
        self.parts = tuple(name for name, _, _ in _PARTS[mid])
        for name, kind, kernel in _PARTS[mid]:
            self.add_module(f"conv{name}", _mid_conv(kind, kernel, chs, stride, frames, kind in tada))
            if kind in tada:
                self.add_module(f"conv{name}_rf", RouteFuncMLP(chs, rf_ratio, rf_kernels))
            if kind == "2d" and kind in tada:  # Eq. 7 aggregation (its first BN is the conv's BN)
                self.add_module(f"agg{name}", TemporalAggregation(chs, agg_kernel, agg_pool, eps=bn_eps))
            else:
                self.add_module(f"bn{name}", norm(chs))
                self.add_module(f"act{name}", nn.ReLU(inplace=True))
        self.conv3 = conv(chs, out_chs, 1, bias=False)
        self.bn3 = norm(out_chs)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act3 = nn.ReLU(inplace=True)

    @property
    def tada_conv(self) -> Optional[str]:
        """The conv ``tada_zoo.tadafy`` replaces through ``to_tada``: frame-major blocks only (a generic
        wrapper cannot see time in their ``(B * T, C, H, W)`` frames; ``Conv3d`` blocks it wraps itself)."""
        return "conv2" if self.frames else None

    def to_tada(
            self,
            rf_ratio: int = 4,
            rf_kernels: Sequence[int] = (3, 3),
            aggregation: bool = True,
            agg_kernel: int = 3,
            agg_pool: str = "avg",
            cal_dim: str = "cin",
    ) -> "Bottleneck":
        """This block with a TAda ``"2d"`` middle and the same weights, equal to it at init (``bn2``
        becomes ``agg2.norm``; for ``tada_zoo.tadafy``)."""
        if "2d" in self.tada:
            return self
        if not aggregation or cal_dim != "cin":
            raise ValueError(
                "a TAda 2D bottleneck (TAda2D) always aggregates and calibrates input channels: "
                f"got aggregation={aggregation}, cal_dim={cal_dim!r}")
        drop_path = self.drop_path.drop_prob if isinstance(self.drop_path, DropPath) else 0.
        block = Bottleneck(
            self.conv1.in_channels, self.conv1.out_channels, self.conv2.stride[-1], self.downsample, drop_path,
            self.bn1.eps, self.frames, self.conv1.kernel_size[0] if not self.frames else 1, self.mid,
            self.tada + ("2d",), rf_ratio, rf_kernels, agg_kernel, agg_pool)
        state = {}
        for k, v in self.state_dict().items():
            k = "agg2.norm." + k[4:] if k.startswith("bn2.") else k
            state[k] = v.reshape(block.get_parameter(k).shape) if k.startswith("conv2.") else v
        missing, unexpected = block.load_state_dict(state, strict=False)
        if unexpected or not all(k.startswith(("conv2_rf.", "agg2.norm_pool.")) for k in missing):
            raise RuntimeError(f"Bottleneck.to_tada: unexpected {unexpected}, missing {missing}")
        return block.to(self.conv1.weight.device, self.conv1.weight.dtype).train(self.training)

    def _part(self, name: str, y: torch.Tensor, clip) -> torch.Tensor:
        """One middle part on ``y`` (flat frames with ``clip = (B, T)``, or ``(B, C, T, H, W)``)."""
        conv, route = getattr(self, f"conv{name}"), getattr(self, f"conv{name}_rf", None)
        if route is None:
            y = conv(y)
        elif self.frames:  # only the route function sees the clip; the frames stay flat
            B, T = clip
            alpha = route(y.reshape((B, T) + y.shape[1:]).transpose(1, 2))  # (B, C, T, 1, 1)
            y = conv.forward_flat(y, alpha.transpose(1, 2).reshape(B * T, -1, 1, 1))
        elif isinstance(conv, TAdaConv2d):
            y = tada_conv2d_ncthw(conv, y, route(y))
        else:
            y = conv(y, route(y))
        agg = getattr(self, f"agg{name}", None)
        if agg is not None:
            return agg.forward_flat(y, clip[1]) if self.frames else agg(y)
        return getattr(self, f"act{name}")(getattr(self, f"bn{name}")(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.frames:
            y = self.act1(self.bn1(self.conv1(x)))
            for name in self.parts:
                y = self._part(name, y, None)
            y = self.drop_path(self.bn3(self.conv3(y)))
            # in place: BN's backward needs its input, not its output, so the sum needs no tensor of its own
            y += x if self.downsample is None else self.downsample(x)
            return self.act3(y)
        frames = x.flatten(0, 1)
        y = self._part("2", self.act1(self.bn1(self.conv1(frames))), x.shape[:2])
        y = self.bn3(self.conv3(y))
        shortcut = frames if self.downsample is None else self.downsample(frames)
        if not isinstance(self.drop_path, nn.Identity):
            # drop path on the clip view: a whole clip is dropped, never single frames
            y = self.drop_path(y.view(x.shape[:2] + y.shape[1:]))
            return self.act3(y + shortcut.view(y.shape))
        y = self.act3(y + shortcut)
        return y.view(x.shape[:2] + y.shape[1:])


def make_stage(
        in_chs: int,
        chs: int,
        depth: int,
        stride: int,
        drop_path_rates: Sequence[float],
        bn_eps: float = 1e-5,
        frames: bool = False,
        **block_args,
) -> nn.Sequential:
    """``depth`` bottlenecks; the first one strides (spatially) and projects the shortcut."""
    out_chs = chs * Bottleneck.expansion
    downsample = None
    if stride != 1 or in_chs != out_chs:
        if frames:
            project = StridedPointwiseConv2d(in_chs, out_chs, 1, stride, bias=False)
            downsample = nn.Sequential(project, nn.BatchNorm2d(out_chs, eps=bn_eps))
        else:
            project = nn.Conv3d(in_chs, out_chs, 1, (1, stride, stride), bias=False)
            downsample = nn.Sequential(project, nn.BatchNorm3d(out_chs, eps=bn_eps))
    return nn.Sequential(*[
        Bottleneck(
            in_chs if j == 0 else out_chs, chs, stride if j == 0 else 1, downsample if j == 0 else None,
            drop_path=drop_path_rates[j], bn_eps=bn_eps, frames=frames, **block_args)
        for j in range(depth)])


def init_weights(model: nn.Module) -> None:
    """Kaiming (fan-out) convs as timm's ResNet; calibration / aggregation keep their identity init."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, TAdaConv2d, TAdaConv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class ResNetBase(StagedVideoMixin, nn.Module):
    """What the ResNet video nets share (TSN / TAda2D's ``VideoResNet``, ``ResNet3d``): their attributes,
    stages ``layer1..`` of bottlenecks after the stem, the pooled head, timm's group matcher."""

    def _init_stages(self, in_chs: int, reduction: int, layers: Sequence[int], widths: Sequence[int],
                     strides: Sequence[int], drop_path_rate: float, bn_eps: float, num_classes: int,
                     global_pool: str, drop_rate: float, extra_in: Sequence[int] = (), per_stage: Sequence[dict] = (),
                     **block_args) -> None:
        """The stages after a stem of ``in_chs`` channels at ``reduction`` (``extra_in``: channels fused into
        each stage's input, SlowFast; ``per_stage``: block arguments of each stage), the head and the init."""
        dpr = drop_path_rates(drop_path_rate, layers)
        self.stage_names = []
        for i, (depth, chs, stride) in enumerate(zip(layers, widths, strides)):
            name = f"layer{i + 1}"
            extra = extra_in[i] if extra_in else 0
            args = dict(block_args, **(per_stage[i] if per_stage else {}))
            self.add_module(name, make_stage(in_chs + extra, chs, depth, stride, dpr[i], bn_eps, **args))
            self.stage_names.append(name)
            in_chs, reduction = chs * Bottleneck.expansion, reduction * stride
            self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=name))
        self.init_pooled_head(in_chs, num_classes, global_pool, drop_rate)
        init_weights(self)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^conv1|bn1", blocks=r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)")
