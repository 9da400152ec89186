"""Training recipes: every released training config of the original code base, value for value.

A recipe is named after the original config it copies (``configs/projects/<...>.yaml`` of
alibaba-mmai-research/TAdaConv, ``ORIGINAL_CONFIGS``); a pretrained tag names its recipe in its
cfg (``train_recipe``), and ``recipe_for`` is the ONE place that turns a model name into a
recipe. tests/test_recipes.py checks every value, every parameter's learning-rate multiplier
and weight decay and the learning rate at every step against what the original's own
``Config`` / ``construct_optimizer`` / ``get_lr_at_epoch`` return
(conversion/record_original_recipes.py).

What the values mean (the original's names in brackets):

- ``lr`` [BASE_LR] is the learning rate for the recipe's global ``batch`` [TRAIN.BATCH_SIZE,
  over all GPUs]; another global batch scales it by ``--lr-scaling`` (linear by default).
- ``sched`` [LR_POLICY] ``cosine``: half-period cosine from ``lr`` to ``min_lr`` over all epochs;
  ``cosine_v2``: the same curve starting after the warm-up [COSINE_AFTER_WARMUP], ending at
  ``min_lr`` [COSINE_END_LR]. The warm-up is linear from ``warmup_lr`` [WARMUP_START_LR] to the
  schedule's value at ``warmup_epochs``; the learning rate is set before every step at
  ``epoch + step / steps_per_epoch``.
- Parameter groups (``tada_zoo.engine.optim.param_groups``): with ``layer_decay`` 1 the
  original's name rules (route functions, norms, classifier, biases; ``lr_reduce`` multiplies
  route-function and classifier weights by 5 and their biases by 10); with ``layer_decay`` < 1
  timm's layer ids, ``new_params`` x ``new_params_mult`` and the classifier x ``head_lr_mult``.
- ``drop_rate`` is the head's dropout [VIDEO.HEAD.DROPOUT_RATE], ``drop_path_rate``
  [VIDEO.BACKBONE.DROP_PATH]; data augmentation (RandAugment, crops, colour) is the data
  protocol's (``tada_zoo.data.protocol``); ``flip_labels='ssv2'`` is SSV2_FLIP on SSV2 data.
"""
from typing import Dict, Tuple

from tada_zoo.models import family, registered_cfg

__all__ = ["RECIPES", "ORIGINAL_CONFIGS", "ALIASES", "FINETUNE", "recipe_for", "resolve_recipe_name", "LR_SCALING"]

LR_SCALING = ("linear", "none")

_BASE = dict(
    opt="sgd", momentum=0.9, nesterov=True, weight_decay=1e-4, norm_weight_decay=0.0, sched="cosine", min_lr=0.0,
    warmup_lr=0.01, layer_decay=1.0, lr_reduce=False, head_lr_mult=1.0, new_params=(), new_params_mult=1.0,
    drop_rate=0.5, drop_path_rate=0.0, label_smoothing=0.0, mixup=0.0, cutmix=0.0, random_erasing=0.0,
    clip_grad=None, ema=False, ema_decay=0.99996, flip_labels="none",
)
_SSV2 = dict(flip_labels="ssv2")
# TAda2D (ICLR 2022): SGD, nesterov, no LR_REDUCE
_TADA2D = dict(_BASE, epochs=100, warmup_epochs=8)
_TADA2D_SSV2 = dict(_TADA2D, epochs=64, warmup_epochs=4, warmup_lr=1e-4, **_SSV2)
# TAdaConvNeXtV2: AdamW, LR_REDUCE (route functions and head x5 / biases x10)
_V2 = dict(_BASE, opt="adamw", weight_decay=0.02, warmup_lr=1e-6, lr_reduce=True, epochs=100, warmup_epochs=8)
_V2_SSV2 = dict(_V2, epochs=64, warmup_epochs=2.5, **_SSV2)
# TAdaFormer: AdamW, layer-wise decay, TAda branches and head x10, cosine after warm-up to 1e-6
_FORMER = dict(_BASE, opt="adamw", weight_decay=0.05, warmup_lr=1e-6, sched="cosine_v2", min_lr=1e-6, lr_reduce=True,
               head_lr_mult=10.0, new_params=("tada",), new_params_mult=10.0, label_smoothing=0.1,
               drop_path_rate=0.0, epochs=30, warmup_epochs=5)
_FORMER_SSV2 = dict(_FORMER, lr=5e-4, epochs=24, warmup_epochs=4, warmup_lr=1e-8, **_SSV2)

RECIPES: Dict[str, dict] = {
    "tada2d_8x8_k400": dict(_TADA2D, lr=0.24, batch=128),
    "tada2d_16x5_k400": dict(_TADA2D, lr=0.12, batch=64),
    "tada2d_8f_ssv2": dict(_TADA2D_SSV2, lr=0.48, batch=128),
    "tada2d_16f_ssv2": dict(_TADA2D_SSV2, lr=0.24, batch=64),
    "tadaconvnextv2_tiny_k400_16f": dict(_V2, lr=5e-4, batch=128, drop_path_rate=0.2),
    "tadaconvnextv2_small_k400_16f": dict(_V2, lr=2.5e-4, batch=64, drop_path_rate=0.4),
    "tadaconvnextv2_base_k400_16f": dict(_V2, lr=2.5e-4, batch=64, drop_path_rate=0.6),
    "tadaconvnextv2_tiny_ssv2_16f": dict(_V2_SSV2, lr=5e-4, batch=128, drop_path_rate=0.3),
    "tadaconvnextv2_small_ssv2_16f": dict(_V2_SSV2, lr=2.5e-4, batch=64, drop_path_rate=0.5),
    "tadaconvnextv2_base_ssv2_16f": dict(_V2_SSV2, lr=2.5e-4, batch=64, drop_path_rate=0.6),
    "tadaformer_b16_k400_16f": dict(_FORMER, lr=5e-5, batch=256, layer_decay=0.7),
    "tadaformer_l14_k400_16f": dict(_FORMER, lr=2e-5, batch=64, layer_decay=0.85, epochs=24),
    "tadaformer_b16_ssv2_16f": dict(_FORMER_SSV2, batch=256, layer_decay=0.7),
    "tadaformer_l14_ssv2_16f": dict(_FORMER_SSV2, lr=2.5e-4, batch=128, layer_decay=0.85, drop_path_rate=0.2),
    # EPIC-KITCHENS-100: the paper's Appendix C.1 (no released config; K400 recipe, 50 epochs)
    "tada2d_ek100": dict(_TADA2D, lr=0.48, batch=256, epochs=50, warmup_epochs=10),
    "tadaconvnextv2_ek100": dict(_V2, lr=5e-4, batch=128, drop_path_rate=0.2, epochs=50, warmup_epochs=10),
}
ORIGINAL_CONFIGS = {  # recipe -> the original config file it copies
    name: f"configs/projects/{path}.yaml" for name, path in {
        "tada2d_8x8_k400": "tada/k400/tada2d_8x8", "tada2d_16x5_k400": "tada/k400/tada2d_16x5",
        "tada2d_8f_ssv2": "tada/ssv2/tada2d_8f", "tada2d_16f_ssv2": "tada/ssv2/tada2d_16f",
        **{n: f"{n.split('_')[0]}/{n}" for n in RECIPES
           if n.startswith(("tadaconvnextv2_", "tadaformer_")) and not n.endswith("ek100")},
    }.items()}

# Fine-tuning trained weights (--pretrained / --checkpoint-init) on one's own data, unless --recipe
# asks for a released config as it is: the recipe with a short schedule (and lr_mult x its batch-scaled
# learning rate). Chosen by benchmarks/bench_finetune.py on the demo's videos (docs/training.md):
# 30 epochs with 2 warm-up matched the released 100-epoch schedule (92.8 % top-1 both) in 1/3 of the
# time; 15 epochs lost 3 points, a 10x lower learning rate 10.
FINETUNE = dict(epochs=30, warmup_epochs=2, lr_mult=1.0)

# a family (``FAMILY.recipe`` in its model file) and dataset -> the recipe of models without their own
_FAMILY_RECIPES = {
    "tada2d": dict(kinetics400="tada2d_8x8_k400", ssv2="tada2d_8f_ssv2", ek100="tada2d_ek100"),
    "tadaconvnext": dict(kinetics400="tadaconvnextv2_tiny_k400_16f", ssv2="tadaconvnextv2_tiny_ssv2_16f",
                         ek100="tadaconvnextv2_ek100"),
    "tadaformer": dict(kinetics400="tadaformer_b16_k400_16f", ssv2="tadaformer_b16_ssv2_16f",
                       ek100="tadaformer_b16_k400_16f"),
}
# the names of the presets before the released configs were copied (stored in older run folders)
ALIASES = {f"{fam}_{short}": recipes[ds] for fam, recipes in _FAMILY_RECIPES.items()
           for short, ds in (("k400", "kinetics400"), ("ssv2", "ssv2"))}


def resolve_recipe_name(name: str) -> str:
    """``name`` or its alias -> a key of ``RECIPES``; ValueError naming the choices."""
    name = ALIASES.get(name, name)
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(sorted(RECIPES))}")
    return name


def recipe_for(model_name: str) -> Tuple[str, str]:
    """The recipe of ``model_name`` (``arch`` = its default tag, or ``arch.tag``) and where that
    choice came from: the tag's own (``train_recipe`` of its cfg: the original config its weights
    were trained with), else the family's recipe for the tag's dataset (Kinetics-400 when none)."""
    try:
        cfg = registered_cfg(model_name)
    except ValueError:  # an alias without a pretrained cfg (tsn_r50)
        cfg = None
    tag = f"{model_name.partition('.')[0]}.{cfg.tag}" if getattr(cfg, "tag", None) else model_name
    if getattr(cfg, "train_recipe", None):
        return cfg.train_recipe, f"tag {tag}"
    dataset = getattr(cfg, "dataset", None) or "kinetics400"
    fam = family(model_name)
    by_dataset = _FAMILY_RECIPES[fam.recipe]
    return by_dataset.get(dataset, by_dataset["kinetics400"]), f"{fam.display_name(model_name)} default for {dataset}"
