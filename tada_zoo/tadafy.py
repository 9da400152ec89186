"""``tadafy``: turn an existing video network into a TAda network that starts out equal to it.

TAdaConv is a plug-in (paper Sec. 3.2 and Table 3): take a trained video network, replace
some spatial (or spatio-temporal) convolutions by TAdaConvs whose calibration starts at
``alpha == 1`` and add the temporal aggregation of Eq. 7 whose second BN starts at zero.
The result computes exactly what the input network computed, and fine-tuning can then
learn the temporal calibration. What gets replaced, per kind of module:

* **``nn.Conv3d``** (any network on ``(B, C, T, H, W)``, e.g. torchvision / pytorchvideo
  video nets or our R3D / R(2+1)D / SlowFast baselines): the conv becomes a
  ``TAdaConvAdapter`` = ``RouteFuncMLP`` on the conv's input -> ``TAdaConv2d`` (temporal
  kernel 1) or ``TAdaConv3d`` (temporal kernel > 1) with the conv's weights -> with
  ``aggregation`` a ``TemporalAggregation`` without activation whose first BN is the
  host's BN (moved in), while the host BN is replaced by ``nn.Identity``. The host's
  activation after that BN stays where it is, so the host computes
  ``act(BN(y) + BN_pool(avgpool_t(y)))`` with ``y = TAdaConv(x)``: Eq. 7 exactly.
  The host BN is the module registered right after the conv in the same parent (the
  ``conv -> bn`` order of ``nn.Sequential`` stems and of ``convN`` / ``bnN`` blocks) when
  it is a BatchNorm over the conv's output channels; pass ``norms={conv: bn}`` (full
  module names) where that rule does not hold. With ``aggregation`` and no BN found,
  ``tadafy`` raises rather than guess.
* **Our frame-major blocks** (TSN's ``Bottleneck``, whose ``nn.Conv2d`` runs on
  ``(B * T, C, H, W)`` frames where a generic wrapper cannot see time): any module with a
  ``to_tada(**options)`` method is replaced by what it returns, its TAda version with the
  same weights (a TSN block becomes a TAda2D one). Its ``tada_conv`` attribute names the conv
  that ``include`` is matched against (``None``: the block is walked like any other module).

Requirements of a replaced Conv3d: temporal stride 1 and length-preserving temporal padding
(``dilation * (kt - 1) / 2``), zero padding mode; the calibration has one value per frame.
"""
import re
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from .layers import RouteFuncMLP, TAdaConv2d, TAdaConv3d, TemporalAggregation

__all__ = ["tadafy", "TAdaConvAdapter", "default_include"]


def _conv_padding(conv: nn.Conv3d):
    if conv.padding_mode != "zeros":
        raise ValueError(f"tadafy: only zero-padded convolutions are supported, got padding_mode={conv.padding_mode!r}")
    if conv.padding == "valid":
        return (0, 0, 0)
    if conv.padding == "same":
        total = [d * (k - 1) for k, d in zip(conv.kernel_size, conv.dilation)]
        if any(t % 2 for t in total):
            raise ValueError(f"tadafy: padding='same' with an even kernel {conv.kernel_size} is asymmetric; unsupported")
        return tuple(t // 2 for t in total)
    return tuple(conv.padding)


def _keeps_time(conv: nn.Conv3d) -> bool:
    kt, st, dt = conv.kernel_size[0], conv.stride[0], conv.dilation[0]
    try:
        pt = _conv_padding(conv)[0]
    except ValueError:
        return False
    return st == 1 and 2 * pt == dt * (kt - 1)


def default_include(name: str, module: nn.Module, temporal: bool = True) -> bool:
    """The convolutions ``tadafy`` picks by default: the spatial convolutions of the blocks.

    A ``Conv3d`` with a spatial kernel > 1, temporal stride 1 and length-preserving
    temporal padding, temporal kernel 1 (or any, with ``temporal``), and at least 8 input
    channels: the stem, which sees the RGB / flow frames, is left alone as in the paper.
    """
    if not isinstance(module, nn.Conv3d):
        return False
    kt, kh, kw = module.kernel_size
    return (max(kh, kw) > 1 and (kt == 1 or temporal) and module.in_channels >= 8
            and _keeps_time(module))


class TAdaConvAdapter(nn.Module):
    """What ``tadafy`` puts in place of a ``Conv3d``: same call, ``(B, C, T, H, W)`` in and out.

    ``route`` (RouteFuncMLP on the conv input) -> ``conv`` (TAdaConv2d / TAdaConv3d holding the
    original weights) -> ``agg`` (Eq. 7 aggregation holding the host's BN, no activation) or
    ``None``. Built from the conv (and BN) it replaces; equal to ``conv -> bn`` at init.
    """

    def __init__(
            self,
            conv: nn.Conv3d,
            norm: Optional[_BatchNorm] = None,
            rf_ratio: int = 4,
            rf_kernels: Sequence[int] = (3, 3),
            agg_kernel: int = 3,
            agg_pool: str = "avg",
            cal_dim: str = "cin",
    ):
        super().__init__()
        if not _keeps_time(conv):
            raise ValueError(
                f"tadafy: a TAdaConv needs one calibration per frame, so the conv must keep the "
                f"length of time (temporal stride 1, padding dilation * (kt - 1) / 2); got kernel_size="
                f"{conv.kernel_size}, stride={conv.stride}, padding={conv.padding}, dilation={conv.dilation}")
        if conv.in_channels < rf_ratio:
            raise ValueError(
                f"tadafy: the route function reduces {conv.in_channels} input channels by rf_ratio={rf_ratio} "
                "to nothing; exclude this conv or lower rf_ratio")
        padding = _conv_padding(conv)
        bias = conv.bias is not None
        args = (conv.in_channels, conv.out_channels)
        if conv.kernel_size[0] == 1:
            self.conv = TAdaConv2d(*args, conv.kernel_size[1:], conv.stride[1:], padding[1:], conv.dilation[1:],
                                   conv.groups, bias, cal_dim)
            weight = conv.weight[:, :, 0]
        else:
            self.conv = TAdaConv3d(*args, conv.kernel_size, conv.stride, padding, conv.dilation, conv.groups,
                                   bias, cal_dim)
            weight = conv.weight
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            if bias:
                self.conv.bias.copy_(conv.bias)
        self.route = RouteFuncMLP(
            conv.in_channels, rf_ratio, rf_kernels, out_channels=self.conv.cal_channels)
        self.agg = None
        if norm is not None:
            if norm.num_features != conv.out_channels or not norm.affine or not norm.track_running_stats:
                raise ValueError(
                    f"tadafy: the host norm {norm} must be an affine BatchNorm with running statistics "
                    f"over the conv's {conv.out_channels} output channels")
            self.agg = TemporalAggregation(
                conv.out_channels, agg_kernel, agg_pool, act_layer=None, eps=norm.eps, momentum=norm.momentum)
            self.agg.norm.load_state_dict(norm.state_dict())
        self.to(device=conv.weight.device, dtype=conv.weight.dtype)
        self.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x, self.route(x))
        return y if self.agg is None else self.agg(y)


def _matcher(include, temporal: bool) -> Callable[[str, nn.Module], bool]:
    if include is None:
        return lambda name, module: default_include(name, module, temporal)
    if isinstance(include, str):
        pattern = re.compile(include)
        return lambda name, module: pattern.search(name) is not None
    if callable(include):
        return include
    raise ValueError(f"tadafy: include must be None, a regex string or a callable(name, module), got {include!r}")


def tadafy(
        model: nn.Module,
        include: Union[None, str, Callable[[str, nn.Module], bool]] = None,
        *,
        rf_ratio: int = 4,
        rf_kernels: Sequence[int] = (3, 3),
        aggregation: bool = True,
        agg_kernel: int = 3,
        agg_pool: str = "avg",
        cal_dim: str = "cin",
        temporal: bool = True,
        norms: Optional[Dict[str, str]] = None,
) -> nn.Module:
    """Replace the chosen convolutions of ``model`` by TAdaConvs, in place; returns ``model``.

    The result equals ``model`` at init (``alpha == 1``, zero aggregation BN) and keeps all
    its weights, so it can be fine-tuned (see the module docstring for what is replaced).

    Args:
        include: which convolutions (by ``named_modules`` name): ``None`` = ``default_include``
            (plus every block with a ``to_tada`` method), a regex searched in the conv's
            name (for ``to_tada`` blocks: ``"<block>.<block.tada_conv>"``), or
            ``callable(name, module) -> bool``.
        rf_ratio, rf_kernels: of the route functions (paper: 4, (3, 3)).
        aggregation: add the temporal aggregation of Eq. 7 (``agg_kernel``, ``agg_pool``)
            in place of each conv's BN.
        cal_dim: ``"cin"`` (paper) or ``"cout"`` calibration.
        temporal: the default rule also takes Conv3d with temporal kernel > 1 (TAdaConv3d).
        norms: ``{conv_name: bn_name}`` for convs whose BN is not their next sibling.
    """
    if cal_dim not in ("cin", "cout"):
        raise ValueError(f"tadafy: cal_dim must be 'cin' or 'cout', got {cal_dim!r}")
    modules = dict(model.named_modules())
    for n in [n for pair in (norms or {}).items() for n in pair]:
        if n not in modules:
            raise ValueError(f"tadafy: norms names {n!r}, which is not a module of the model")
    options = dict(rf_ratio=rf_ratio, rf_kernels=tuple(rf_kernels), aggregation=aggregation,
                   agg_kernel=agg_kernel, agg_pool=agg_pool, cal_dim=cal_dim)
    replaced = _Replacer(model, include, _matcher(include, temporal), dict(norms or {}), options).visit("", model)
    if not replaced:
        raise ValueError(
            "tadafy: no convolution was selected (default: Conv3d with a spatial kernel > 1, temporal "
            "stride 1, >= 8 input channels, and blocks with a to_tada method); check `include`")
    return model


class _Replacer:
    """One walk of ``tadafy`` over the model's children: frame-major blocks through their ``to_tada``,
    matched ``Conv3d`` by a ``TAdaConvAdapter`` holding their BN; returns the replaced names."""

    def __init__(self, model: nn.Module, include, match: Callable, norms: Dict[str, str], options: dict):
        self.model, self.include, self.match, self.norms, self.options = model, include, match, norms, options

    def visit(self, prefix: str, module: nn.Module) -> List[str]:
        replaced = []
        children = list(module.named_children())
        for i, (attr, child) in enumerate(children):
            name = f"{prefix}{attr}"
            if getattr(child, "tada_conv", None) is not None and callable(getattr(child, "to_tada", None)):
                if self._block(module, attr, child, name):
                    replaced.append(name)
            elif isinstance(child, nn.Conv3d):
                if self.match(name, child):
                    self._conv(module, attr, child, name, children[i + 1:i + 2], prefix)
                    replaced.append(name)
            else:
                replaced += self.visit(f"{name}.", child)
        return replaced

    def _block(self, parent: nn.Module, attr: str, block: nn.Module, name: str) -> bool:
        if self.include is not None and not self.match(f"{name}.{block.tada_conv}", getattr(block, block.tada_conv)):
            return False
        new = block.to_tada(**self.options)
        setattr(parent, attr, new)
        return new is not block

    def _conv(self, parent: nn.Module, attr: str, conv: nn.Conv3d, name: str, after: list, prefix: str) -> None:
        norm = None
        if self.options["aggregation"]:
            norm_name = self.norms.get(name)
            if norm_name is None and after:
                nxt_attr, nxt = after[0]
                if isinstance(nxt, _BatchNorm) and nxt.num_features == conv.out_channels:
                    norm_name = f"{prefix}{nxt_attr}"
            if norm_name is None:
                raise ValueError(
                    f"tadafy: no BatchNorm follows {name!r} (expected as the next module in its parent); "
                    f"pass norms={{{name!r}: '<its bn>'}}, exclude it, or use aggregation=False")
            norm = self.model.get_submodule(norm_name)
            owner, _, norm_attr = norm_name.rpartition(".")
            setattr(self.model.get_submodule(owner) if owner else self.model, norm_attr, nn.Identity())
        options = {k: v for k, v in self.options.items() if k != "aggregation"}
        setattr(parent, attr, TAdaConvAdapter(conv, norm, **options))
