"""Tensors derived from parameters, kept between inference calls while the parameters stay the same.

A forward often needs its weights in another form: reshaped, concatenated, scaled, a
BatchNorm folded in. Computing that form is an op per call whatever the batch size (on a
GPU a kernel launch, on a CPU a dispatch), which at batch 1 costs as much as the work
around it. ``derived`` computes it once and returns the kept tensor while every source
tensor is the same storage at the same version: in-place updates (optimizer steps,
``load_state_dict``, ``copy_`` under ``no_grad``) bump a tensor's version, and ``.to()`` /
``.half()`` give new storage, so the kept value is recomputed then.

It keeps values only where autograd does not record (``torch.no_grad`` or
``torch.inference_mode``), so gradients always flow to the real parameters, and never
while tracing, compiling or exporting (the graph then holds the derivation, not a
constant). Writes through ``.data`` escape version counting, as they escape autograd:
code that edits weights that way between inference calls should call ``clear_derived``.
"""
from typing import Callable

import torch
import torch.nn as nn

__all__ = ["derived", "clear_derived", "bn_affine"]

_ATTR = "_derived_tensors"


def _keeps(sources) -> bool:
    if torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    if torch.onnx.is_in_onnx_export():
        return False
    for t in sources:  # FX proxies, and inference tensors (they have no version counter)
        if not isinstance(t, torch.Tensor) or t.is_inference():
            return False
    return True


def derived(module: nn.Module, name: str, fn: Callable[[], torch.Tensor], *sources: torch.Tensor):
    """``fn()``, kept on ``module`` under ``name`` while no tensor of ``sources`` changes.

    ``sources`` must be every tensor ``fn`` reads (``None`` entries are allowed).
    """
    sources = tuple(t for t in sources if t is not None)
    if not _keeps(sources):
        return fn()
    # the stamp holds the sources themselves: while kept, their storage cannot be freed and its
    # address handed to a new tensor that would then look unchanged
    stamp = tuple((t, t.data_ptr(), t._version) for t in sources)
    kept = module.__dict__.setdefault(_ATTR, {})
    hit = kept.get(name)
    if hit is not None and len(hit[0]) == len(stamp) and all(
            a is b and pa == pb and va == vb for (a, pa, va), (b, pb, vb) in zip(hit[0], stamp)):
        return hit[1]
    value = fn()
    kept[name] = (stamp, value)
    return value


def clear_derived(model: nn.Module) -> None:
    """Forget every kept tensor of ``model`` and its submodules (after writes through ``.data``)."""
    for m in model.modules():
        m.__dict__.pop(_ATTR, None)


def bn_affine(bn: nn.modules.batchnorm._BatchNorm):
    """An eval-mode BatchNorm as the per-channel ``(scale, shift)`` of ``scale * x + shift``."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale
