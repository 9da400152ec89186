"""timm's classifier API for the networks that end in global pooling and an ``fc`` layer."""
from typing import Optional

import torch
import torch.nn as nn

__all__ = ["FcHeadMixin"]


class FcHeadMixin:
    """``get_classifier`` / ``reset_classifier`` / ``no_weight_decay`` / grad checkpointing.

    The model sets ``num_features``, ``global_pool`` ('avg' or '') and ``fc``.
    """

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return set()

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
