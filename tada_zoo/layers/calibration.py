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

from .tadaconv import check_video

__all__ = ["RouteFuncMLP", "LearnableCalibration"]


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
            self.a = nn.Conv1d(c_in, hidden, kernels[0], padding=kernels[0] // 2)
            self.bn = nn.BatchNorm1d(hidden, eps=bn_eps, momentum=bn_mmt)
            self.act = nn.ReLU(inplace=True)
        else:
            hidden = c_in
            self.a = self.bn = self.act = None
        self.b = nn.Conv1d(hidden, out_channels, kernels[-1], padding=kernels[-1] // 2, bias=False)
        nn.init.zeros_(self.b.weight)  # alpha == 1 at init

    def calibration(self, v: torch.Tensor) -> torch.Tensor:
        """Frame descriptors ``(B, C, T)`` -> ``alpha`` ``(B, C_out, T)``."""
        if self.g is not None:
            g = self.g(v.mean(2)).unsqueeze(-1)
            v = v + g if self.local_context else g.expand_as(v)
        if self.a is not None:
            v = self.act(self.bn(self.a(v)))
        return self.b(v) + 1

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x, self.c_in, "RouteFuncMLP input", channel_dim=2)
        alpha = self.calibration(x.mean((3, 4)).transpose(1, 2))
        return alpha.transpose(1, 2)[..., None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x, self.c_in, "RouteFuncMLP input")
        return self.calibration(x.mean((3, 4)))[..., None, None]


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
