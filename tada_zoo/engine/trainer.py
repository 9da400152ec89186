"""The training loop: the recipe's optimizer and schedule (``optim``), timm EMA, AMP, DDP, exact
resume, metrics log.

``fit(model, train_set, val_set, cfg)`` runs on any dataset whose items are dicts with
``video`` ``(C, T, H, W)`` and ``label`` (int, or a LongTensor with one label per head),
plus ``index`` for validation; ``tada_zoo.data.VideoDataset`` is one.

Exact resume: every epoch starts by seeding torch / numpy / random from
``(seed, epoch, rank)`` and the sampler shuffles by ``(seed, epoch)``, so an epoch's
batches, augmentations, dropout masks and loader-worker seeds do not depend on what ran
before; together with the optimizer, scheduler, scaler and EMA states in ``last.pt`` a run
stopped after epoch e and resumed continues exactly as if it never stopped. A clip's
augmentation comes from ``(seed, epoch, item)`` (``VideoDataset.seed_augmentation``), so it is the
same in one process and in N: with a model without BatchNorm and no dropout or mixup, N processes
with the same global batch train the weights one process trains (tests/test_multinode.py).
"""
import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.utils import ModelEmaV3, dispatch_clip_grad
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset
from tqdm import tqdm

from tada_zoo._files import write_text
from tada_zoo.data.datasets import ClipBatches, crashed_decodes, worker_crashes_at_next
from tada_zoo.models._helpers import load_pickle

from .checkpoint import atomic_save, get_rng_state, run_metadata, save_safetensors, set_rng_state, unwrap_model
from .distributed import (ShardSampler, all_gather_object, all_reduce_sum, average_buffers, barrier, get_rank,
                          get_world_size, is_distributed, is_main_process, state_hash)
from .metrics import DIVERGED_LOGITS as DIVERGING_LOGITS  # one threshold for train, evaluate, export
from .metrics import collect_scores, compute_metrics, split_heads
from .optim import StepSchedule, build_optimizer, lr_at, param_groups
from .recipes import FINETUNE, LR_SCALING, RECIPES, recipe_for, resolve_recipe_name
from .throughput import Throughput, data_wait_warning

__all__ = ["TrainConfig", "fit", "train_one_epoch", "validate", "resolve_config", "recipe_report", "plot_metrics",
           "seed_everything"]

_RECIPE_KEYS = {"recipe", *set().union(*RECIPES.values())}


@dataclass
class TrainConfig:
    """Every training knob; ``None`` means "take it from the recipe"."""
    model: str = ""  # the name that rebuilds the model (with the tag whose data protocol it uses)
    num_classes: List[int] = field(default_factory=lambda: [400])
    # stored in the checkpoints (run_metadata) so evaluate / predict / extract need no re-typed flags
    model_kwargs: dict = field(default_factory=dict)
    class_names: Optional[List[str]] = None
    protocol: dict = field(default_factory=dict)  # the data-protocol flags that overrode the cfg's
    init: Optional[str] = None  # the weights training started from: "arch.tag", "file NAME", "random", ...
    dataset: dict = field(default_factory=dict)  # what it was trained on: name, video counts, training data
    recipe: Optional[str] = None  # a key of RECIPES (or an alias); None: the tag's own (recipe_for)
    lr_scaling: str = "linear"  # the recipe's lr at another global batch: "linear" or "none"
    finetune: bool = False  # trained weights on one's own data: FINETUNE's schedule unless recipe is given
    epochs: Optional[int] = None
    batch_size: int = 16  # per process
    lr: Optional[float] = None  # for the global batch; default: the recipe's, scaled by lr_scaling
    min_lr: Optional[float] = None
    warmup_epochs: Optional[float] = None
    warmup_lr: Optional[float] = None  # absolute learning rate at the start of the warm-up
    opt: Optional[str] = None
    momentum: Optional[float] = None
    nesterov: Optional[bool] = None
    weight_decay: Optional[float] = None
    norm_weight_decay: Optional[float] = None
    sched: Optional[str] = None  # cosine | cosine_v2 (the original's LR_POLICY)
    layer_decay: Optional[float] = None
    lr_reduce: Optional[bool] = None
    head_lr_mult: Optional[float] = None
    new_params: Optional[Tuple[str, ...]] = None
    new_params_mult: Optional[float] = None
    label_smoothing: Optional[float] = None
    clip_grad: Optional[float] = None
    drop_rate: Optional[float] = None
    drop_path_rate: Optional[float] = None
    mixup: Optional[float] = None
    cutmix: Optional[float] = None
    mixup_prob: float = 1.0
    rand_augment: Optional[str] = None  # None: the model's data protocol (its original config)
    random_erasing: Optional[float] = None
    flip_labels: Optional[str] = None  # "ssv2": the original's SSV2_FLIP label swap on mirrored clips
    ema: Optional[bool] = None
    ema_decay: Optional[float] = None
    amp: str = "none"  # none | bf16 | fp16
    compile: bool = False
    sync_bn: bool = False
    workers: int = 2
    seed: int = 0
    output: Optional[str] = None
    resume: Optional[str] = None  # path to last.pt; "auto" = output/last.pt if present
    eval_every: int = 1
    max_steps_per_epoch: Optional[int] = None  # debugging: cut epochs short
    drop_last: bool = True  # the original's: each epoch's incomplete last batch is left out (and counted)
    progress: bool = True
    stop_after_epoch: Optional[int] = None  # tests: simulate a kill after this epoch
    sources: dict = field(default_factory=dict)  # resolve_config: where each value came from


def resolve_config(cfg: TrainConfig, global_batch: Optional[int] = None) -> TrainConfig:
    """Fill every ``None`` from the recipe (the tag's own unless ``cfg.recipe`` names one) and
    record in ``sources`` where each value came from. The recipe's learning rate, given for its
    global batch, is scaled to ``global_batch`` by ``cfg.lr_scaling``; a learning rate other than
    the recipe's (scaled or given) scales the warm-up start and the final learning rate with it,
    so the schedule keeps its shape (at the recipe's own batch, every value is the original's)."""
    if cfg.sources:  # resolved already
        return cfg
    if cfg.lr_scaling not in LR_SCALING:
        raise ValueError(f"--lr-scaling must be one of {', '.join(LR_SCALING)}, got {cfg.lr_scaling!r}")
    name, why = (cfg.recipe, "--recipe") if cfg.recipe else recipe_for(cfg.model)
    name = resolve_recipe_name(name)
    recipe = dict(RECIPES[name])
    finetune = cfg.finetune and not cfg.recipe
    if finetune:
        recipe.update(epochs=FINETUNE["epochs"], warmup_epochs=FINETUNE["warmup_epochs"],
                      **{k: recipe[k] * FINETUNE["lr_mult"] for k in ("lr", "warmup_lr", "min_lr")})
    out = dataclasses.replace(cfg, recipe=name)
    sources = dict(cfg.sources, recipe=why + (", fine-tune schedule (FINETUNE)" if finetune else ""))
    for f in dataclasses.fields(out):
        if f.name in recipe and f.name != "lr":
            if getattr(out, f.name) is None:
                setattr(out, f.name, recipe[f.name])
                tuned = finetune and f.name in ("epochs", "warmup_epochs")
                sources[f.name] = f"fine-tune default (recipe {name}: {RECIPES[name][f.name]:g})" if tuned \
                    else f"recipe {name}"
            else:
                sources.setdefault(f.name, "flag")
    out.new_params = tuple(out.new_params)
    global_batch = global_batch or cfg.batch_size * get_world_size()
    if out.lr is None:
        scale = global_batch / recipe["batch"] if cfg.lr_scaling == "linear" else 1.0
        out.lr = recipe["lr"] * scale
        sources["lr"] = (f"recipe {name}: {RECIPES[name]['lr']:g} at global batch {recipe['batch']}"
                         + (f", x {FINETUNE['lr_mult']:g} (fine-tune default)" if finetune else "")
                         + (f", x {global_batch}/{recipe['batch']} (--lr-scaling linear)" if scale != 1.0 else ""))
    else:
        sources.setdefault("lr", "flag")
    factor = out.lr / recipe["lr"]
    if factor != 1.0:  # the whole curve moves with the peak: warm-up start and end in proportion
        for key in ("warmup_lr", "min_lr"):
            if getattr(cfg, key) is None:
                setattr(out, key, recipe[key] * factor)
                sources[key] = f"recipe {name}: {recipe[key]:g} x lr / the recipe's lr ({factor:.4g})"
    out.sources = sources
    return out


def recipe_report(model: nn.Module, cfg: TrainConfig, steps_per_epoch: int, **extra) -> dict:
    """What ``recipe.json`` holds (``train --dry-run`` and every run folder): every resolved value
    with its source, the parameter groups (names, base learning rate x multiplier, weight decay)
    and the learning rate of multiplier 1 before every step ``k = epoch x N + iteration``."""
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name in _RECIPE_KEYS}
    values.update(lr=cfg.lr, batch_size=cfg.batch_size, global_batch=cfg.batch_size * get_world_size(),
                  lr_scaling=cfg.lr_scaling, mixup_prob=cfg.mixup_prob, drop_last=cfg.drop_last, **extra)
    groups = [dict(params=g["names"], lr=cfg.lr * g["lr_mult"], lr_mult=g["lr_mult"], weight_decay=g["weight_decay"])
              for g in param_groups(model, cfg)]
    lrs = [lr_at(k / steps_per_epoch, cfg) for k in range(cfg.epochs * steps_per_epoch)]
    return dict(model=cfg.model, recipe=_plain(values), sources=cfg.sources, steps_per_epoch=steps_per_epoch,
                param_groups=groups, lr_per_step=lrs)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def autocast_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    if amp == "none":
        return None
    if amp not in ("bf16", "fp16"):
        raise ValueError(f"--amp must be none, bf16 or fp16, got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("--amp fp16 needs a GPU; use --amp bf16 on CPU")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _loss_fn(logits: torch.Tensor, target: torch.Tensor, heads: Sequence[int], smoothing: float) -> torch.Tensor:
    if target.is_floating_point():  # mixup / cutmix soft targets (single head)
        return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
    target = target.reshape(len(target), -1)
    return sum(F.cross_entropy(lg, target[:, i], label_smoothing=smoothing)
               for i, lg in enumerate(split_heads(logits, heads)))


def plot_metrics(metrics_file: Path, out_file: Path) -> Optional[Path]:
    """Loss and accuracy curves from ``metrics.jsonl`` (``tada_zoo.plots.plot_curves``: markers,
    so one epoch shows); skipped (with a note) without matplotlib."""
    from tada_zoo.plots import plot_curves

    rows = [r for r in map(_row, Path(metrics_file).read_text().splitlines()) if r]
    try:
        return plot_curves(rows, out_file)
    except ImportError as e:
        print(f"skipping the curves plot: {e}")
        return None


def _row(line: str) -> dict:
    """One metrics.jsonl line; a line cut short by a killed run (or garbage) is ``{}``."""
    try:
        row = json.loads(line)
    except ValueError:
        return {}
    return row if isinstance(row, dict) else {}


class _MetricsLog:
    """JSON lines, appended by rank 0; a resumed run drops lines of epochs it will redo. Epochs are
    counted from 1 there, as on the console (``start_epoch``: the 0-based index the run goes on from)."""

    def __init__(self, path: Path, start_epoch: int):
        self.path = path
        if is_main_process() and path.exists():
            keep = [l for l in path.read_text().splitlines() if _row(l).get("epoch", start_epoch + 1) <= start_epoch]
            path.write_text("".join(l + "\n" for l in keep))

    def write(self, **row) -> None:
        if is_main_process():
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")


def _loader(dataset, cfg: TrainConfig, train: bool, drop_last: bool) -> DataLoader:
    """Training: equal shards (every rank takes the same number of DDP steps); validation: each item once."""
    if isinstance(dataset, IterableDataset):  # WebDataset shards deal themselves out to ranks and workers
        dataset.batch_size = cfg.batch_size  # training: whole batches, as many on every rank
        per_item = cfg.batch_size if train else max(1, cfg.batch_size // dataset.num_clips)  # eval: videos
        loader = DataLoader(dataset, batch_size=per_item, num_workers=cfg.workers,
                            pin_memory=torch.cuda.is_available())
        return loader if train else ClipBatches(loader, cfg.batch_size)
    sampler = DistributedSampler(dataset, num_replicas=get_world_size(), rank=get_rank(), shuffle=True,
                                 seed=cfg.seed, drop_last=drop_last) if train else ShardSampler(len(dataset))
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                      drop_last=drop_last, pin_memory=torch.cuda.is_available())


@dataclass
class _Run:
    """What one training run holds between its epochs."""
    cfg: TrainConfig
    model: nn.Module
    train_model: nn.Module  # the model under DDP / torch.compile
    device: torch.device
    train_loader: DataLoader
    val_loader: Optional[DataLoader]
    steps_per_epoch: int
    optimizer: torch.optim.Optimizer
    scheduler: StepSchedule
    scaler: torch.amp.GradScaler
    ema: Optional[ModelEmaV3]
    mixup: Optional[nn.Module]
    amp_dtype: Optional[torch.dtype]
    warned_divergence: bool = False
    warned_data_wait: bool = False
    val_throughput: Optional[Throughput] = None  # of the last validation

    @property
    def heads(self) -> List[int]:
        return list(self.cfg.num_classes)

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model


def _report_last_batch(num_videos: int, per_process: int, cfg: TrainConfig) -> None:
    """Say how many videos ``drop_last`` leaves out of each epoch; refuse an odd last batch for mixup."""
    left = per_process % cfg.batch_size
    mixing = (cfg.mixup or 0) > 0 or (cfg.cutmix or 0) > 0
    if cfg.drop_last:
        dropped = num_videos - (per_process - left) * get_world_size()
        if dropped and is_main_process():
            print(f"each epoch leaves out {dropped} of {num_videos} training videos (the incomplete last batch; "
                  "other ones each epoch, the order is shuffled); --no-drop-last trains on all of them")
    elif mixing and left % 2:
        raise ValueError(f"--no-drop-last with mixup / cutmix: the last batch of each epoch would hold {left} clips "
                         "and mixing pairs them up; choose a --batch-size that leaves an even remainder, or keep "
                         "--drop-last")


def _setup(model: nn.Module, train_set, val_set, cfg: TrainConfig, device: torch.device) -> _Run:
    """Loaders, the recipe's optimizer and schedule, AMP scaler, EMA and mixup for ``fit``."""
    amp_dtype = autocast_dtype(cfg.amp, device)
    model.to(device)
    if cfg.sync_bn and device.type != "cuda":
        raise ValueError("--sync-bn needs GPUs (SyncBatchNorm runs on CUDA tensors); drop it on CPU")
    if cfg.sync_bn and is_distributed():
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    train_loader = _loader(train_set, cfg, train=True, drop_last=cfg.drop_last)
    if len(train_loader) == 0:
        raise ValueError(f"{len(train_set)} training samples give no full batch of {cfg.batch_size} "
                         f"per process on {get_world_size()} processes; lower --batch-size or give --no-drop-last")
    if isinstance(train_set, IterableDataset):
        if is_main_process():
            print(f"shards: {len(train_loader)} batches of {cfg.batch_size} per process and epoch, drawn from "
                  f"{len(train_set.samples)} videos (shard order by seed and epoch, shuffle buffer "
                  f"{train_set.shuffle_buffer})")
    else:
        _report_last_batch(len(train_set), len(train_loader.sampler), cfg)
    steps = len(train_loader) if cfg.max_steps_per_epoch is None else min(len(train_loader), cfg.max_steps_per_epoch)
    optimizer = build_optimizer(model, cfg)
    mixup = None
    if (cfg.mixup or 0) > 0 or (cfg.cutmix or 0) > 0:
        if len(cfg.num_classes) > 1:
            raise ValueError("mixup / cutmix need a single head; set --mixup 0 --cutmix 0")
        from tada_zoo.data import VideoMixup
        mixup = VideoMixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                           switch_prob=0.5, label_smoothing=cfg.label_smoothing, num_classes=cfg.num_classes[0])
    return _Run(cfg=cfg, model=model, train_model=model, device=device, train_loader=train_loader,
                val_loader=_loader(val_set, cfg, train=False, drop_last=False) if val_set is not None else None,
                steps_per_epoch=steps, optimizer=optimizer, scheduler=StepSchedule(optimizer, cfg, steps),
                scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
                ema=ModelEmaV3(model, decay=cfg.ema_decay) if cfg.ema else None, mixup=mixup, amp_dtype=amp_dtype)


def _wrap(run: _Run) -> None:
    """DDP and torch.compile around the model, for the training steps only."""
    if is_distributed():
        run.train_model = nn.parallel.DistributedDataParallel(
            run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    if run.cfg.compile:
        run.train_model = torch.compile(run.train_model)  # batch axis dynamic: a new batch size does not recompile
        run.train_model.register_forward_pre_hook(lambda _, args: torch._dynamo.mark_dynamic(args[0], 0))


# flags a resumed run may change: the schedule from the resumed epoch is a fresh run's with them
_RESUME_MAY_CHANGE = ("epochs", "batch_size", "lr", "min_lr", "warmup_epochs", "warmup_lr", "sched", "weight_decay",
                      "norm_weight_decay", "momentum", "nesterov", "layer_decay", "lr_reduce", "head_lr_mult",
                      "new_params_mult", "clip_grad", "label_smoothing", "mixup", "cutmix", "drop_last", "ema", "amp")
# flags that would make the restored state mean something else (another head, another optimizer's state)
_RESUME_MUST_MATCH = ("num_classes", "opt")


def _check_resume(cfg: TrainConfig, saved: dict, world: int, path: str) -> List[str]:
    """Refuse a flag that changes what the restored state means, in one line naming it; return the
    changed flags a resumed run honours (``--epochs 3 (was 1)``)."""
    for key in _RESUME_MUST_MATCH:
        if key in saved and _plain({key: getattr(cfg, key)})[key] != saved[key]:
            raise ValueError(f"--{key.replace('_', '-')} {_show(getattr(cfg, key))} differs from the run in {path} "
                             f"({_show(saved[key])}); resume with the run's value, or --resume none to start over")
    changed = [f"--{k.replace('_', '-')} {_show(getattr(cfg, k))} (was {_show(saved[k])})"
               for k in _RESUME_MAY_CHANGE if k in saved and _plain({k: getattr(cfg, k)})[k] != saved[k]]
    if saved.get("world_size", world) != world:
        changed.append(f"{world} processes (was {saved['world_size']})")
    return changed


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _restore(run: _Run, state: dict, path: str) -> None:
    """Weights and optimizer state from ``last.pt``; the optimizer's hyper-parameters stay those of
    this run's flags (its learning rates come from the schedule)."""
    try:
        run.model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0].rstrip(":")
        raise ValueError(f"{path} holds the weights of another network than --model {run.cfg.model} ({first}); "
                         "resume with the run's --model and --model-kwargs, or --resume none to start over") from None
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in run.optimizer.param_groups]
    try:
        run.optimizer.load_state_dict(state["optimizer"])
    except ValueError as e:
        raise ValueError(f"{path}: the optimizer state does not fit this run's parameter groups ({e}); resume "
                         "with the run's flags, or --resume none to start over") from None
    for group, own in zip(run.optimizer.param_groups, fresh):
        group.update(own)
    run.scaler.load_state_dict(state["scaler"])
    if run.ema is not None and "ema" in state:
        run.ema.load_state_dict(state["ema"])


def _resume(run: _Run, out: Optional[Path]) -> Tuple[int, dict]:
    """(first epoch, best so far) after restoring ``last.pt`` (``cfg.resume``; "auto": the run folder's)."""
    resume = run.cfg.resume
    if resume == "auto":
        resume = str(out / "last.pt") if out is not None and (out / "last.pt").exists() else None
    if not resume:
        return 0, dict(top1=-1.0, epoch=None)
    state = load_pickle(resume)
    if not isinstance(state, dict) or not {"model", "optimizer", "epoch"} <= set(state):
        raise ValueError(f"{resume} is not a tada-zoo training checkpoint (last.pt); give --resume none "
                         "to start over, or --checkpoint-init FILE to start from its weights")
    saved = dict(state.get("config") or {}, world_size=len(state.get("rng") or [None]))
    changed = _check_resume(run.cfg, saved, get_world_size(), resume)
    _restore(run, state, resume)
    start = state["epoch"] + 1
    run.scheduler.step_update(start * run.steps_per_epoch)  # this run's schedule, from the resumed step
    set_rng_state(state["rng"][min(get_rank(), len(state["rng"]) - 1)])
    if is_main_process():
        print(f"resumed from {resume} at epoch {start + 1}" + (
            f" with {', '.join(changed)}: from there the learning rate is a fresh run's with these values"
            if changed else ""))
    return start, state["best"]


def train_one_epoch(run: _Run, epoch: int) -> dict:
    """One epoch of steps (lr set before each, as the original does); the epoch's metrics row."""
    cfg, device = run.cfg, run.device
    seed_everything(cfg.seed + 1000 * epoch + 100003 * get_rank())
    data = run.train_loader.dataset
    (data.set_epoch if isinstance(data, IterableDataset) else run.train_loader.sampler.set_epoch)(epoch)
    if hasattr(data, "seed_augmentation"):  # a clip's augmentation is the same whichever rank draws it
        data.seed_augmentation(cfg.seed, epoch)
    t0 = time.time()
    run.train_model.train()
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)  # loss x n, n
    skipped_files = set()  # unreadable videos met this epoch (files, not skip events)
    bar = tqdm(total=run.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=not (cfg.progress and is_main_process()), leave=False)
    tp = Throughput(device)  # rank 0's figures are the ones reported
    # the loader is read to its end (a batch past steps_per_epoch, or its StopIteration) as before: a worker
    # must not be left decoding when _batches' crash handling is over (see test_train_faults)
    for step, batch in enumerate(tp.wrap(_batches(run, skipped_files))):
        if step >= run.steps_per_epoch:
            break
        video = batch["video"].to(device, non_blocking=True)
        target = torch.as_tensor(batch["label"]).to(device, non_blocking=True)
        if run.mixup is not None:
            video, target = run.mixup(video, target)
        with torch.autocast(device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
            logits = run.train_model(video)
        loss = _loss_fn(logits.float(), target, run.heads, cfg.label_smoothing)
        _check_divergence(run, loss, logits, epoch, step)
        _step(run, loss, epoch * run.steps_per_epoch + step + 1)
        if isinstance(batch, dict) and batch.get("skipped_files"):
            skipped_files.update(f for names in batch["skipped_files"] for f in names.split("\n") if f)
        loss_sum += torch.stack([loss.detach().double() * len(video), loss.new_tensor(len(video)).double()])
        tp.add(len(video))
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{run.optimizer.param_groups[0]['lr']:.2e}", **tp.postfix())
        bar.update()
    bar.close()
    average_buffers(run.model)
    all_reduce_sum(loss_sum)
    _warn_data_wait(run, tp)
    return dict(type="epoch", epoch=epoch + 1, train_loss=(loss_sum[0] / loss_sum[1]).item(),
                lr=run.optimizer.param_groups[0]["lr"],
                corrupt_skipped=len(set().union(*all_gather_object(skipped_files))), time=time.time() - t0,
                **tp.row())


def _warn_data_wait(run: _Run, tp: Throughput) -> None:
    """Once a run (rank 0): the epoch waited for data more than half the time, and what would help."""
    if run.warned_data_wait or not is_main_process():
        return
    line = data_wait_warning(tp, run.cfg.workers, run.train_loader.dataset, what="training")
    if line:
        run.warned_data_wait = True
        tqdm.write(line)




class _From(torch.utils.data.Sampler):
    """A sampler's order from its ``start``-th index on (the rest of an epoch, after a crash)."""

    def __init__(self, sampler, start: int):
        self.sampler, self.start = sampler, start

    def __iter__(self):
        return iter(list(self.sampler)[self.start:])

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.start)


def _batches(run: _Run, unreadable: set):
    """The epoch's batches. A loader worker killed by its decoder (a SIGSEGV in FFmpeg) is named by the
    video it was reading (``data.crashed_decodes``), which is unreadable from then on; the epoch goes
    on from the next batch with new workers (the death is raised at ``next()``: worker_crashes_at_next)."""
    loader, done = run.train_loader, 0
    with worker_crashes_at_next():
        while True:
            try:
                for batch in loader:
                    done += 1
                    yield batch
                return
            except (RuntimeError, ConnectionError, EOFError):  # the death, or a batch it was still handing over
                dataset = loader.dataset
                crashed = crashed_decodes(getattr(dataset, "marker_dir", None))
                if not crashed:
                    raise
                for video in crashed:
                    dataset.crashed.add(video)
                    unreadable.add(video)
                    tqdm.write(f"warning: decoding {video} crashed a loader worker; it is skipped as unreadable")
                loader = DataLoader(dataset, batch_size=loader.batch_size, num_workers=loader.num_workers,
                                    sampler=_From(run.train_loader.sampler, done * loader.batch_size),
                                    drop_last=loader.drop_last, pin_memory=loader.pin_memory)


def _watch_decoding(train_set, out: Optional[Path]) -> None:
    """Decoding processes name their video in ``out/.decoding``; a video that killed the previous run
    (``--workers 0``: the run itself) is skipped as unreadable now."""
    if out is None or not hasattr(train_set, "marker_dir"):
        return
    markers = out / ".decoding"
    markers.mkdir(parents=True, exist_ok=True)
    crashed = crashed_decodes(markers, remove=False)
    barrier()  # every rank has read the markers before rank 0 removes them
    if is_main_process():
        crashed_decodes(markers)
        for video in crashed:
            print(f"the previous run crashed while decoding {video}: it is skipped as unreadable")
    train_set.crashed.update(crashed)
    train_set.marker_dir = str(markers)


def _check_divergence(run: _Run, loss: torch.Tensor, logits: torch.Tensor, epoch: int, step: int) -> None:
    """Stop at a non-finite loss, warn (once a run) when the logits explode, both naming the step and lr."""
    where = f"epoch {epoch + 1} step {step + 1} (lr {run.optimizer.param_groups[0]['lr']:.3g})"
    hint = f"lower --lr (this run: {run.cfg.lr:g}) or set --clip-grad (e.g. 1.0)"
    if not torch.isfinite(loss):
        raise RuntimeError(f"the loss is {loss.item()} at {where}: training diverged; {hint}")
    peak = logits.detach().abs().max().item()
    if peak > DIVERGING_LOGITS and not run.warned_divergence and is_main_process():
        run.warned_divergence = True
        tqdm.write(f"warning: logits reach {peak:.3g} at {where}: the run is diverging; {hint}")


def _step(run: _Run, loss: torch.Tensor, update: int) -> None:
    """Backward, optimizer step (clipped, scaled), then the lr of the next step and the EMA."""
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.cfg.clip_grad:
        run.scaler.unscale_(run.optimizer)
        dispatch_clip_grad(run.model.parameters(), run.cfg.clip_grad)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step_update(update)
    if run.ema is not None:
        run.ema.update(run.model, step=update)


def validate(run: _Run, num_samples: int) -> dict:
    """Metrics of the (EMA) model on the validation loader, every video once across ranks."""
    shards = getattr(getattr(run.val_loader, "loader", None), "dataset", None)  # ClipBatches over shards
    res = collect_scores(run.eval_model, run.val_loader, num_samples, run.heads, run.device, run.amp_dtype,
                         progress=run.cfg.progress and is_main_process(), desc="val",
                         views_per_video=getattr(shards, "views_per_video", None))
    run.val_throughput = res["throughput"]
    return compute_metrics(res["scores"], res["labels"])


def _save_epoch(run: _Run, out: Path, epoch: int, best: dict, rngs: list, meta: dict) -> None:
    """``last.pt`` (everything an exact resume needs) and ``last.safetensors``; rank 0."""
    state = dict(model=run.model.state_dict(), optimizer=run.optimizer.state_dict(),
                 scheduler=run.scheduler.state_dict(), scaler=run.scaler.state_dict(), epoch=epoch, best=best,
                 rng=rngs, config=_plain(dataclasses.asdict(run.cfg)), metadata=meta)
    if run.ema is not None:
        state["ema"] = run.ema.state_dict()
    atomic_save(state, out / "last.pt")
    save_safetensors(unwrap_model(run.eval_model).state_dict(), out / "last.safetensors",
                     metadata=dict(meta, epoch=str(epoch + 1)))


def fit(model: nn.Module, train_set, val_set=None, cfg: TrainConfig = TrainConfig(),
        device: torch.device = torch.device("cpu")) -> dict:
    """Train ``model`` (already created with its final head), validating every epoch.

    Rank 0 writes ``cfg.output``: ``recipe.json``, ``last.pt`` (full state), ``last.safetensors``,
    ``best.safetensors``, ``metrics.jsonl``, ``curves.png`` and ``summary.json``.
    Returns the summary (best / last metrics, per-rank state hashes under DDP).
    """
    cfg = resolve_config(cfg)
    out = Path(cfg.output) if cfg.output else None
    main = is_main_process()
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
    _watch_decoding(train_set, out)
    run = _setup(model, train_set, val_set, cfg, device)
    start_epoch, best = _resume(run, out)
    _wrap(run)
    if out is not None and main:
        write_text(out / "recipe.json", json.dumps(recipe_report(run.model, cfg, run.steps_per_epoch), indent=1))
    log = _MetricsLog(out / "metrics.jsonl", start_epoch) if out is not None else None
    meta = run_metadata(cfg.model, cfg.model_kwargs, run.heads, cfg.class_names, cfg.protocol, cfg.init, cfg.dataset)
    last_val = None
    for epoch in range(start_epoch, cfg.epochs):
        row = train_one_epoch(run, epoch)
        if run.val_loader is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            last_val = validate(run, len(val_set))
            row.update(val_top1=last_val["top1"], val_top5=last_val.get("top5"),
                       **{f"val_{k}": v for k, v in run.val_throughput.row().items()})
            if last_val["top1"] > best["top1"]:
                best = dict(top1=last_val["top1"], epoch=epoch + 1)
                if out is not None and main:
                    save_safetensors(unwrap_model(run.eval_model).state_dict(), out / "best.safetensors",
                                     metadata=dict(meta, epoch=str(epoch + 1), top1=f"{best['top1']:.4f}"))
        rngs = all_gather_object(get_rng_state())
        if out is not None and main:
            # the epoch's line first: a kill between the two redoes the epoch, whose line is then rewritten
            log.write(**row)
            _save_epoch(run, out, epoch, best, rngs, meta)
            plot_metrics(out / "metrics.jsonl", out / "curves.png")
        if main:
            val = f", val top-1 {row['val_top1']:.2f}%" if "val_top1" in row else ""
            print(f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f}{val} ({row['time']:.1f}s, "
                  f"{row['clips_per_s']:.3g} clips/s, {row['data_wait']:.0%} waiting for data)", flush=True)
        barrier()
        if cfg.stop_after_epoch is not None and epoch >= cfg.stop_after_epoch:
            break
    hashes = all_gather_object(state_hash(run.model))
    summary = dict(model=cfg.model, recipe=cfg.recipe, epochs=cfg.epochs, best=best, last_val=last_val,
                   world_size=get_world_size(), rank_state_hashes=hashes, ranks_in_sync=len(set(hashes)) == 1)
    if out is not None and main:
        write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    return summary


def _plain(d: dict) -> dict:
    """Config values as weights_only-loadable plain types."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
