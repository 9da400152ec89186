"""timm's model API, written once for every family (``VideoModelMixin``), plus the ResNet nets' stem/stage layout.

A family defines a few hooks that say how its network is walked, level by level (stages or
blocks); the mixin turns them into ``forward_features``, ``forward_intermediates``,
``prune_intermediate_layers``, grad checkpointing and the classifier accessors:

- ``_embed(x)``: input checks and stem -> the state the levels pass on;
- ``_num_levels()`` and ``_run_level(i, h)``: the levels, in order;
- ``_level_maps(h, norm)``: the ``(B, C, T, H, W)`` maps of one level (one; SlowFast: slow, fast);
- ``_output(h)``: what ``forward_features`` returns; ``_prune(keep)``: drop levels after ``keep``;
- class attributes ``stem_is_level`` (the stem's map is level 0 of ``feature_info``),
  ``maps_per_level`` and ``classifier_name`` (the classifier's attribute path).
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.models import checkpoint_seq
from timm.models._features import FeatureGetterNet, feature_take_indices

__all__ = ["VideoModelMixin", "StagedVideoMixin", "VideoFeatureDictNet", "check_output_fmt", "drop_path_rates"]


# video layouts of the feature maps; timm's 2D names (what FeatureGetterNet passes) mean their video analogue
_CHANNELS_LAST = {"NCTHW": False, "NCHW": False, "NTHWC": True, "NHWC": True}


def check_output_fmt(output_fmt: str) -> bool:
    """True for channels-last maps: ``'NCTHW'`` (or timm's ``'NCHW'``) is ``(B, C, T, H, W)``,
    ``'NTHWC'`` (or ``'NHWC'``) ``(B, T, H, W, C)``; timm's token formats do not apply to video maps."""
    fmt = getattr(output_fmt, "value", output_fmt)  # timm's Format enum
    if fmt not in _CHANNELS_LAST:
        raise ValueError(f"output_fmt must be 'NCTHW' (alias 'NCHW') or 'NTHWC' (alias 'NHWC') for video "
                         f"feature maps, got {fmt!r}")
    return _CHANNELS_LAST[fmt]


def drop_path_rates(rate: float, depths: Sequence[int]) -> List[List[float]]:
    """Stochastic depth, linearly increasing from 0 to ``rate`` over all blocks (as timm's
    ``torch.linspace`` schedule), split per stage; plain floats, so models build on "meta"."""
    n = sum(depths)
    rates = [rate * b / max(n - 1, 1) for b in range(n)]
    starts = [sum(depths[:i]) for i in range(len(depths))]
    return [rates[s:s + d] for s, d in zip(starts, depths)]


def _channels_last(m):
    """``(B, C, T, H, W)`` -> ``(B, T, H, W, C)``; a ``(map, prefix tokens)`` pair keeps its tokens."""
    if isinstance(m, tuple):
        return (m[0].permute(0, 2, 3, 4, 1),) + m[1:]
    return m.permute(0, 2, 3, 4, 1)


class VideoModelMixin:
    """timm's model API from the family's hooks (module docstring)."""
    stem_is_level = False
    maps_per_level = 1
    classifier_name = "fc"

    def to(self, *args, **kwargs):
        """``nn.Module.to``; ``memory_format=torch.channels_last_3d`` also takes the 4D weights of the
        2D convolutions (plain ``Module.to`` raises on them): they become ``channels_last``, the
        same layout for the ``(B * T, C, H, W)`` frames they convolve."""
        if kwargs.get("memory_format") is not torch.channels_last_3d:
            return super().to(*args, **kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k != "memory_format"}
        super().to(*args, **kwargs)
        formats = {5: torch.channels_last_3d, 4: torch.channels_last}
        return self._apply(lambda t: t.contiguous(memory_format=formats[t.dim()]) if t.dim() in formats else t)

    def __prepare_scriptable__(self):
        """``torch.jit.script`` calls this first: the forwards are not TorchScript (per-family level
        state, autograd Functions, FX-aware checks), so fail saying what works instead."""
        raise RuntimeError(
            f"{type(self).__name__} does not support torch.jit.script; use torch.jit.trace, torch.export or "
            "ONNX instead (tada_zoo.deploy.export.export_model or `tada-zoo export`, see docs/deploy.md)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for m in self.modules():  # the model and any sub-network / stage that checkpoints itself
            if hasattr(m, "grad_checkpointing"):
                m.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return set()

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_name)

    def _init_attributes(self, num_classes: int, in_chans: int, num_frames: int, drop_rate: float,
                         tada: Sequence[str] = ()) -> None:
        """The attributes timm's API and ours read (``tada``: which convolutions are TAdaConvs)."""
        self.num_classes, self.in_chans, self.num_frames, self.drop_rate = num_classes, in_chans, num_frames, drop_rate
        self.grad_checkpointing = False
        self.tada = tuple(tada)

    def init_pooled_head(self, num_features: int, num_classes: int, global_pool: str, drop_rate: float) -> None:
        """The pooled ``fc`` head of the ResNets: pooling (``forward_head``), dropout, classifier."""
        self.num_features = self.head_hidden_size = num_features
        self.global_pool = global_pool
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A pooled ``fc`` head on ``num_features`` (families with another head override this)."""
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCTHW",
            intermediates_only: bool = False,
            **map_kwargs,
    ) -> Union[list, Tuple[torch.Tensor, list]]:
        """Level outputs as ``(B, C, T, H, W)`` maps (timm's feature API).

        ``indices``: which of the ``len(feature_info)`` levels to return (an int n: the last n);
        ``norm``: the family's final norm applied to them, where it has one; ``output_fmt``:
        ``'NCTHW'`` or channels-last ``'NTHWC'`` (timm's ``'NCHW'`` / ``'NHWC'`` mean the same).
        """
        channels_last = check_output_fmt(output_fmt)
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        offset = int(self.stem_is_level)
        intermediates = []

        def collect(h, level: int) -> None:
            maps = [m for j, m in enumerate(self._level_maps(h, norm, **map_kwargs))
                    if level * self.maps_per_level + j in take_indices]
            intermediates.extend([_channels_last(m) for m in maps] if channels_last else maps)

        h = self._embed(x)
        if offset:
            collect(h, 0)
        last = max_index // self.maps_per_level + 1 - offset if stop_early else self._num_levels()
        for i in range(min(last, self._num_levels())):
            h = self._run_level(i, h)
            collect(h, i + offset)
        if intermediates_only:
            return intermediates
        return self._output(h), intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the levels (and head) after the last wanted one."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        self._prune(max_index // self.maps_per_level + 1 - int(self.stem_is_level))
        if prune_norm and hasattr(self, "norm"):
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor):
        h = self._embed(x)
        for i in range(self._num_levels()):
            h = self._run_level(i, h)
        return self._output(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class VideoFeatureDictNet(FeatureGetterNet):
    """``features_only=True, feature_cls='dict'``: the ``forward_intermediates`` maps keyed by their
    ``feature_info`` module names (timm's ``FeatureDictNet`` re-runs the modules in order, which
    video networks do not allow: their stages pass internal layouts)."""

    def forward(self, x: torch.Tensor) -> dict:
        return dict(zip(self.feature_info.module_name(), super().forward(x)))


class StagedVideoMixin(VideoModelMixin):
    """The ResNet nets: ``stem`` + ``stage_names`` stages + pooled ``fc`` head.

    The model defines ``stem(x)`` (video in, its internal layout out), ``stage_names``,
    ``feature_info`` (stem first), ``num_features``, ``global_pool``, ``head_drop`` and ``fc``;
    ``to_video`` turns the internal layout into ``(B, C, T, H, W)`` (identity for networks
    that work in that layout).
    """
    stem_is_level = True

    def to_video(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        stage = getattr(self, name)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(stage, x)
        return stage(x)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def _num_levels(self) -> int:
        return len(self.stage_names)

    def _run_level(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.stage(self.stage_names[i], x)

    def _level_maps(self, x: torch.Tensor, norm: bool) -> List[torch.Tensor]:
        return [self.to_video(x)]

    def _output(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_video(x)

    def _prune(self, keep: int) -> None:
        for name in self.stage_names[keep:]:
            setattr(self, name, nn.Identity())

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Average over time and space (TSN's consensus), dropout, classifier."""
        if self.global_pool == "avg":
            x = x.mean((2, 3, 4))
        x = self.head_drop(x)
        return x if pre_logits else self.fc(x)
