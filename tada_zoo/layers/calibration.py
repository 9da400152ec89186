"""Calibration generators: ``alpha_t`` for TAdaConv from the temporal context (paper Eq. 4-6).

They work on frame descriptors ``v_t = GAP_s(X_t)`` only, so they cost next to nothing
next to the convolution they calibrate. All are initialised to ``alpha == 1`` so a
TAdaConv starts out as the plain convolution it replaces (paper Sec. 3.2, "Initialization").

Public ``forward`` takes ``(B, C, T, H, W)`` and returns ``(B, C, T, 1, 1)`` like the
original; ``forward_frames`` is the frame-major ``(B, T, C, H, W) -> (B, T, C, 1, 1)``.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.layers.activations import QuickGELU

from ._derived import bn_affine, derived
from ._fx import fx_check, fx_leaf
from .tadaconv import check_video

QuickGELU_SCALE = 1.702  # QuickGELU(x) = x * sigmoid(1.702 x)

__all__ = ["FrameConv1d", "RouteFuncMLP", "LearnableCalibration", "RouteFuncTransformer",
           "route_func_transformer_from_original"]


@fx_check
def _check_input(x: torch.Tensor, channels: int, what: str) -> None:
    check_video(x, channels, what)


@fx_leaf
def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """Frame descriptors ``GAP_s(X)``: ``(B, C, T, H, W)`` -> ``(B, C, T)``, in any memory layout.

    On a channels-last clip H and W are reduced as the middle dims of its contiguous
    ``(B, T, H, W, C)`` view: ``mean((3, 4))`` of the channels-first view strides across
    memory and is some 30x slower on CPU (its gradient, an expand, costs the same either way).
    """
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last_3d):
        return x.mean((3, 4))
    return x.permute(0, 2, 3, 4, 1).mean((2, 3)).transpose(1, 2)


def _calibration_view(out: torch.Tensor, frames_last: bool) -> torch.Tensor:
    """``(B, C, T)`` -> ``(B, C, T, 1, 1)``, or with ``frames_last`` ``(B, T, 1, 1, C)``: the layout
    in which a calibration broadcasts over a channels-last clip's ``(B, T, H, W, C)`` view."""
    out = out.view(out.shape + (1, 1))  # one op, not two unsqueezes
    return out.permute(0, 2, 3, 4, 1) if frames_last else out


class FrameConv1d(nn.Conv1d):
    """``nn.Conv1d`` over the frames of descriptor sequences ``(B, C, T)`` ('same' padding, stride 1).

    One ``conv1d`` call: route functions run on a few frames and channels, where the cost
    of a layer is its number of dispatched ops (on a GPU, kernel launches) rather than its
    arithmetic; a GEMM on stacked temporal windows took ten ops for the same result.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True):
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd ('same' padding), got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class RouteFuncMLP(nn.Module):
    """The paper's calibration generator ``alpha = 1 + F(v_adj + FC(g))`` (Eq. 4-6).

    Args:
        c_in: channels of the calibrated features (and of ``alpha``).
        ratio: reduction ratio ``r`` of the hidden layer.
        kernels: temporal kernel sizes: two of them give the non-linear
            ``conv1d -> BN -> ReLU -> conv1d`` (default ``(3, 3)``); one gives the
            linear single-conv1d ablation of Table 4.
        global_context: add the global descriptor ``FC(GAP_sT(X))`` (Eq. 5).
        local_context: use the frame descriptors; without them ``alpha`` comes from the
            global descriptor alone and is the same for every frame ("Dynamic", Table 6).
        bn_eps, bn_mmt: of the hidden BatchNorm.
        out_channels: channels of ``alpha`` (default ``c_in``); ``cout`` calibration of a
            conv whose output width differs from its input width needs this.
    """

    def __init__(
            self,
            c_in: int,
            ratio: int = 4,
            kernels: Sequence[int] = (3, 3),
            global_context: bool = True,
            local_context: bool = True,
            bn_eps: float = 1e-5,
            bn_mmt: float = 0.1,
            out_channels: Optional[int] = None,
    ):
        super().__init__()
        kernels = tuple(int(k) for k in kernels)
        if len(kernels) not in (1, 2) or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(f"kernels must be one or two odd temporal kernel sizes, got {kernels}")
        self.c_in = c_in
        if not (global_context or local_context):
            raise ValueError("RouteFuncMLP needs global_context or local_context (or both)")
        self.kernels = kernels
        self.local_context = local_context
        out_channels = out_channels or c_in
        self.g = nn.Linear(c_in, c_in) if global_context else None
        if len(kernels) == 2:
            hidden = c_in // ratio
            self.a = FrameConv1d(c_in, hidden, kernels[0])
            self.bn = nn.BatchNorm1d(hidden, eps=bn_eps, momentum=bn_mmt)
            self.act = nn.ReLU(inplace=True)
        else:
            hidden = c_in
            self.a = self.bn = self.act = None
        self.b = FrameConv1d(hidden, out_channels, kernels[-1], bias=False)
        nn.init.zeros_(self.b.weight)  # alpha == 1 at init

    def calibration(self, v: torch.Tensor) -> torch.Tensor:
        """Frame descriptors ``(B, C, T)`` -> ``alpha`` ``(B, C_out, T)``."""
        if self.g is not None:
            g = self.g(v.mean(2)).unsqueeze(-1)
            v = v + g if self.local_context else g.expand_as(v)
        if self.a is not None:
            if self.training or self.bn.running_var is None:
                v = self.act(self.bn(self.a(v)))
            else:  # eval: the BN folded into the conv
                bn = self.bn
                w, b = derived(self, "a_bn", self._folded_a, self.a.weight, self.a.bias, bn.weight, bn.bias,
                               bn.running_mean, bn.running_var)
                v = self.act(F.conv1d(v, w, b, 1, self.a.padding))
        # the "+ 1" as the conv's bias: one op less (``b`` has none)
        one = derived(self, "one", lambda: torch.ones_like(self.b.weight[:, 0, 0]), self.b.weight)
        return F.conv1d(v, self.b.weight, one, 1, self.b.padding)

    def _folded_a(self):
        """Weight and bias of ``bn(a(v))`` with the BN's running statistics (eval)."""
        scale, bias = bn_affine(self.bn)
        if self.a.bias is not None:
            bias = bias + self.a.bias * scale
        return self.a.weight * scale[:, None, None], bias

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x, self.c_in, "RouteFuncMLP input", channel_dim=2)
        alpha = self.calibration(x.mean((3, 4)).transpose(1, 2))
        return alpha.transpose(1, 2)[..., None, None]

    def forward(self, x: torch.Tensor, frames_last: bool = False) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``alpha`` ``(B, C, T, 1, 1)`` like the original, or with
        ``frames_last`` ``(B, T, 1, 1, C)`` (for channels-last clips)."""
        _check_input(x, self.c_in, "RouteFuncMLP input")
        return _calibration_view(self.calibration(spatial_mean(x)), frames_last)


class LearnableCalibration(nn.Module):
    """Input-independent calibration of Table 6 ("Learnable"): ``alpha = 1 + w``.

    ``num_frames=None`` shares one ``w`` over time; with ``num_frames`` each frame has
    its own (the temporally varying variant), so the clip length is then fixed.
    """

    def __init__(self, channels: int, num_frames: Optional[int] = None):
        super().__init__()
        self.channels = channels
        self.num_frames = num_frames
        self.weight = nn.Parameter(torch.zeros(channels, num_frames or 1))

    def calibration(self, v: torch.Tensor) -> torch.Tensor:
        B, _, T = v.shape
        if self.num_frames is not None and T != self.num_frames:
            raise ValueError(f"LearnableCalibration was built for {self.num_frames} frames, got T={T}")
        return (1 + self.weight).expand(B, -1, T)

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x, self.channels, "LearnableCalibration input", channel_dim=2)
        B, T = x.shape[:2]
        return self.calibration(x.new_empty(B, self.channels, T)).transpose(1, 2)[..., None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x, self.channels, "LearnableCalibration input")
        B, _, T = x.shape[:3]
        return self.calibration(x.new_empty(B, self.channels, T))[..., None, None]


class RouteFuncTransformer(nn.Module):
    """TAdaConvV2's calibration generator: a temporal conv, then self-attention over frames.

    ``y = QuickGELU(LN(a(GAP_s(X))))``, ``y = y + attn(LN(y))`` with the ``T`` frame
    descriptors as tokens, ``alpha = b(y) (+ 1)`` and, with ``with_bias_cal``, a second
    calibration ``b_bias(y) (+ 1)`` for the per-frame bias (TAdaConvNeXtV2, TAdaFormer).

    Numerics follow the original ``RouteFuncwTransformer`` exactly, because the released
    checkpoints depend on them: ``qkv_proj``'s output channels are laid out as
    ``(3, head_dim, num_heads)`` (channel ``s * c + d * num_heads + h``), the heads are
    written back as ``h * head_dim + d`` and the softmax scale is ``c ** -0.5`` with ``c``
    the full reduced width. The original's Conv3d weights map onto ``a``/``b``/``b_bias``
    (Conv1d over time) and ``qkv_proj``/``attn_out`` (Linear) by dropping size-1 dims.

    Args:
        c_in: channels of the calibrated features (and of ``alpha``).
        ratio: reduction ratio of the hidden width ``c = c_in // ratio``.
        kernels: temporal kernel sizes of ``a`` and ``b``.
        with_bias_cal: also return the bias calibration.
        zero_init_cal: ``b``/``b_bias`` start at zero and 1 is added to their outputs, so
            the calibration starts at identity (TAdaConvNeXtV2). ``False`` returns the raw
            outputs (TAdaFormer, which adds its own identity path).
        head_dim: channels per attention head; ``c`` must be divisible by it.
    """

    def __init__(
            self,
            c_in: int,
            ratio: int = 4,
            kernels: Sequence[int] = (3, 3),
            with_bias_cal: bool = False,
            zero_init_cal: bool = True,
            head_dim: int = 64,
            eps: float = 1e-6,
    ):
        super().__init__()
        kernels = tuple(int(k) for k in kernels)
        if len(kernels) != 2 or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(f"kernels must be two odd temporal kernel sizes, got {kernels}")
        hidden = int(c_in // ratio)
        if hidden % head_dim:
            raise ValueError(
                f"RouteFuncTransformer: reduced width c_in // ratio = {hidden} must be divisible "
                f"by head_dim={head_dim}")
        self.c_in = c_in
        self.hidden = hidden
        self.head_dim = head_dim
        self.num_heads = hidden // head_dim
        self.scale = hidden ** -0.5  # the original scales by the full width, not head_dim
        self.with_bias_cal = with_bias_cal
        self.zero_init_cal = zero_init_cal
        self.a = FrameConv1d(c_in, hidden, kernels[0])
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.act = QuickGELU()
        self.norm_transformer = nn.LayerNorm(hidden, eps=eps)
        self.qkv_proj = nn.Linear(hidden, 3 * hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.b = FrameConv1d(hidden, c_in, kernels[1], bias=False)
        self.b_bias = (FrameConv1d(hidden, c_in, kernels[1], bias=False)
                       if with_bias_cal else None)
        # the "+ 1" as the stacked conv's bias: one op less than adding it (not a weight: no state dict entry)
        self.register_buffer("cal_one", torch.ones((2 if with_bias_cal else 1) * c_in) if zero_init_cal else None,
                             persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # the original: trunc_normal(std=.02) + zero bias, ``b``/``b_bias`` zero when zero_init_cal
        for m in (self.a, self.qkv_proj, self.attn_out, self.b, self.b_bias):
            if m is None:
                continue
            if self.zero_init_cal and m in (self.b, self.b_bias):
                nn.init.zeros_(m.weight)
            else:
                trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def attention(self, y: torch.Tensor) -> torch.Tensor:
        """Self-attention over frames: ``(B, T, c)`` -> ``(B, T, c)``."""
        B, T, c = y.shape
        # (B, T, 3, head_dim, heads) -> (3, B, heads, T, head_dim)
        qkv = self.qkv_proj(y)
        if (isinstance(qkv, torch.fx.Proxy) or torch.jit.is_tracing() or torch.compiler.is_compiling()
                or torch.onnx.is_in_onnx_export() or not qkv.is_contiguous()):
            qkv = qkv.view(B, T, 3, self.head_dim, self.num_heads).permute(2, 0, 4, 1, 3)
        else:  # eager: one strided view of the contiguous projection, not view + permute (two dispatches)
            qkv = qkv.as_strided((3, B, self.num_heads, T, self.head_dim),
                                 (c, T * 3 * c, 1, 3 * c, self.num_heads), qkv.storage_offset())
        q, k, v = qkv.unbind(0)  # one op, not three selects
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.attn_out(out.transpose(1, 2).reshape(B, T, c))  # channel h * head_dim + d

    def _stacked(self, v: torch.Tensor) -> torch.Tensor:
        """Frame descriptors ``(B, C, T)`` -> ``alpha`` and ``bias_alpha`` stacked along channels ``(B, n * C, T)``.

        Few dispatched ops, same function: QuickGELU ``y = silu(s * u) / s`` keeps ``g = silu(s * u)``
        and folds the ``1 / s`` into ``norm_transformer``'s eps (``LN(g / s, eps) == LN(g, s^2 eps)``)
        and the residual add; ``b`` / ``b_bias`` run as one conv whose bias is the ``+ 1``.
        """
        s = QuickGELU_SCALE
        g = F.silu(self.norm(self.a(v).transpose(1, 2)).mul_(s), inplace=True)  # s * QuickGELU, (B, T, c)
        nt = self.norm_transformer
        y = torch.add(self.attention(F.layer_norm(g, nt.normalized_shape, nt.weight, nt.bias, nt.eps * s * s)),
                      g, alpha=1 / s).transpose(1, 2)  # (B, c, T)
        w = self.b.weight if self.b_bias is None else derived(
            self, "cal_weight", lambda: torch.cat([self.b.weight, self.b_bias.weight]), self.b.weight,
            self.b_bias.weight)
        return F.conv1d(y, w, self.cal_one, 1, self.b.padding)

    def calibration(self, v: torch.Tensor):
        """Frame descriptors ``(B, C, T)`` -> ``[alpha]`` or ``[alpha, bias_alpha]``, each ``(B, C, T)``."""
        out = self._stacked(v)
        if self.b_bias is None:
            return [out]
        n = self.b.out_channels  # a Python int: narrow, not chunk, so that FX traces it
        return [out.narrow(1, 0, n), out.narrow(1, n, n)]

    def forward_frames(self, x: torch.Tensor):
        """Frame-major ``(B, T, C, H, W)`` -> ``alpha`` or ``[alpha, bias_alpha]``, each (B, T, C, 1, 1)."""
        check_video(x, self.c_in, "RouteFuncTransformer input", channel_dim=2)
        outs = [o.transpose(1, 2)[..., None, None] for o in self.calibration(x.mean((3, 4)).transpose(1, 2))]
        return outs if self.with_bias_cal else outs[0]

    def forward(self, x: torch.Tensor, frames_last: bool = False):
        """``(B, C, T, H, W)`` -> ``alpha`` or ``[alpha, bias_alpha]``, each (B, C, T, 1, 1) like the
        original, or with ``frames_last`` (B, T, 1, 1, C) (for channels-last clips)."""
        _check_input(x, self.c_in, "RouteFuncTransformer input")
        out = self._stacked(spatial_mean(x))
        if self.b_bias is None:
            return _calibration_view(out, frames_last)
        # both calibrations as views of the stacked output, in as few ops as possible
        out = out.view(out.shape[0], 2, -1, out.shape[2], 1, 1)
        return out.permute(1, 0, 3, 4, 5, 2).unbind(0) if frames_last else out.unbind(1)


_RFT_CONV1D = ("a.weight", "b.weight", "b_bias.weight")
_RFT_LINEAR = ("qkv_proj.weight", "attn_out.weight")


def route_func_transformer_from_original(state_dict: dict, prefix: str = "") -> dict:
    """Reshape the original ``RouteFuncwTransformer``'s Conv3d weights under ``prefix`` to ours.

    ``(O, I, k, 1, 1)`` -> ``(O, I, k)`` for ``a``/``b``/``b_bias``; ``(O, I, 1, 1, 1)`` ->
    ``(O, I)`` for ``qkv_proj``/``attn_out``. Everything else is returned unchanged, so a
    model's ``checkpoint_filter_fn`` can pass a whole state dict with the route functions'
    prefixes; the channel layout is kept (see ``RouteFuncTransformer``).
    """
    out = {}
    for k, v in state_dict.items():
        if k.startswith(prefix) and v.dim() == 5:
            name = k[len(prefix):]
            if name in _RFT_CONV1D:
                v = v.reshape(v.shape[:3])
            elif name in _RFT_LINEAR:
                v = v.reshape(v.shape[:2])
        out[k] = v
    return out
