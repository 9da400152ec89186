"""Parameters and GFLOPs in the papers' convention: multiply-accumulates of convs and matmuls."""
from typing import Optional, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

from tada_zoo.models._builder import create_video_model

__all__ = ["profile_model", "count_params", "count_gmacs", "default_input_shape"]


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
