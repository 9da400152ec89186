"""Temporal feature aggregation (paper Eq. 7) and temporal pooling on frame-major tensors."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .tadaconv import check_video

__all__ = ["TemporalAggregation", "temporal_pool", "temporal_sum"]

POOL_TYPES = ("avg", "max", "mix")


def temporal_pool(x: torch.Tensor, kernel_size: int = 3, pool_type: str = "avg") -> torch.Tensor:
    """Stride-1 pooling over time of a frame-major ``(B, T, C, H, W)`` tensor, same length out.

    ``avg`` counts the zero padding like ``AvgPool3d((k, 1, 1), 1, (k // 2, 0, 0))`` (the
    original code), so edge frames are averaged with zeros. ``mix`` is ``avg + max``.
    Viewing the tensor as ``(B, 1, T, C*H*W)`` lets a 2D pool run over time without any
    transpose or copy of the activations.
    """
    if pool_type not in POOL_TYPES:
        raise ValueError(f"pool_type must be one of {POOL_TYPES}, got {pool_type!r}")
    if kernel_size == 1:
        return x if pool_type != "mix" else 2 * x
    if pool_type == "avg":
        return temporal_sum(x, kernel_size).div_(kernel_size)
    flat = x.reshape(x.shape[0], 1, x.shape[1], -1)
    y = F.max_pool2d(flat, (kernel_size, 1), 1, (kernel_size // 2, 0)).view(x.shape)
    return y if pool_type == "max" else y + temporal_sum(x, kernel_size).div_(kernel_size)


def temporal_sum(x: torch.Tensor, kernel_size: int = 3) -> torch.Tensor:
    """Zero-padded sum over ``kernel_size`` frames of ``(B, T, ...)``: ``k * avg_pool`` (count_include_pad).

    Done as shifted adds, which is about twice as fast on CPU as ``avg_pool2d`` on the
    ``(B, 1, T, -1)`` view (a degenerate pooling shape for the library kernels) and works
    for any memory layout of the trailing dims. Callers that normalise the result anyway
    can skip the division (``LN(s / k, eps) == LN(s, k * k * eps)``).
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (same-length pooling), got {kernel_size}")
    T, r = x.shape[1], kernel_size // 2
    if r == 0 or T == 1:
        return x.clone()
    if torch.is_grad_enabled() and x.requires_grad:  # out= is not differentiable
        y = x.clone()
        y[:, 1:] += x[:, :-1]
    else:  # one pass less than clone + add
        y = torch.empty_like(x)
        torch.add(x[:, 1:], x[:, :-1], out=y[:, 1:])
        y[:, 0] = x[:, 0]
    y[:, :-1] += x[:, 1:]
    for s in range(2, min(r, T - 1) + 1):
        y[:, s:] += x[:, :-s]
        y[:, :-s] += x[:, s:]
    return y


class TemporalAggregation(nn.Module):
    """``act(BN1(x) + BN2(pool_k(x)))`` over time (paper Eq. 7, "shortcut + separate BN").

    ``norm_pool`` (BN2) starts at zero, so at init this is ``act(BN1(x))``: the plain
    conv -> BN -> act of the network it was inflated from. ``act_layer=None`` drops the
    activation (TAdaConvV2 aggregates without one).
    """

    def __init__(
            self,
            channels: int,
            kernel_size: int = 3,
            pool_type: str = "avg",
            act_layer=nn.ReLU,
            eps: float = 1e-5,
            momentum: float = 0.1,
    ):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-length pooling), got {kernel_size}")
        if pool_type not in POOL_TYPES:
            raise ValueError(f"pool_type must be one of {POOL_TYPES}, got {pool_type!r}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.pool_type = pool_type
        self.norm = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
        self.norm_pool = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
        nn.init.zeros_(self.norm_pool.weight)
        nn.init.zeros_(self.norm_pool.bias)
        self.act = act_layer(inplace=True) if act_layer is not None else nn.Identity()

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, pool_type={self.pool_type!r}"

    def _forward_folded(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-mode avg aggregation in about half the memory passes (3D-conv networks' speed).

        With running statistics both BNs are per-channel affine maps, and the zero-padded
        average pool is ``(1/k) * sum`` of the time-shifted ``x``, so the whole module is
        ``act(a * x + c * sum_{d != 0} shift_d(x) + b)``.
        """
        def affine(bn):
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            return scale, bn.bias - bn.running_mean * scale

        s1, b1 = affine(self.norm)
        s2, b2 = affine(self.norm_pool)
        s2 = (s2 / self.kernel_size).view(-1, 1, 1, 1)
        y = torch.addcmul((b1 + b2).view(-1, 1, 1, 1), x, s1.view(-1, 1, 1, 1) + s2)
        for d in range(1, min(self.kernel_size // 2, x.shape[2] - 1) + 1):
            y[:, :, d:].addcmul_(x[:, :, :-d], s2)
            y[:, :, :-d].addcmul_(x[:, :, d:], s2)
        return self.act(y)

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` -> same shape."""
        check_video(x, self.channels, "TemporalAggregation input", channel_dim=2)
        pooled = temporal_pool(x, self.kernel_size, self.pool_type)
        y = self.norm(x.flatten(0, 1)) + self.norm_pool(pooled.flatten(0, 1))
        return self.act(y).view(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> same shape, without leaving the layout (3D-conv networks).

        The view ``(B, C, T, H * W)`` gives BatchNorm2d the same per-channel statistics
        and a ``(k, 1)`` pool the same temporal neighbours, with no copy of ``x``.
        """
        check_video(x, self.channels, "TemporalAggregation input")
        if not self.training and self.pool_type == "avg" and self.norm.running_var is not None:
            return self._forward_folded(x)
        flat = x.flatten(3)
        args = ((self.kernel_size, 1), 1, (self.kernel_size // 2, 0))
        if self.kernel_size == 1:
            pooled = flat if self.pool_type != "mix" else 2 * flat
        elif self.pool_type == "avg":
            pooled = F.avg_pool2d(flat, *args)
        elif self.pool_type == "max":
            pooled = F.max_pool2d(flat, *args)
        else:
            pooled = F.avg_pool2d(flat, *args) + F.max_pool2d(flat, *args)
        return self.act(self.norm(flat) + self.norm_pool(pooled)).view(x.shape)
