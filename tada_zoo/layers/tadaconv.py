"""Temporally adaptive convolutions (TAdaConv, ICLR 2022).

Frame ``t`` of a video is convolved with its own weight ``W_t = alpha_t * W_b``: a base
weight shared by all frames, calibrated per channel by ``alpha_t`` (made from the
temporal context by a route function, see ``calibration.py``).

Because the calibration is per channel, it commutes with the convolution:

* ``cin``  (calibrate input channels):  ``(alpha_t * W) * X_t == W * (alpha_t * X_t)``
* ``cout`` (calibrate output channels): ``(alpha_t * W) * X_t == alpha_t * (W * X_t)``

so the default path never builds per-frame weights: it scales the activations and runs
one ordinary convolution over the ``B * T`` frames, costing about what a plain
convolution costs. ``forward_reference`` keeps the paper's literal per-frame grouped
convolution, for tests.

``TAdaConv3d`` (temporal kernels > 1) calibrates each OUTPUT frame's weight over its whole
temporal receptive field, so ``cin`` calibration scales every input frame once per output
frame reading it; it stacks those taps along channels for one 2D convolution instead.

Layouts: the public ``forward`` takes videos ``(B, C, T, H, W)`` and calibrations
``(B, C_cal, T, 1, 1)`` like the original code. Models call ``forward_frames`` on the
frame-major layout ``(B, T, C, H, W)``, where flattening to ``(B * T, C, H, W)`` is free.
"""
import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._fx import fx_check, fx_leaf

__all__ = ["TAdaConv2d", "TAdaConv3d", "check_video", "depthwise_conv3d", "temporal_taps"]

_IntOr = Union[int, Sequence[int]]


@fx_check
def check_video(x: torch.Tensor, channels: int, what: str = "input", channel_dim: int = 1) -> None:
    """Raise a clear error unless ``x`` is a 5D video with ``channels`` channels (skipped by FX tracing)."""
    layout = "(B, C, T, H, W)" if channel_dim == 1 else "(B, T, C, H, W)"
    if not torch.is_tensor(x) or x.dim() != 5:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{what}: expected a 5D video tensor {layout}, got shape {shape}")
    if x.shape[channel_dim] != channels:
        raise ValueError(
            f"{what}: expected {channels} channels at dim {channel_dim} of {layout}, "
            f"got shape {tuple(x.shape)}")


def _spatial(value: _IntOr, name: str, temporal: int) -> Tuple[int, int]:
    """Accept ``k``, ``(kh, kw)`` or the original ``(kt, kh, kw)`` with the temporal part fixed."""
    if isinstance(value, int):
        return value, value
    value = tuple(int(v) for v in value)
    if len(value) == 3:
        if value[0] != temporal:
            raise ValueError(
                f"TAdaConv2d is a spatial convolution: temporal {name} must be {temporal}, "
                f"got {value} (use TAdaConv3d for temporal kernels)")
        value = value[1:]
    if len(value) != 2:
        raise ValueError(f"{name} must be an int, (h, w) or (1, h, w); got {value}")
    return value


def _frame_weights(weight: torch.Tensor, alpha: torch.Tensor, cal_dim: str, groups: int) -> torch.Tensor:
    """``alpha_t * W_b`` per frame: ``weight`` (O, I // g, *k), ``alpha`` (B, C_cal, T, 1, 1)
    -> (B, T, O, I // g, *k)."""
    B, C, T = alpha.shape[:3]
    a = alpha.reshape(B, C, T).transpose(1, 2)  # (B, T, C_cal)
    extra = (None,) * (weight.dim() - 2)
    if cal_dim == "cout":
        return a[(..., None) + extra] * weight
    # input channel i_local of output channel o belongs to group o // (O // groups)
    out_channels, cin_g = weight.shape[:2]
    group = torch.arange(out_channels, device=alpha.device) // (out_channels // groups)
    index = group[:, None] * cin_g + torch.arange(cin_g, device=alpha.device)  # (O, I // g)
    return a[:, :, index][(...,) + extra] * weight


class _InputCalibratedConv2d(torch.autograd.Function):
    """``conv2d(x * alpha, W)`` that keeps no copy of ``x * alpha`` for the backward pass.

    Autograd would save the scaled input (a full activation) for the weight gradient;
    ``x`` is saved by the layers around it anyway, so recomputing ``x * alpha`` in the
    backward pass (one cheap elementwise op) saves an activation per TAdaConv.
    """

    @staticmethod
    def forward(ctx, x, alpha, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, alpha, weight)
        ctx.conv = (stride, padding, dilation, groups, None if bias is None else [bias.shape[0]])
        return F.conv2d(x * alpha, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, alpha, weight = ctx.saved_tensors
        stride, padding, dilation, groups, bias_sizes = ctx.conv
        need_x, need_alpha, need_w, need_b = ctx.needs_input_grad[:4]
        grad_xa, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_out, x * alpha, weight, bias_sizes, list(stride), list(padding), list(dilation),
            False, [0, 0], groups, [need_x or need_alpha, need_w, need_b and bias_sizes is not None])
        grad_x = grad_xa * alpha if need_x else None
        grad_alpha = None
        if need_alpha:  # per (frame, channel) dot products over H * W, without a product tensor (docs/performance.md)
            n, c = x.shape[:2]
            grad_alpha = torch.linalg.vecdot(grad_xa.reshape(n, c, -1), x.reshape(n, c, -1)).view(n, c, 1, 1)
        return grad_x, grad_alpha, grad_w, grad_b, None, None, None, None


@fx_leaf
def _input_calibrated_conv2d(x, alpha, weight, bias, stride, padding, dilation, groups) -> torch.Tensor:
    """``conv2d(x * alpha, W)`` on frames; through ``_InputCalibratedConv2d`` when autograd records
    (one FX node: whether it does is known only at run time)."""
    if torch.is_grad_enabled() and (x.requires_grad or alpha.requires_grad or weight.requires_grad):
        return _InputCalibratedConv2d.apply(x, alpha, weight, bias, stride, padding, dilation, groups)
    return F.conv2d(x * alpha, weight, bias, stride, padding, dilation, groups)


class _DepthwiseConv3d(torch.autograd.Function):
    """Stride-1 "same" depth-wise ``conv3d`` whose input gradient is a forward conv.

    For such a conv the input gradient is the conv of the output gradient with the flipped
    kernel, and oneDNN's forward depth-wise kernel is much faster on CPU than its backward-data
    one (figures in docs/performance.md). The weight gradient is aten's.
    """

    @staticmethod
    def forward(ctx, x, weight, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv3d(x, weight, None, 1, padding, 1, weight.shape[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        groups, padding = weight.shape[0], ctx.padding
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv3d(grad_out, weight.flip((2, 3, 4)), None, 1, padding, 1, groups)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [1, 1, 1], list(padding), [1, 1, 1], False, [0, 0, 0], groups,
                [False, True, False])[1]
        return grad_x, grad_w, None


@fx_leaf
def depthwise_conv3d(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Depth-wise ``conv3d(x, weight)`` (``weight`` ``(C, 1, kt, kh, kw)``, odd sizes), stride 1,
    zero "same" padding, no bias; trains through ``_DepthwiseConv3d`` (one FX node either way)."""
    padding = tuple(k // 2 for k in weight.shape[2:])
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _DepthwiseConv3d.apply(x, weight, padding)
    return F.conv3d(x, weight, None, 1, padding, 1, weight.shape[0])


class _TAdaConvNd(nn.Module):
    """What TAdaConv2d and TAdaConv3d share: arguments, base weight and its init, repr.

    Subclasses say how a size argument becomes their tuple with ``_size(value, name, temporal)``
    (``temporal``: the value a temporal part must have in a spatial convolution).
    """

    def __init__(
            self,
            in_channels: int,
            out_channels: int,
            kernel_size: _IntOr,
            stride: _IntOr = 1,
            padding: _IntOr = 0,
            dilation: _IntOr = 1,
            groups: int = 1,
            bias: bool = False,
            cal_dim: str = "cin",
    ):
        super().__init__()
        if cal_dim not in ("cin", "cout"):
            raise ValueError(f"cal_dim must be 'cin' or 'cout', got {cal_dim!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                f"divisible by groups ({groups})")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = (
            self._size(value, name, temporal) for value, name, temporal in (
                (kernel_size, "kernel_size", 1), (stride, "stride", 1), (padding, "padding", 0),
                (dilation, "dilation", 1)))
        if min(self.kernel_size + self.stride + self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"kernel_size, stride, dilation must be >= 1 and padding >= 0; got kernel_size="
                f"{self.kernel_size}, stride={self.stride}, padding={self.padding}, dilation={self.dilation}")
        self.groups = groups
        self.cal_dim = cal_dim
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    @property
    def cal_channels(self) -> int:
        return self.in_channels if self.cal_dim == "cin" else self.out_channels

    def reset_parameters(self) -> None:
        # same init as nn.Conv2d / nn.Conv3d
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}")
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + f", bias={self.bias is not None}, cal_dim={self.cal_dim!r}"


class TAdaConv2d(_TAdaConvNd):
    """Spatial convolution whose weight is calibrated per frame: ``W_t = alpha_t * W_b``.

    Drop-in for the original ``TAdaConv2d``: same constructor arguments (3-tuples with a
    temporal part of 1/1/0/1 or plain 2D ones) and the same call ``conv(x, alpha)``.
    ``cal_dim="cin"`` takes ``alpha`` of ``in_channels``, ``"cout"`` of ``out_channels``.
    ``bias_alpha`` optionally calibrates the bias per frame (TAdaConvV2).
    The base weight is stored like ``nn.Conv2d``'s, ``(out, in // groups, kh, kw)``.
    """

    _size = staticmethod(_spatial)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], groups: int):
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)

    @fx_check
    def _check(self, x, alpha, bias_alpha, channel_dim):
        check_video(x, self.in_channels, "TAdaConv2d input", channel_dim)
        B, T = (x.shape[0], x.shape[2]) if channel_dim == 1 else x.shape[:2]
        for name, a, channels in (("alpha", alpha, self.cal_channels), ("bias_alpha", bias_alpha, self.out_channels)):
            if channel_dim == 1:
                expected, layout = (B, channels, T, 1, 1), "(B, C, T, 1, 1)"
            else:
                expected, layout = (B, T, channels, 1, 1), "(B, T, C, 1, 1)"
            if a is not None and (not torch.is_tensor(a) or tuple(a.shape) != expected):
                got = tuple(a.shape) if torch.is_tensor(a) else type(a).__name__
                raise ValueError(
                    f"TAdaConv2d {name}: expected shape {expected} {layout} for cal_dim="
                    f"{self.cal_dim!r} on input {tuple(x.shape)}, got {got}")
        if bias_alpha is not None and self.bias is None:
            raise ValueError("TAdaConv2d bias_alpha given, but the convolution has no bias")

    def forward(self, x: torch.Tensor, alpha: torch.Tensor, bias_alpha: Optional[torch.Tensor] = None):
        """``x``: (B, C_in, T, H, W); ``alpha``, ``bias_alpha``: (B, C_cal, T, 1, 1)."""
        self._check(x, alpha, bias_alpha, channel_dim=1)
        y = self.forward_frames(
            x.transpose(1, 2), alpha.transpose(1, 2),
            None if bias_alpha is None else bias_alpha.transpose(1, 2), check=False)
        return y.transpose(1, 2)

    def forward_frames(
            self,
            x: torch.Tensor,
            alpha: torch.Tensor,
            bias_alpha: Optional[torch.Tensor] = None,
            check: bool = True,
    ) -> torch.Tensor:
        """Frame-major layout: ``x`` (B, T, C_in, H, W), ``alpha`` (B, T, C_cal, 1, 1)."""
        if check:
            self._check(x, alpha, bias_alpha, channel_dim=2)
        B, T = x.shape[:2]
        y = self.forward_flat(x.flatten(0, 1), alpha.flatten(0, 1),
                              None if bias_alpha is None else bias_alpha.flatten(0, 1))
        return y.view((B, T) + y.shape[1:])  # not unflatten: see temporal.unflatten_frames

    def forward_flat(
            self,
            x: torch.Tensor,
            alpha: torch.Tensor,
            bias_alpha: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Flat frames: ``x`` (B * T, C_in, H, W), ``alpha`` (B * T, C_cal, 1, 1) -> (B * T, C_out, H', W').

        No checks and no reshapes: for blocks that keep their frames flat, where every
        reshape of the (tiny) calibration is one more dispatched op.
        """
        if self.cal_dim == "cin":
            bias = self.bias if bias_alpha is None else None
            y = _input_calibrated_conv2d(x, alpha, self.weight, bias,
                                         self.stride, self.padding, self.dilation, self.groups)
        else:
            y = self._conv(x, self.weight, None, self.groups)
            if self.bias is None:
                return y * alpha
            bias = self.bias.view(-1, 1, 1) if bias_alpha is None else bias_alpha * self.bias.view(-1, 1, 1)
            return torch.addcmul(bias, y, alpha)  # one pass; keeps the conv output's memory format
        if bias_alpha is not None:
            y = y + bias_alpha * self.bias.view(-1, 1, 1)
        return y

    def frame_weights(self, alpha: torch.Tensor) -> torch.Tensor:
        """The literal per-frame weights ``alpha_t * W_b``: (B, T, C_out, C_in // groups, kh, kw)."""
        return _frame_weights(self.weight, alpha, self.cal_dim, self.groups)

    def forward_reference(self, x: torch.Tensor, alpha: torch.Tensor, bias_alpha: Optional[torch.Tensor] = None):
        """The paper's formulation, for tests: one grouped conv with a weight per frame."""
        self._check(x, alpha, bias_alpha, channel_dim=1)
        B, C, T, H, W = x.shape
        weight = self.frame_weights(alpha).reshape(B * T * self.out_channels, *self.weight.shape[1:])
        bias = None
        if self.bias is not None:
            bias = self.bias.expand(B, T, -1)
            if bias_alpha is not None:
                bias = bias * bias_alpha.reshape(B, -1, T).transpose(1, 2)
            bias = bias.reshape(-1)
        frames = x.transpose(1, 2).reshape(1, B * T * C, H, W)
        y = self._conv(frames, weight, bias, self.groups * B * T)
        return y.view(B, T, self.out_channels, *y.shape[-2:]).transpose(1, 2)


def _triple(value: _IntOr, name: str) -> Tuple[int, int, int]:
    if isinstance(value, int):
        value = (value,) * 3
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"{name} must be an int or (t, h, w); got {value}")
    return value


def temporal_taps(x: torch.Tensor, kernel: int, stride: int, padding: int, dilation: int) -> list:
    """The ``kernel`` input frames each output frame reads, as views of frame-major ``x``.

    ``x``: (B, T, C, H, W) -> ``kernel`` tensors (B, T_out, C, H, W); tap ``j`` of output
    frame ``t`` is input frame ``t * stride - padding + j * dilation`` (zero outside).
    """
    T = x.shape[1]
    t_out = (T + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if padding:
        x = F.pad(x, (0, 0, 0, 0, 0, 0, padding, padding))
    return [x[:, j * dilation: j * dilation + stride * (t_out - 1) + 1: stride] for j in range(kernel)]


class TAdaConv3d(_TAdaConvNd):
    """Spatio-temporal convolution whose weight is calibrated per OUTPUT frame.

    Output frame ``t`` is computed with ``W_t = alpha_t * W_b`` over its whole temporal
    receptive field (all ``kt`` input frames it reads), like the original ``TAdaConv3d``.
    For ``cin`` calibration the input frames must therefore be scaled by the calibration
    of the frame that READS them, which differs per tap, so one ``alpha * x`` does not do:
    the fast path stacks the ``kt`` (scaled) taps along channels and runs one 2D
    convolution with the ``kt * C_in`` channel weight, the same multiply-adds as the
    Conv3d. ``cout`` calibration is exact after a plain Conv3d: ``alpha_t * (W * X)_t``.

    Same constructor as ``nn.Conv3d`` (plus ``cal_dim``), weight stored like its
    ``(O, I // groups, kt, kh, kw)``. Call ``conv(x, alpha)`` with ``x`` (B, C_in, T, H, W)
    and ``alpha`` (B, C_cal, T_out, 1, 1), ``T_out`` the output length (= T for the usual
    temporal stride 1, padding kt // 2). Any stride, padding and dilation work (the
    original supports temporal stride/dilation 1 and padding kt // 2 only).
    """

    @staticmethod
    def _size(value: _IntOr, name: str, temporal: int) -> Tuple[int, int, int]:
        return _triple(value, name)

    def output_frames(self, t: int) -> int:
        """Output length for ``t`` input frames."""
        kt, st, pt, dt = self.kernel_size[0], self.stride[0], self.padding[0], self.dilation[0]
        return (t + 2 * pt - dt * (kt - 1) - 1) // st + 1

    @fx_check
    def _check(self, x, alpha, channel_dim):
        check_video(x, self.in_channels, "TAdaConv3d input", channel_dim)
        B, T = (x.shape[0], x.shape[2]) if channel_dim == 1 else x.shape[:2]
        t_out = self.output_frames(T)
        if t_out < 1:
            raise ValueError(
                f"TAdaConv3d input: {T} frames are too few for temporal kernel {self.kernel_size[0]}, "
                f"padding {self.padding[0]}, dilation {self.dilation[0]}")
        if channel_dim == 1:
            expected, layout = (B, self.cal_channels, t_out, 1, 1), "(B, C_cal, T_out, 1, 1)"
        else:
            expected, layout = (B, t_out, self.cal_channels, 1, 1), "(B, T_out, C_cal, 1, 1)"
        if not torch.is_tensor(alpha) or tuple(alpha.shape) != expected:
            got = tuple(alpha.shape) if torch.is_tensor(alpha) else type(alpha).__name__
            raise ValueError(
                f"TAdaConv3d alpha: expected shape {expected} {layout} for cal_dim={self.cal_dim!r} "
                f"on input {tuple(x.shape)} (T_out = {t_out} output frames), got {got}")

    def forward(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """``x``: (B, C_in, T, H, W); ``alpha``: (B, C_cal, T_out, 1, 1) -> (B, C_out, T_out, H', W')."""
        self._check(x, alpha, channel_dim=1)
        if self.cal_dim == "cout":
            y = F.conv3d(x, self.weight, None, self.stride, self.padding, self.dilation, self.groups) * alpha
            return y if self.bias is None else y + self.bias.view(-1, 1, 1, 1)
        return self.forward_frames(x.transpose(1, 2), alpha.transpose(1, 2), check=False).transpose(1, 2)

    def forward_frames(self, x: torch.Tensor, alpha: torch.Tensor, check: bool = True) -> torch.Tensor:
        """Frame-major layout: ``x`` (B, T, C_in, H, W), ``alpha`` (B, T_out, C_cal, 1, 1)."""
        if check:
            self._check(x, alpha, channel_dim=2)
        if self.cal_dim == "cout":
            return self.forward(x.transpose(1, 2), alpha.transpose(1, 2)).transpose(1, 2)
        B = x.shape[0]
        g, kt = self.groups, self.kernel_size[0]
        taps = temporal_taps(x, kt, self.stride[0], self.padding[0], self.dilation[0])
        t_out = taps[0].shape[1]
        # (B, T_out, g, kt, C_in // g, H, W): each group's channels tap-major, like the weight below
        taps = [(tap * alpha).unflatten(2, (g, -1)) for tap in taps]
        frames = torch.stack(taps, 3).flatten(2, 4).flatten(0, 1) if kt > 1 else taps[0].flatten(2, 3).flatten(0, 1)
        weight = self.weight.transpose(1, 2).flatten(1, 2)  # (O, kt * I // g, kh, kw)
        y = F.conv2d(frames, weight, self.bias, self.stride[1:], self.padding[1:], self.dilation[1:], g)
        return y.view((B, t_out) + y.shape[1:])

    def frame_weights(self, alpha: torch.Tensor) -> torch.Tensor:
        """The literal per-frame weights ``alpha_t * W_b``: (B, T_out, O, I // groups, kt, kh, kw)."""
        return _frame_weights(self.weight, alpha, self.cal_dim, self.groups)

    def forward_reference(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The original formulation, for tests: every output frame's temporal window is
        convolved (grouped conv over ``B * T_out`` windows) with that frame's own weight."""
        self._check(x, alpha, channel_dim=1)
        B, C, T, H, W = x.shape
        kt, st, pt, dt = self.kernel_size[0], self.stride[0], self.padding[0], self.dilation[0]
        t_out = self.output_frames(T)
        span = dt * (kt - 1) + 1
        windows = F.pad(x, (0, 0, 0, 0, pt, pt)).unfold(2, span, st)[..., ::dt]  # (B, C, T_out, H, W, kt)
        windows = windows.permute(0, 2, 1, 5, 3, 4).reshape(1, B * t_out * C, kt, H, W)
        weight = self.frame_weights(alpha).reshape(B * t_out * self.out_channels, *self.weight.shape[1:])
        bias = None if self.bias is None else self.bias.repeat(B * t_out)
        y = F.conv3d(windows, weight, bias, (1,) + self.stride[1:], (0,) + self.padding[1:],
                     (1,) + self.dilation[1:], self.groups * B * t_out)
        return y.view(B, t_out, self.out_channels, *y.shape[-2:]).transpose(1, 2)
