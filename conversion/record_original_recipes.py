"""Record the ORIGINAL TAdaConv training recipes, for tests/fixtures/original_recipes.json.gz.

Maintainer script. For every released training config it runs the original code unchanged
from a checkout of ``alibaba-mmai-research/TAdaConv`` (nothing of it is copied into this
project):

- ``Config`` (``tadaconv/utils/config.py``) merges the config's ``_BASE`` chain, as
  ``runs/run.py --cfg FILE`` does (``record_original_pipeline.original_config``);
- ``construct_optimizer`` (``tadaconv/models/utils/optimizer.py``, taken out with ``ast``
  because the module imports the logging / LARS helpers) builds the optimizer of a stand-in
  model whose ``named_parameters`` are the original network's parameters, names and shapes
  (``../shared/reference/<arch>/manifest.json`` without the BatchNorm running statistics; the
  parameter count is checked against the reference's ``meta.json``). The rules of
  ``construct_optimizer`` read only names, shapes and ``requires_grad``;
- ``get_lr_at_epoch`` (``tadaconv/models/utils/lr_policy.py``, imported as it is) gives the
  learning rate at ``epoch + iteration / N`` for every step, as ``runs/train.py`` asks it.

Each original parameter's learning-rate multiplier and weight decay is stored under OUR
parameter name, found through the converter's key map: the family's ``checkpoint_filter_fn``
applied to a state dict whose tensors are filled with their index in the manifest.

    python conversion/record_original_recipes.py --original /path/to/TAdaConv \\
        [--reference ../shared/reference]
"""
import argparse
import ast
import gzip
import json
import math
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record_original_pipeline import _original_module, original_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "original_recipes.json.gz"
STEPS_PER_EPOCH = 5  # N: every step's learning rate is recorded (2.5 warm-up epochs fall on a step)

# original config -> (our tag, reference folder of its state-dict manifest). The
# TAdaConvNeXtV2 SSV2 nets equal the K400 ones but for the classifier rows (reference README).
CONFIGS = {
    "tada/k400/tada2d_8x8": ("tada2d_r50_8f.k400", "tada2d_r50_k400"),
    "tada/k400/tada2d_16x5": ("tada2d_r50_16f.k400", "tada2d_r50_k400"),
    "tada/ssv2/tada2d_8f": ("tada2d_r50_8f.ssv2", "tada2d_r50_ssv2"),
    "tada/ssv2/tada2d_16f": ("tada2d_r50_16f.ssv2", "tada2d_r50_ssv2"),
    **{f"tadaconvnextv2/tadaconvnextv2_{s}_{d}_16f": (f"tadaconvnextv2_{s[0]}_16f.{d}", f"tadaconvnextv2_{s}_k400")
       for d in ("k400", "ssv2") for s in ("tiny", "small", "base")},
    **{f"tadaformer/tadaformer_{a}_{d}_16f": (f"tadaformer_{a}_16f.{d}", f"tadaformer_{a}_{d}")
       for d in ("k400", "ssv2") for a in ("b16", "l14")},
}
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
UNUSED = {"backbone.proj"}  # CLIP's text projection: in TAdaFormer checkpoints, unused by the classifier


def _construct_optimizer(original: Path, lr_policy):
    """``construct_optimizer`` compiled from the original source with its module's names."""
    src = (original / "tadaconv/models/utils/optimizer.py").read_text()
    wanted = [n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef)
              and n.name in ("construct_optimizer", "get_num_layer_for_vit")]
    namespace = dict(torch=torch, json=json, math=math, lr_policy=lr_policy,
                     logger=SimpleNamespace(info=lambda *a: None),
                     misc=SimpleNamespace(get_num_gpus=lambda cfg: cfg.NUM_GPUS), LARS=None)
    exec(compile(ast.Module(body=wanted, type_ignores=[]), "optimizer.py", "exec"), namespace)
    return namespace["construct_optimizer"]


class StandIn(nn.Module):
    """Parameters with the original names and shapes (on the meta device: no memory)."""

    def __init__(self, entries):
        super().__init__()
        self._names = []
        for i, (key, shape) in enumerate(entries):
            self.register_parameter(f"p{i}", nn.Parameter(torch.empty(shape, device="meta")))
            self._names.append(key)

    def named_parameters(self, *args, **kwargs):
        return ((n, p) for n, (_, p) in zip(self._names, super().named_parameters()))


def _original_params(reference: Path, folder: str, num_classes: int):
    manifest = json.loads((reference / folder / "manifest.json").read_text())
    meta = json.loads((reference / folder / "meta.json").read_text())
    entries = [(k, list(s)) for k, s, _ in manifest if not k.endswith(BUFFERS)]
    total = sum(math.prod(s) for _, s in entries)
    if total != meta["num_params"]:
        raise SystemExit(f"{folder}: {total} parameters in the manifest, meta.json says {meta['num_params']}")
    # the classifier rows follow the config (SSV2 configs on a K400 manifest)
    return [(k, [num_classes] + s[1:] if k.startswith("head.out.") else s) for k, s in entries]


def _key_map(arch: str, entries, num_classes: int) -> dict:
    """original parameter name -> our parameter name, through the family's checkpoint filter."""
    import timm
    import tada_zoo  # noqa: F401  (registers the models)
    from tada_zoo.models._registry import checkpoint_filter

    model = timm.create_model(arch, num_classes=num_classes)  # arch.tag: the tag's network (TAdaFormer SSV2)
    state = {k: torch.full(s, i, dtype=torch.int32) for i, (k, s) in enumerate(entries)}
    mapped = checkpoint_filter(model)(state, model)
    ours = dict(model.named_parameters())
    out = {}
    for key, value in mapped.items():
        if key in ours:
            sources = value.unique().tolist()
            if len(sources) != 1:
                raise SystemExit(f"{arch}: {key} mixes original tensors {sources}")
            out[entries[sources[0]][0]] = key
    if sorted(out.values()) != sorted(ours):
        raise SystemExit(f"{arch}: our parameters without an original one: {sorted(set(ours) - set(out.values()))}")
    unmapped = [k for k, _ in entries if k not in out and k not in UNUSED]
    if unmapped:
        raise SystemExit(f"{arch}: original parameters without one of ours: {unmapped[:5]} ({len(unmapped)})")
    return out


def _scalars(cfg) -> dict:
    """What the training loop reads from a merged config (runs/train.py and what it builds)."""
    d = cfg.cfg_dict if hasattr(cfg, "cfg_dict") else cfg
    aug = d["AUGMENTATION"]
    return dict(
        OPTIMIZER=d["OPTIMIZER"], BN=dict(WEIGHT_DECAY=d["BN"]["WEIGHT_DECAY"]),
        TRAIN={k: d["TRAIN"][k] for k in ("BATCH_SIZE", "FINE_TUNE", "LR_REDUCE", "ONLY_LINEAR", "NUM_FOLDS", "DATASET")},
        NUM_GPUS=d["NUM_GPUS"], EMA=d["MODEL"]["EMA"],
        DROP_PATH=d["VIDEO"]["BACKBONE"].get("DROP_PATH"), DROPOUT_RATE=d["VIDEO"]["HEAD"]["DROPOUT_RATE"],
        NUM_CLASSES=d["VIDEO"]["HEAD"]["NUM_CLASSES"], NUM_INPUT_FRAMES=d["DATA"]["NUM_INPUT_FRAMES"],
        AUGMENTATION={k: aug.get(k) for k in ("MIXUP", "CUTMIX", "RANDOM_ERASING", "LABEL_SMOOTHING", "SSV2_FLIP",
                                               "AUTOAUGMENT", "COLOR_AUG", "GRAYSCALE", "COLOR_P")},
    )


def record(original: Path, reference: Path, name: str, lr_policy, construct_optimizer) -> dict:
    arch, folder = CONFIGS[name]
    cfg_file = f"configs/projects/{name}.yaml"
    cfg = original_config(original, cfg_file)
    classes = cfg.VIDEO.HEAD.NUM_CLASSES
    entries = _original_params(reference, folder, classes)
    names = _key_map(arch, entries, classes)
    model = StandIn(entries)
    optimizer = construct_optimizer(model, cfg)
    by_id = {id(p): n for n, p in model.named_parameters()}
    params = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            orig = by_id[id(p)]
            if orig in names:  # CLIP's text projection has no counterpart (unused by the classifier)
                params[names[orig]] = dict(lr_mult=group.get("lr_mult", 1.0), weight_decay=group["weight_decay"],
                                           original=orig)
    epochs = cfg.OPTIMIZER.MAX_EPOCH
    lrs = [lr_policy.get_lr_at_epoch(cfg, e + i / STEPS_PER_EPOCH)
           for e in range(epochs) for i in range(STEPS_PER_EPOCH)]
    return dict(config=cfg_file, arch=arch, reference=folder, global_batch=cfg.TRAIN.BATCH_SIZE,
                num_classes=classes, optimizer=type(optimizer).__name__, base_lr=optimizer.defaults["lr"],
                steps_per_epoch=STEPS_PER_EPOCH, lr_per_step=lrs, scalars=_scalars(cfg), params=params)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--original", required=True, type=Path, help="checkout of alibaba-mmai-research/TAdaConv")
    p.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference",
                   help="the reference folder with the original state-dict manifests")
    p.add_argument("--commit", default=None, help="the checkout's commit, when it is not a git work tree")
    p.add_argument("--output", type=Path, default=OUT)
    args = p.parse_args(argv)
    lr_policy = _original_module(args.original, "tadaconv/models/utils/lr_policy.py", "original_lr_policy")
    construct_optimizer = _construct_optimizer(args.original, lr_policy)
    recipes = {}
    for name in CONFIGS:
        print(name, flush=True)
        recipes[name] = record(args.original, args.reference, name, lr_policy, construct_optimizer)
    commit = args.commit or os.popen(f"git -C {args.original} rev-parse HEAD 2>/dev/null").read().strip() or "unknown"
    out = dict(
        about=("Recorded by conversion/record_original_recipes.py from the original TAdaConv code "
               f"(commit {commit}): per released config, the merged training settings, construct_optimizer's "
               "learning-rate multiplier and weight decay of every parameter (keyed by our parameter name, with the "
               f"original one), and get_lr_at_epoch(cfg, epoch + i / {STEPS_PER_EPOCH}) at every step."),
        torch=torch.__version__, steps_per_epoch=STEPS_PER_EPOCH, recipes=recipes)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.output, "wt", encoding="utf-8") as f:
        json.dump(out, f, indent=0, sort_keys=True)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
