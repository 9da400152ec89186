"""The paper's training recipes (Appendix C.1) as presets; every value can be overridden by a flag.

The data augmentation comes from the model's data protocol (its original config, see
``tada_zoo.data.protocol``); a recipe only adds to it: ``rand_augment`` / ``random_erasing``
when not ``None``, and the SSV2 recipes switch on the original's SSV2_FLIP label swap.

Learning rates are given for the paper's global batch (16 GPUs x 16 clips = 256) and are
scaled linearly to the actual global batch unless ``--lr`` sets one directly.
"""
from typing import Dict

from tada_zoo.models._helpers import family

__all__ = ["RECIPES", "default_recipe"]

_SGD = dict(
    opt="sgd", momentum=0.9, weight_decay=1e-4, sched="cosine", base_lr=0.24, base_batch=256,
    head_lr_scale=1.0, warmup_lr_scale=0.01 / 0.24,  # linear warm-up from 0.01 to 0.24
    drop_rate=0.5, drop_path_rate=0.0, label_smoothing=0.0, mixup=0.0, cutmix=0.0,
    rand_augment=None, random_erasing=0.0, clip_grad=None, flip_labels="none",
)
# AdamW with a 10x head learning rate (backbone 1e-4, head 1e-3), drop path, and (SSV2)
# the ConvNeXt augmentations: mixup 0.8, cutmix 1.0, label smoothing 0.1, RandAugment, erasing
_ADAMW = dict(
    _SGD, opt="adamw", base_lr=1e-4, head_lr_scale=10.0, warmup_lr_scale=0.01, drop_path_rate=0.4,
)
_STRONG_AUG = dict(label_smoothing=0.1, mixup=0.8, cutmix=1.0, rand_augment="rand-m9-mstd0.5-inc1",
                   random_erasing=0.25)

RECIPES: Dict[str, dict] = {
    # Kinetics-400: 100 epochs, 8 warm-up, half-period cosine
    "tada2d_k400": dict(_SGD, epochs=100, warmup_epochs=8),
    "tada2d_ssv2": dict(_SGD, epochs=64, warmup_epochs=4, base_lr=0.48, warmup_lr_scale=0.01 / 0.48,
                        flip_labels="ssv2"),
    "tada2d_ek100": dict(_SGD, epochs=50, warmup_epochs=10, base_lr=0.48, warmup_lr_scale=0.01 / 0.48),
    "tadaconvnext_k400": dict(_ADAMW, epochs=100, warmup_epochs=8),
    "tadaconvnext_ssv2": dict(_ADAMW, epochs=64, warmup_epochs=4, flip_labels="ssv2", **_STRONG_AUG),
    "tadaconvnext_ek100": dict(_ADAMW, epochs=50, warmup_epochs=10),
}


def default_recipe(model_name: str) -> str:
    """The K400 preset of the model's family (``FAMILY.recipe`` in its model file)."""
    return f"{family(model_name).recipe}_k400"
