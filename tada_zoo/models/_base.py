"""timm's model API shared by the ResNet-family video networks (stem, named stages, ``fc`` head)."""
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from timm.models import checkpoint_seq
from timm.models._features import feature_take_indices

__all__ = ["FcHeadMixin", "StagedVideoMixin", "check_output_fmt"]


def check_output_fmt(output_fmt: str) -> None:
    """Video maps are ``(B, C, T, H, W)``; 'NCHW' is accepted as timm's ``FeatureGetterNet`` passes it."""
    if output_fmt not in ("NCTHW", "NCHW"):
        raise ValueError(f"output_fmt must be 'NCTHW', got {output_fmt!r}")


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


class StagedVideoMixin(FcHeadMixin):
    """Feature API of a network made of ``stem`` + ``stage_names`` stages + pooled ``fc`` head.

    The model defines ``stem(x)`` (video in, its internal layout out), ``stage_names``,
    ``feature_info`` (stem first) and ``head_drop``; ``to_video`` turns the internal layout
    into ``(B, C, T, H, W)`` (identity for networks that work in that layout).
    """

    def to_video(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        stage = getattr(self, name)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(stage, x)
        return stage(x)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCTHW",
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stem and stage outputs as ``(B, C, T, H, W)`` maps (timm's feature API).

        ``indices``: which of the ``len(feature_info)`` levels (stem, stages) to return;
        an int n means the last n.
        """
        check_output_fmt(output_fmt)
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        intermediates = []
        x = self.stem(x)
        if 0 in take_indices:
            intermediates.append(self.to_video(x))
        names = self.stage_names[:max_index] if stop_early else self.stage_names
        for i, name in enumerate(names, start=1):
            x = self.stage(name, x)
            if i in take_indices:
                intermediates.append(self.to_video(x))
        if intermediates_only:
            return intermediates
        return self.to_video(x), intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages (and head) after the last wanted level."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        for name in self.stage_names[max_index:]:
            setattr(self, name, nn.Identity())
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` clip -> last stage map ``(B, num_features, T', H', W')``."""
        x = self.stem(x)
        for name in self.stage_names:
            x = self.stage(name, x)
        return self.to_video(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Average over time and space (TSN's consensus), dropout, classifier."""
        if self.global_pool == "avg":
            x = x.mean((2, 3, 4))
        x = self.head_drop(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
