"""Parameters and GFLOPs in the papers' convention: multiply-accumulates of convs and matmuls."""
import contextlib
from typing import Iterator, Optional, Tuple

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from tada_zoo.models import create_video_model, registered_cfg

__all__ = ["profile_model", "count_params", "count_gmacs", "default_input_shape", "empty_model", "params_on_meta",
           "model_stats", "stats_of"]


def count_params(model: torch.nn.Module) -> int:
    """Learnable parameters (BN running statistics are buffers, so they do not count)."""
    return sum(p.numel() for p in model.parameters())


def default_input_shape(model: torch.nn.Module, frames: Optional[int] = None, size: int = 224) -> Tuple[int, ...]:
    """``(1, C, T, H, W)`` with the model's own clip length unless ``frames`` is given."""
    frames = frames or getattr(model, "num_frames", None) or 8
    return 1, getattr(model, "in_chans", 3), frames, size, size


@torch.no_grad()
def count_gmacs(model: torch.nn.Module, input_shape: Tuple[int, ...]) -> float:
    """GMACs of one forward pass (torch counts 2 FLOPs per multiply-accumulate).

    The input lives on the model's device: a model on ``"meta"`` is counted from shapes
    alone, without computing anything.
    """
    model.eval()
    device = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(input_shape, device=device))
    return counter.get_total_flops() / 2e9


def profile_model(name: str, frames: Optional[int] = None, size: int = 224,
                  num_classes: Optional[int] = None) -> dict:
    kwargs = {} if num_classes is None else dict(num_classes=num_classes)
    model = create_video_model(name, **kwargs)
    shape = default_input_shape(model, frames, size)
    return dict(model=name, input=shape, params=count_params(model), gflops=count_gmacs(model, shape))


PROFILE_SIZE = 224  # spatial size of the params / GFLOPs in the model cards (the papers' convention)


@contextlib.contextmanager
def params_on_meta() -> Iterator[None]:
    """Create parameters and buffers on the meta device (no memory, no init cost); other
    tensors made during ``__init__`` stay real, so code like ``linspace(...).tolist()`` works."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def param(module, name, p):
        if p is not None:
            p = nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)
        register_parameter(module, name, p)

    def buffer(module, name, b, persistent=True):
        register_buffer(module, name, None if b is None else b.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = param, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


def empty_model(name: str, **kwargs) -> nn.Module:
    """The model without weights (meta tensors): enough for configs, params and FLOPs."""
    with params_on_meta():
        return create_video_model(name, **kwargs).eval()


def model_stats(name: str, num_classes: Optional[int] = None) -> dict:
    """Params and GFLOPs (multiply-accumulates) of one view, as ``tada-zoo profile`` reports them:
    ``(1, 3, T, 224, 224)`` with T the frames the weights were trained on (else the model's).
    Counted on meta tensors, so even the largest model costs a fraction of a second (a model
    whose forward needs real data is counted on CPU)."""
    try:
        cfg = registered_cfg(name)
    except ValueError:  # an alias or an architecture without cfgs: the model's own defaults
        cfg = None
    num_classes = num_classes or getattr(cfg, "num_classes", None)
    kwargs = dict(num_classes=num_classes) if num_classes else {}
    return stats_of(name, cfg, empty_model(name, **kwargs), kwargs)


def stats_of(name: str, cfg, model: nn.Module, kwargs: dict, gflops: Optional[float] = None) -> dict:
    """``model_stats`` of an already built (empty) model; ``gflops`` given: not counted again."""
    shape = default_input_shape(model, getattr(cfg, "num_frames", None), PROFILE_SIZE)
    if gflops is not None:
        return dict(params=count_params(model), gflops=gflops, input=list(shape))
    try:
        with torch.device("meta"):
            gmacs = count_gmacs(model, shape)
    except (RuntimeError, NotImplementedError):
        model = create_video_model(name, **kwargs)
        gmacs = count_gmacs(model, shape)
    return dict(params=count_params(model), gflops=round(gmacs, 2), input=list(shape))
