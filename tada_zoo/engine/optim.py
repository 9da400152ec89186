"""The original's optimizer and learning-rate schedule for our models.

``param_groups`` gives every trainable parameter the learning-rate multiplier and weight decay
the original ``construct_optimizer`` gives it; ``lr_at`` is ``get_lr_at_epoch``;
``StepSchedule`` sets ``lr x multiplier`` before every step, as ``runs/train.py`` does.
tests/test_recipes.py compares all three with the original's recorded output for every
released config, parameter by parameter and step by step.
"""
import math
from typing import Dict, List

import torch
import torch.nn as nn
from timm.models import group_parameters
from timm.optim import create_optimizer_v2

__all__ = ["param_groups", "build_optimizer", "lr_at", "StepSchedule"]


def _flat_rule(name: str, is_bn: bool, is_head: bool, r) -> tuple:
    """(lr multiplier, weight decay) by the original's name rules (layer_decay 1).

    They test words in the original names: route function ``rf``, ``bn`` (the original names
    every BatchNorm so; ours are found by type), ``norm``, ``bias``; our names keep ``rf``,
    ``norm`` and ``bias`` where the original has them (so a LayerNorm not named ``norm``, like
    ConvNeXt's downsampling one, is decayed as in the original). The classifier is found by module."""
    reduce_w, reduce_b = (5.0, 10.0) if r.lr_reduce else (1.0, 1.0)
    if "rf" in name:
        if is_bn:
            return 1.0, r.norm_weight_decay
        return (reduce_b, 0.0) if "bias" in name else (reduce_w, r.weight_decay)
    if "embd" in name or "cls_token" in name:
        return 1.0, 0.0
    if is_bn or "norm" in name:
        return 1.0, r.norm_weight_decay
    if is_head:
        return (reduce_b, 0.0) if "bias" in name else (reduce_w, r.weight_decay)
    return (1.0, 0.0) if "bias" in name else (1.0, r.weight_decay)


def _core_ndim(p: torch.Tensor) -> int:
    """Dims without timm's leading 1s: ``cls_token`` (1, 1, C) is the original's (C,)."""
    shape = list(p.shape)
    while len(shape) > 1 and shape[0] == 1:
        shape.pop(0)
    return len(shape)


def _layer_ids(model: nn.Module) -> Dict[str, int]:
    """timm's layer ids (the model's ``group_matcher``: stem 0, block i i + 1, final norm last)."""
    if not hasattr(model, "group_matcher"):
        raise ValueError(f"layer-wise learning-rate decay needs a model with group_matcher(); "
                         f"{type(model).__name__} has none: set --layer-decay 1")
    return group_parameters(model, model.group_matcher(coarse=False), reverse=True)


def param_groups(model: nn.Module, r) -> List[dict]:
    """One group per (multiplier, weight decay): ``params``, ``names``, ``lr_mult``, ``weight_decay``.

    ``r`` holds the recipe values (a resolved ``TrainConfig``)."""
    head = {id(p) for p in model.get_classifier().parameters()} if hasattr(model, "get_classifier") else set()
    bn = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in m.parameters()}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if r.layer_decay < 1.0:
        ids = _layer_ids(model)
        head_names = {n for n, p in named if id(p) in head}
        top = max(i for n, i in ids.items() if n not in head_names)  # final norm and head: x1
    groups: Dict[tuple, dict] = {}
    for name, p in named:
        if r.layer_decay < 1.0:
            mult = r.layer_decay ** (top - (top if id(p) in head else ids.get(name, top)))
            mult *= r.new_params_mult if any(s in name for s in r.new_params) else 1.0
            mult *= r.head_lr_mult if id(p) in head and r.head_lr_mult > 1 else 1.0
            wd = 0.0 if _core_ndim(p) == 1 or name.endswith(".bias") else r.weight_decay
        else:
            mult, wd = _flat_rule(name, id(p) in bn, id(p) in head, r)
        group = groups.setdefault((mult, wd), dict(params=[], names=[], lr_mult=mult, weight_decay=wd))
        group["params"].append(p)
        group["names"].append(name)
    return list(groups.values())


def build_optimizer(model: nn.Module, r) -> torch.optim.Optimizer:
    """timm's optimizer over ``param_groups``; each group keeps its ``lr_mult`` for the schedule.
    timm's ``sgd`` is nesterov SGD (the original's NESTEROV true), ``momentum`` plain momentum SGD."""
    groups = [{k: v for k, v in g.items() if k != "names"} for g in param_groups(model, r)]
    opt = r.opt.lower()
    if opt in ("sgd", "nesterov", "momentum"):
        return create_optimizer_v2(groups, opt="sgd" if r.nesterov else "momentum", lr=r.lr,
                                   weight_decay=r.weight_decay, momentum=r.momentum)
    return create_optimizer_v2(groups, opt=r.opt, lr=r.lr, weight_decay=r.weight_decay)


def lr_at(epoch: float, r) -> float:
    """The learning rate of multiplier 1 at fractional ``epoch`` (the original's get_lr_at_epoch)."""
    def cosine(e: float) -> float:
        offset = r.warmup_epochs if r.sched == "cosine_v2" else 0.0
        return r.min_lr + (r.lr - r.min_lr) * (math.cos(math.pi * (e - offset) / (r.epochs - offset)) + 1.0) * 0.5

    if epoch < r.warmup_epochs:
        return r.warmup_lr + epoch * (cosine(r.warmup_epochs) - r.warmup_lr) / r.warmup_epochs
    return cosine(epoch)


class StepSchedule:
    """Sets every group's ``lr = lr_at(step / steps_per_epoch) x lr_mult`` before each step.

    Stateless: the learning rate is a function of the step and the resolved recipe, so a
    resumed run follows the recipe it was resumed with, and what the header prints is what runs."""

    def __init__(self, optimizer: torch.optim.Optimizer, r, steps_per_epoch: int):
        self.optimizer, self.r, self.steps_per_epoch = optimizer, r, steps_per_epoch
        self.step_update(0)

    def step_update(self, num_updates: int) -> None:
        lr = lr_at(num_updates / self.steps_per_epoch, self.r)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
