"""Parameters and GFLOPs in the papers' convention: multiply-accumulates of convs and matmuls."""
import argparse
from typing import Optional, Tuple

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["profile_model", "count_params", "count_gmacs", "create_model"]


def create_model(name: str, **kwargs) -> torch.nn.Module:
    """``timm.create_model`` with an error that lists our models when the name is unknown."""
    arch = name.split(":")[-1].split(".")[0]
    if not name.startswith("hf-hub:") and not timm.is_model(arch):
        import tada_zoo  # noqa: F401  (registers our models)

        if not timm.is_model(arch):
            raise ValueError(f"unknown model {name!r}; tada-zoo models: {', '.join(tada_zoo.list_models())}")
    return timm.create_model(name, **kwargs)


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
    model = create_model(name, **kwargs)
    shape = default_input_shape(model, frames, size)
    return dict(model=name, input=shape, params=count_params(model), gflops=count_gmacs(model, shape))


def register(subparsers) -> None:
    p = subparsers.add_parser("profile", help="parameters and GFLOPs (multiply-accumulates) as in the papers")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--frames", type=int, default=None, help="clip length (default: the model's)")
    p.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    p.add_argument("--num-classes", type=int, default=None, help="classifier size (default: the model's)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    r = profile_model(args.model, args.frames, args.size, args.num_classes)
    print(f"model:  {r['model']}")
    print(f"input:  {'x'.join(map(str, r['input']))}")
    print(f"params: {r['params'] / 1e6:.2f}M ({r['params']:,})")
    print(f"GFLOPs: {r['gflops']:.2f} (multiply-accumulates)")
