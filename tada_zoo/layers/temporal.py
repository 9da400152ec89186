"""Temporal feature aggregation (paper Eq. 7) and temporal pooling on frame-major tensors."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ._derived import bn_affine, derived
from ._fx import fx_leaf
from .tadaconv import check_video

__all__ = ["TemporalAggregation", "temporal_pool", "temporal_sum", "unflatten_frames"]

POOL_TYPES = ("avg", "max", "mix")


def unflatten_frames(x: torch.Tensor, clip) -> torch.Tensor:
    """Frames ``(B * T, ...)`` -> clips ``(B, T, ...)``, ``(B, T) = clip[:2]`` (``-1`` allowed).

    ``x.unflatten(0, clip[:2])`` as a ``view``: the TorchScript-based ONNX exporter records
    unflatten's sizes as constants, which would fix the batch size of an export.
    """
    return x.view(clip[:2] + x.shape[1:])


@fx_leaf
def temporal_pool(x: torch.Tensor, kernel_size: int = 3, pool_type: str = "avg", time_dim: int = 1) -> torch.Tensor:
    """Stride-1 pooling over time (dim ``time_dim``), same length out, any layout.

    ``avg`` counts the zero padding like ``AvgPool3d((k, 1, 1), 1, (k // 2, 0, 0))`` (the
    original code), so edge frames are averaged with zeros. ``mix`` is ``avg + max``.
    Frame-major ``(B, T, C, H, W)`` uses ``time_dim=1``, ``(B, C, T, H, W)`` ``time_dim=2``.
    """
    if pool_type not in POOL_TYPES:
        raise ValueError(f"pool_type must be one of {POOL_TYPES}, got {pool_type!r}")
    if kernel_size == 1:
        return x if pool_type != "mix" else 2 * x
    if pool_type == "avg":
        return temporal_sum(x, kernel_size, time_dim).div_(kernel_size)
    # max: a (k, 1) 2D pool over the view (outer, 1, T, inner) needs no transpose or copy
    flat = x.reshape(-1, 1, x.shape[time_dim], x.shape[time_dim + 1:].numel())  # -1: the batch stays symbolic in exports
    y = F.max_pool2d(flat, (kernel_size, 1), 1, (kernel_size // 2, 0)).view(x.shape)
    return y if pool_type == "max" else y + temporal_sum(x, kernel_size, time_dim).div_(kernel_size)


@fx_leaf
def temporal_sum(x: torch.Tensor, kernel_size: int = 3, time_dim: int = 1) -> torch.Tensor:
    """Zero-padded sum over ``kernel_size`` frames along ``time_dim``: ``k * avg_pool`` (count_include_pad).

    Done as shifted adds, which is about twice as fast on CPU as ``avg_pool2d`` on a
    ``(B, 1, T, -1)`` view (a degenerate pooling shape for the library kernels) and works
    for any memory layout of the trailing dims. Callers that normalise the result anyway
    can skip the division (``LN(s / k, eps) == LN(s, k * k * eps)``).
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (same-length pooling), got {kernel_size}")
    T, r = x.shape[time_dim], kernel_size // 2
    if r == 0 or T == 1:
        return x.clone()
    if torch.onnx.is_in_onnx_export():
        return _padded_shift_sum(x, r, time_dim)
    compiled = torch.compiler.is_compiling() or torch.jit.is_tracing()
    if torch.is_grad_enabled() and x.requires_grad and not compiled:
        return _TemporalSum.apply(x, kernel_size, time_dim)
    return _shift_sum(x, r, time_dim, inplace_ok=not compiled)


class _TemporalSum(torch.autograd.Function):
    """``temporal_sum`` under autograd: the zero-padded box sum is its own adjoint, so the
    gradient is the same sum of the output gradient. Recording the shifted in-place adds
    instead would make autograd copy the whole output back for every one of them."""

    @staticmethod
    def forward(ctx, x, kernel_size, time_dim):
        ctx.kernel_size, ctx.time_dim = kernel_size, time_dim
        return _shift_sum(x, kernel_size // 2, time_dim)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return _shift_sum(grad, ctx.kernel_size // 2, ctx.time_dim), None, None


def _shift_sum(x: torch.Tensor, r: int, time_dim: int, inplace_ok: bool = True) -> torch.Tensor:
    """The shifted adds of ``temporal_sum`` (``r >= 1``) on ``x`` that autograd does not record."""
    T = x.shape[time_dim]
    if T == 1:
        return x.clone()

    def frames(t: torch.Tensor, start: int, length: int) -> torch.Tensor:
        return t.narrow(time_dim, start, length)

    # torch.compile breaks its graph on an out= view
    if not inplace_ok:
        y = x.clone()
        frames(y, 1, T - 1).add_(frames(x, 0, T - 1))
    else:  # one pass less than clone + add
        y = torch.empty_like(x)
        torch.add(frames(x, 1, T - 1), frames(x, 0, T - 1), out=frames(y, 1, T - 1))
        frames(y, 0, 1).copy_(frames(x, 0, 1))
    frames(y, 0, T - 1).add_(frames(x, 1, T - 1))
    for d in range(2, min(r, T - 1) + 1):
        frames(y, d, T - d).add_(frames(x, 0, T - d))
        frames(y, 0, T - d).add_(frames(x, d, T - d))
    return y


def _padded_shift_sum(x: torch.Tensor, radius: int, time_dim: int, center: bool = True) -> torch.Tensor:
    """Sum of ``x`` shifted by ``-radius..radius`` frames (zero padded; ``center``: with the unshifted ``x``),
    without in-place updates of views, which the TorchScript-based ONNX exporter loses."""
    padded = F.pad(x, (0, 0) * (x.dim() - 1 - time_dim) + (radius, radius))
    shifts = [padded.narrow(time_dim, j, x.shape[time_dim]) for j in range(2 * radius + 1) if center or j != radius]
    y = shifts[0]
    for s in shifts[1:]:
        y = y + s
    return y


@fx_leaf
def _add_shifted(y: torch.Tensor, x: torch.Tensor, scale: torch.Tensor, radius: int, time_dim: int) -> torch.Tensor:
    """``y += scale * x`` shifted by ``d = -radius..radius, d != 0`` frames (zero padded), in place."""
    if torch.onnx.is_in_onnx_export():
        return y + scale * _padded_shift_sum(x, radius, time_dim, center=False)
    T = x.shape[time_dim]
    for d in range(1, min(radius, T - 1) + 1):
        y.narrow(time_dim, d, T - d).addcmul_(x.narrow(time_dim, 0, T - d), scale)
        y.narrow(time_dim, 0, T - d).addcmul_(x.narrow(time_dim, d, T - d), scale)
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

    def _folded_affine(self):
        """Eval-mode BNs and the average folded per channel: ``(a, c, b)`` with the module equal to
        ``act(a * x + c * sum_{d != 0} shift_d(x) + b)`` (the zero-padded average pool is
        ``(1/k) * sum`` of the time-shifted ``x``), each ``(C, 1, 1)``."""
        s1, b1 = bn_affine(self.norm)
        s2, b2 = bn_affine(self.norm_pool)
        c = s2 / self.kernel_size
        return (s1 + c).view(-1, 1, 1), c.view(-1, 1, 1), (b1 + b2).view(-1, 1, 1)

    def _forward_folded(self, x: torch.Tensor, time_dim: int) -> torch.Tensor:
        """Eval-mode avg aggregation as one ``addcmul`` and in-place shifted ``addcmul_``: a few
        passes over ``x`` instead of a pooling kernel (slow on a time axis, docs/performance.md),
        two BNs and an add. The folded affine is kept between
        inference calls (``derived``)."""
        bn1, bn2 = self.norm, self.norm_pool
        a, c, b = derived(self, "folded", self._folded_affine, bn1.weight, bn1.bias, bn1.running_mean,
                          bn1.running_var, bn2.weight, bn2.bias, bn2.running_mean, bn2.running_var)
        if time_dim == 2:  # (B, C, T, H, W): channels one dim further out
            a, c, b = (t.unsqueeze(-1) for t in (a, c, b))
        y = torch.addcmul(b, x, a)
        return self.act(_add_shifted(y, x, c, self.kernel_size // 2, time_dim))

    def _aggregate(self, x: torch.Tensor, time_dim: int) -> torch.Tensor:
        if not self.training and self.pool_type == "avg" and self.norm.running_var is not None:
            return self._forward_folded(x, time_dim)
        pooled = temporal_pool(x, self.kernel_size, self.pool_type, time_dim)
        # BatchNorm2d over a 4D view with channels at dim 1 has the per-channel statistics
        # of the 5D tensor: (B*T, C, H, W) frame-major, (B, C, T, H*W) channel-first
        view = (lambda t: t.flatten(0, 1)) if time_dim == 1 else (lambda t: t.flatten(3))
        return self.act(self.norm(view(x)) + self.norm_pool(view(pooled))).view(x.shape)

    def forward_flat(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Flat frames ``(B * T, C, H, W)``, ``T = num_frames`` -> same shape (no checks).
        ``-1``: the batch stays symbolic in exports."""
        y = self._aggregate(x.view((-1, num_frames) + x.shape[1:]), time_dim=1)
        return y.view(x.shape)

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` -> same shape."""
        check_video(x, self.channels, "TemporalAggregation input", channel_dim=2)
        return self._aggregate(x, time_dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> same shape, without leaving the layout (3D-conv networks)."""
        check_video(x, self.channels, "TemporalAggregation input")
        return self._aggregate(x, time_dim=2)
