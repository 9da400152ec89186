"""Training recipes against the ORIGINAL code's own output for every released config.

tests/fixtures/original_recipes.json.gz was recorded by conversion/record_original_recipes.py:
the original ``Config`` merge, ``construct_optimizer`` (every parameter's learning-rate
multiplier and weight decay, keyed by our parameter names through the converter's key map) and
``get_lr_at_epoch`` at every step. ``tada-zoo train --dry-run`` at the config's global batch
must give the same numbers, parameter by parameter and step by step.
"""
import dataclasses
import gzip
import json
import math
from pathlib import Path

import pytest

import tada_zoo  # noqa: F401
from timm.models import get_pretrained_cfg

from tada_zoo.cli import main
from tada_zoo.data.protocol import protocol_from_cfg
from tada_zoo.engine.recipes import ALIASES, ORIGINAL_CONFIGS, RECIPES, recipe_for
from tada_zoo.engine.trainer import TrainConfig, resolve_config

FIXTURE = Path(__file__).parent / "fixtures" / "original_recipes.json.gz"
RECORDED = json.loads(gzip.open(FIXTURE, "rt", encoding="utf-8").read())
BY_CONFIG = {r["config"]: r for r in RECORDED["recipes"].values()}
# the pretrained tag trained with each released config (the base SSV2 one has no weights, but a tag)
TAGS = {
    "tada2d_8x8_k400": "tada2d_r50_8f.k400", "tada2d_16x5_k400": "tada2d_r50_16f.k400",
    "tada2d_8f_ssv2": "tada2d_r50_8f.ssv2", "tada2d_16f_ssv2": "tada2d_r50_16f.ssv2",
    **{f"tadaconvnextv2_{s}_{d}_16f": f"tadaconvnextv2_{s[0]}_16f.{d}"
       for s in ("tiny", "small", "base") for d in ("k400", "ssv2")},
    **{f"tadaformer_{a}_{d}_16f": f"tadaformer_{a}_16f.{d}" for a in ("b16", "l14") for d in ("k400", "ssv2")},
}


def _dry_run(tmp_path, *args) -> dict:
    assert main(["train", *args, "--dry-run", "--output", str(tmp_path)]) == 0
    return json.loads((tmp_path / "recipe.json").read_text())


def test_every_released_config_is_recorded_and_has_a_recipe_and_tag():
    assert len(BY_CONFIG) == 14 and set(ORIGINAL_CONFIGS.values()) == set(BY_CONFIG)
    assert set(TAGS) == set(ORIGINAL_CONFIGS)
    for name, tag in TAGS.items():
        assert recipe_for(tag) == (name, f"tag {tag}")


def _expected_values(s: dict) -> dict:
    """The recipe values the original's merged config implies (runs/train.py and what it builds)."""
    o, aug, train = s["OPTIMIZER"], s["AUGMENTATION"], s["TRAIN"]
    layer_decay = float(o["LAYER_WISE_LR_DECAY"])
    return dict(
        opt=o["OPTIM_METHOD"], momentum=float(o["MOMENTUM"]), nesterov=o["NESTEROV"],
        weight_decay=float(o["WEIGHT_DECAY"]), norm_weight_decay=float(s["BN"]["WEIGHT_DECAY"]),
        epochs=o["MAX_EPOCH"], warmup_epochs=float(o["WARMUP_EPOCHS"]), warmup_lr=float(o["WARMUP_START_LR"]),
        sched=o["LR_POLICY"], min_lr=float(o["COSINE_END_LR"]) if o["LR_POLICY"] == "cosine_v2" else 0.0,
        layer_decay=layer_decay, lr_reduce=bool(train["LR_REDUCE"] and train["FINE_TUNE"]),
        **(dict(head_lr_mult=float(o["HEAD_LRMULT"]), new_params=list(o["NEW_PARAMS"]),
                new_params_mult=float(o["NEW_PARAMS_MULT"])) if layer_decay < 1 else {}),
        label_smoothing=float(aug["LABEL_SMOOTHING"]),
        mixup=float(aug["MIXUP"]["ALPHA"]) if aug["MIXUP"]["ENABLE"] else 0.0,
        cutmix=float(aug["CUTMIX"]["ALPHA"]) if aug["CUTMIX"]["ENABLE"] else 0.0,
        random_erasing=float(aug["RANDOM_ERASING"]["PROB"]) if aug["RANDOM_ERASING"]["ENABLE"] else 0.0,
        drop_path_rate=float(s["DROP_PATH"] or 0.0), drop_rate=float(s["DROPOUT_RATE"]),
        ema=s["EMA"]["ENABLE"], ema_decay=float(s["EMA"]["DECAY"]),
        flip_labels="ssv2" if aug["SSV2_FLIP"] and "ssv2" in train["DATASET"] else "none",
        clip_grad=None,
    )


@pytest.mark.parametrize("name", sorted(TAGS))
def test_dry_run_equals_the_original(name, tmp_path):
    """Every value, every parameter's learning rate and weight decay, every step's learning rate."""
    rec = BY_CONFIG[ORIGINAL_CONFIGS[name]]
    n = rec["steps_per_epoch"]
    report = _dry_run(tmp_path, "--model", TAGS[name], "--batch-size", str(rec["global_batch"]),
                      "--steps-per-epoch", str(n), "--num-classes", str(rec["num_classes"]))
    got = report["recipe"]
    assert got["recipe"] == name and got["global_batch"] == rec["global_batch"]
    assert got["lr"] == pytest.approx(rec["base_lr"], rel=1e-12)
    expected = _expected_values(rec["scalars"])
    differ = {k: (got[k], v) for k, v in expected.items()
              if not (math.isclose(got[k], v, rel_tol=1e-12) if isinstance(v, float) else got[k] == v)}
    assert not differ, f"ours vs the original's: {differ}"

    groups = {p: (g["lr"], g["weight_decay"]) for g in report["param_groups"] for p in g["params"]}
    assert set(groups) == set(rec["params"])
    wrong = {p: (groups[p], (rec["base_lr"] * o["lr_mult"], o["weight_decay"], o["original"]))
             for p, o in rec["params"].items()
             if not math.isclose(groups[p][0], rec["base_lr"] * o["lr_mult"], rel_tol=1e-12)
             or groups[p][1] != pytest.approx(o["weight_decay"], rel=1e-12)}
    assert not wrong, f"{len(wrong)} parameters differ, e.g. {list(wrong.items())[:3]}"

    # the training augmentation is the tag's data protocol: the config's RandAugment and grayscale
    aug = rec["scalars"]["AUGMENTATION"]
    protocol = protocol_from_cfg(get_pretrained_cfg(TAGS[name]))
    assert protocol.rand_augment == ((aug["AUTOAUGMENT"] or {}).get("ENABLE") and aug["AUTOAUGMENT"]["TYPE"] or None)
    assert protocol.grayscale == (aug["GRAYSCALE"] if aug["COLOR_AUG"] else 0)

    assert len(report["lr_per_step"]) == rec["scalars"]["OPTIMIZER"]["MAX_EPOCH"] * n
    assert report["lr_per_step"] == pytest.approx(rec["lr_per_step"], rel=1e-12, abs=1e-18)


def test_lr_scaling_rule_is_explicit_and_printed(tmp_path, capsys):
    """Another global batch: linear scaling by default, or none; the source says which."""
    rec = BY_CONFIG[ORIGINAL_CONFIGS["tadaconvnextv2_tiny_k400_16f"]]
    half = rec["global_batch"] // 2
    base = ["--model", "tadaconvnextv2_t_16f.k400", "--batch-size", str(half), "--steps-per-epoch", "2"]
    linear = _dry_run(tmp_path, *base)
    assert linear["recipe"]["lr"] == pytest.approx(rec["base_lr"] / 2)
    assert "--lr-scaling linear" in linear["sources"]["lr"] and "--lr-scaling linear" in capsys.readouterr().out
    none = _dry_run(tmp_path, *base, "--lr-scaling", "none")
    assert none["recipe"]["lr"] == pytest.approx(rec["base_lr"])
    flag = _dry_run(tmp_path, *base, "--lr", "0.001", "--weight-decay", "0.1", "--no-lr-reduce")
    assert flag["recipe"]["lr"] == 0.001 and flag["sources"]["lr"] == "flag" and flag["sources"]["weight_decay"] == "flag"
    assert {g["lr_mult"] for g in flag["param_groups"]} == {1.0}  # no route-function / head multipliers
    assert flag["sources"]["epochs"] == "recipe tadaconvnextv2_tiny_k400_16f"


def test_ssv2_tags_pick_their_ssv2_recipe_and_recipe_flag_wins():
    assert resolve_config(TrainConfig(model="tada2d_r50_8f.ssv2")).recipe == "tada2d_8f_ssv2"
    cfg = resolve_config(TrainConfig(model="tadaconvnextv2_b_16f.ssv2", batch_size=64))
    assert (cfg.recipe, cfg.flip_labels, cfg.epochs, cfg.warmup_epochs) == ("tadaconvnextv2_base_ssv2_16f", "ssv2", 64, 2.5)
    cfg = resolve_config(TrainConfig(model="tada2d_r50_8f.ssv2", recipe="tada2d_k400"))  # an older preset name
    assert cfg.recipe == ALIASES["tada2d_k400"] == "tada2d_8x8_k400" and cfg.flip_labels == "none"
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        resolve_config(TrainConfig(model="tada2d_r50_8f", recipe="nope"))


def test_dry_run_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--model", "tada2d_r50_8f", "--dry-run", "--output", str(tmp_path)]) == 1
    assert "--dry-run needs --steps-per-epoch" in capsys.readouterr().err
    assert main(["train", "--model", "tada2d_r50_8f", "--output", str(tmp_path)]) == 1
    assert "--data-root is needed" in capsys.readouterr().err
    assert not (tmp_path / "recipe.json").exists()


def test_every_recipe_resolves():
    for name in RECIPES:
        cfg = resolve_config(TrainConfig(model="tada2d_r50_8f", recipe=name))
        assert cfg.sched in ("cosine", "cosine_v2") and 0 < cfg.warmup_epochs < cfg.epochs


def recipe_table() -> str:
    """docs/training.md's table of the recipes, as resolved (kept in sync by the test below)."""
    rows = ["| recipe (original config) | optimizer, weight decay | lr @ global batch | schedule: epochs (warm-up from) "
            "| parameter groups | regularisers |", "|---|---|---|---|---|---|"]
    for name, r in RECIPES.items():
        groups = (f"layer decay {r['layer_decay']:g}, `{','.join(r['new_params'])}` x{r['new_params_mult']:g}, "
                  f"head x{r['head_lr_mult']:g}" if r["layer_decay"] < 1 else
                  "route functions, head: weights x5, biases x10" if r["lr_reduce"] else "one learning rate")
        reg = [f"dropout {r['drop_rate']:g}", f"drop path {r['drop_path_rate']:g}"]
        reg += [f"label smoothing {r['label_smoothing']:g}"] if r["label_smoothing"] else []
        reg += ["SSV2 label-swap flip"] if r["flip_labels"] == "ssv2" else []
        rows.append(f"| `{name}` | {r['opt']}{' nesterov' if r['opt'] == 'sgd' and r['nesterov'] else ''}, "
                    f"{r['weight_decay']:g} | {r['lr']:g} @ {r['batch']} | {r['sched']}: {r['epochs']} "
                    f"({r['warmup_epochs']:g} from {r['warmup_lr']:g}) | {groups} | {', '.join(reg)} |")
    return "\n".join(rows) + "\n"


def test_docs_table_is_the_recipes():
    doc = (Path(__file__).parents[1] / "docs" / "training.md").read_text()
    assert recipe_table() in doc, "docs/training.md's recipe table is stale: paste tests/test_recipes.py:recipe_table()"


def test_finetuning_trained_weights_shortens_the_schedule_unless_recipe_is_given(tmp_path, capsys):
    """--pretrained / --checkpoint-init: FINETUNE's epochs and warm-up, the recipe's (scaled) lr; --recipe: as released."""
    from tada_zoo.engine.recipes import FINETUNE

    cfg = resolve_config(TrainConfig(model="tada2d_r50_8f.k400", batch_size=128, finetune=True))
    assert (cfg.epochs, cfg.warmup_epochs) == (FINETUNE["epochs"], FINETUNE["warmup_epochs"]) != (100, 8)
    assert cfg.lr == pytest.approx(0.24 * FINETUNE["lr_mult"]) and "fine-tune" in cfg.sources["epochs"]
    exact = resolve_config(TrainConfig(model="tada2d_r50_8f.k400", batch_size=128, finetune=True,
                                       recipe="tada2d_8x8_k400"))
    assert (exact.epochs, exact.warmup_epochs, exact.lr) == (100, 8, 0.24)
    own = resolve_config(TrainConfig(model="tada2d_r50_8f.k400", batch_size=128, finetune=True, epochs=3))
    assert own.epochs == 3 and own.sources["epochs"] == "flag"
    ckpt = tmp_path / "w.safetensors"
    from safetensors.torch import save_file
    save_file({"x": __import__("torch").zeros(1)}, ckpt)
    report = _dry_run(tmp_path, "--model", "tada2d_r50_8f", "--checkpoint-init", str(ckpt), "--batch-size", "8",
                      "--steps-per-epoch", "3", "--num-classes", "5")
    assert report["recipe"]["epochs"] == FINETUNE["epochs"] and len(report["lr_per_step"]) == 3 * FINETUNE["epochs"]
    assert "fine-tune" in capsys.readouterr().out


@pytest.mark.parametrize("tag, kwargs", [
    ("tadaconvnextv2_t_16f.k400", dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128), head_dim=8)),
    ("tadaformer_b16_16f.ssv2", dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, rf_head_dim=16)),
], ids=["lr_reduce", "layer_decay"])
def test_recipe_groups_train(tag, kwargs, tmp_path):
    """The multiplier groups reach the optimizer: after a run, every group's lr is the schedule's
    value x its multiplier, and the multipliers differ as the recipe says."""
    import timm
    import torch

    from _engine_utils import ClipDataset
    from tada_zoo.engine import fit
    from tada_zoo.engine.optim import lr_at

    torch.manual_seed(0)
    model = timm.create_model(tag, num_classes=2, num_frames=4, **kwargs)
    cfg = TrainConfig(model=tag, num_classes=[2], epochs=2, batch_size=2, workers=0, output=str(tmp_path),
                      progress=False, max_steps_per_epoch=2)
    fit(model, ClipDataset(4, size=32), None, cfg)
    report = json.loads((tmp_path / "recipe.json").read_text())
    mults = {g["lr_mult"] for g in report["param_groups"]}
    assert len(mults) > 2 and max(mults) == 10.0, mults
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    resolved = resolve_config(dataclasses.replace(cfg, output=None))
    lr_next = lr_at(4 / 2, resolved)  # after 2 epochs x 2 steps: the lr set for the next step
    for group in state["optimizer"]["param_groups"]:
        assert group["lr"] == pytest.approx(lr_next * group["lr_mult"], rel=1e-9)
