"""Pretrained weights that are not on the Hub: the local weights folder, converted on first use.

``$TADA_ZOO_HOME`` (default ``~/.cache/tada_zoo``) holds converted weights as
``<arch>.<tag>/model.safetensors`` (what ``tada-zoo convert --output`` and ``tada-zoo
inflate`` write) and original checkpoints under their released names
(``tada2d_8x8_k400.pyth``). An original found there is converted on first use by the one
converter (``convert_original``: the one reader and key map of ``_helpers``, an exact fit)
and cached as safetensors. ``build_video_model`` looks here before the Hub, so an offline
user never waits for Hub retries. Nothing here touches the network.
"""
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import timm
import torch.nn as nn
from timm.models import get_pretrained_cfg

from ._files import atomic_write
from ._helpers import map_checkpoint, read_checkpoint
from ._registry import checkpoint_filter, family_module, registered_cfg, released_models, tags_with_weights

__all__ = ["WEIGHTS_NAME", "WeightsNotAvailableError", "weights_home", "converted_path", "original_path",
           "find_local_weights", "in_hf_cache", "convert_original", "describe_original_cfg", "check_against_cfg",
           "how_to_get", "weights_help"]

WEIGHTS_NAME = "model.safetensors"
PathLike = Union[str, Path]


class WeightsNotAvailableError(RuntimeError):
    """Pretrained weights are neither in the local weights folder nor on the Hub (or its cache)."""


def weights_home() -> Path:
    """The local weights folder: ``$TADA_ZOO_HOME``, default ``~/.cache/tada_zoo``."""
    return Path(os.environ.get("TADA_ZOO_HOME") or "~/.cache/tada_zoo").expanduser()


def converted_path(name: str) -> Path:
    """Where the converted weights of ``arch.tag`` live in the weights folder."""
    return weights_home() / name / WEIGHTS_NAME


def original_path(cfg) -> Optional[Path]:
    """Where the original checkpoint of a release is dropped (its released file name), or None."""
    original = getattr(cfg, "original_file", None)
    return weights_home() / original if original else None


def _cfg(name: str):
    return get_pretrained_cfg(name, allow_unregistered=False)


def _stage(step: Optional[Callable[[str], None]], what: str) -> None:
    if step is not None:
        step(what)


# ---- the converter -----------------------------------------------------------------------

def describe_original_cfg(cfg: Optional[dict]) -> str:
    """One line naming the original architecture, from the config stored in the checkpoint."""
    if not cfg:
        return "the checkpoint stores no config"
    video = cfg.get("VIDEO", {})
    backbone = video.get("BACKBONE", {})
    parts = dict(
        MODEL=cfg.get("MODEL", {}).get("NAME"), BACKBONE=backbone.get("META_ARCH"),
        BRANCH=backbone.get("BRANCH", {}).get("NAME"), DEPTH=backbone.get("DEPTH"),
        CLASSES=video.get("HEAD", {}).get("NUM_CLASSES"), FRAMES=cfg.get("DATA", {}).get("NUM_INPUT_FRAMES"),
        DATASET=cfg.get("TRAIN", {}).get("DATASET"))
    return "checkpoint config: " + ", ".join(f"{k}={v}" for k, v in parts.items() if v is not None)


def check_against_cfg(model_name: str, cfg: Optional[dict]) -> None:
    """Refuse a release tag that contradicts the checkpoint's own config (dataset, clip length):
    8- and 16-frame checkpoints share one state dict, so only the config tells them apart."""
    if not cfg:
        return
    want = _cfg(model_name)
    have = dict(dataset=cfg.get("TRAIN", {}).get("DATASET"), num_frames=cfg.get("DATA", {}).get("NUM_INPUT_FRAMES"))
    wrong = {k: (v, getattr(want, k, None)) for k, v in have.items()
             if v is not None and getattr(want, k, None) is not None and v != getattr(want, k)}
    if wrong:
        family = family_module(model_name)
        fits = [n for n in released_models() if family_module(n) is family
                and all(getattr(_cfg(n), k) == v for k, v in have.items() if v is not None)]
        raise ValueError(
            f"{model_name} is for " + ", ".join(f"{k}={w}" for k, (_, w) in wrong.items())
            + " but the checkpoint's config says " + ", ".join(f"{k}={v}" for k, (v, _) in wrong.items())
            + (f"; releases that fit: {', '.join(fits)}" if fits else "")
            + " (--no-cfg-check converts anyway)")


def _classes_in(mapped: dict, model: nn.Module) -> Optional[int]:
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    weight = mapped.get(f"{classifier}.weight") if isinstance(classifier, str) else None
    return int(weight.shape[0]) if weight is not None and weight.dim() == 2 else None


def convert_original(model_name: str, checkpoint: PathLike, ema: bool = False, cfg_check: bool = True,
                     step: Optional[Callable[[str], None]] = None) -> Tuple[nn.Module, dict]:
    """The one converter: ``(model, info)`` with ``checkpoint`` (original ``.pyth`` or ours) read
    by ``read_checkpoint``, mapped by the family's key map and loaded only if every key and shape
    fits. ``model_name``: ``arch.tag`` of a release (its config's dataset / frames must agree
    unless ``cfg_check=False``) or an architecture, whose classes come from the checkpoint.
    ``step(stage)`` is called before each stage (progress)."""
    arch, _, tag = model_name.partition(".")
    _stage(step, f"reading {Path(checkpoint).name}")
    state_dict, info = read_checkpoint(checkpoint, ema=ema)
    context = describe_original_cfg(info["cfg"])
    _stage(step, f"building {model_name}")
    model = timm.create_model(model_name, pretrained=False)
    if checkpoint_filter(model) is None:
        raise ValueError(f"{model_name}: its family defines no checkpoint_filter_fn, so there are no original "
                         f"checkpoints to convert for {type(model).__name__}")
    _stage(step, "mapping keys")
    if not tag:  # own training: the classifier size comes from the checkpoint
        classes = _classes_in(checkpoint_filter(model)(dict(state_dict), model), model)
        if classes and classes != model.num_classes:
            model = timm.create_model(model_name, pretrained=False, num_classes=classes)
    else:
        context += (f"; {model_name} expects {model.num_classes} classes: if the checkpoint is for another "
                    f"dataset use its tag, or the architecture {arch!r} alone")
    mapped = map_checkpoint(state_dict, model, context)
    if tag and cfg_check:  # the weights fit: do they belong to this release?
        check_against_cfg(model_name, info["cfg"])
    model.load_state_dict(mapped, strict=True)
    return model.eval(), info


def find_local_weights(name: str, cfg=None) -> Optional[Path]:
    """The weights file of ``arch.tag`` in the weights folder, or None: the converted file, else
    the original checkpoint converted now (once; cached beside it as safetensors)."""
    converted = converted_path(name)
    if converted.is_file():
        return converted
    original = original_path(cfg if cfg is not None else _cfg(name))
    if original is None or not original.is_file():
        return None
    start = time.time()
    print(f"{name}: converting {original} (first use) -> {converted}", file=sys.stderr, flush=True)
    try:
        model, info = convert_original(name, original, step=lambda stage: print(
            f"{name}: [{time.time() - start:5.1f} s] {stage}", file=sys.stderr, flush=True))
    except (ValueError, RuntimeError, KeyError, OSError) as e:
        why = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"{original} in the weights folder (TADA_ZOO_HOME) is not the {name} checkpoint it is named "
                         f"after: {why}; replace it (tada-zoo download {name}) or remove it") from None
    from safetensors.torch import save_file

    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    metadata = dict(format="pt", model=name, source_file=original.name, state_key=str(info["state_key"]))
    # concurrent processes (e.g. DDP ranks) each finish a whole file; an interrupted one leaves none
    atomic_write(converted, lambda tmp: save_file(state, tmp, metadata=metadata))
    print(f"{name}: converted in {time.time() - start:.0f} s", file=sys.stderr)
    return converted


def in_hf_cache(cfg, cache_dir=None) -> bool:
    """Whether the Hugging Face cache holds the weights file of ``cfg``'s Hub repo (no network)."""
    from huggingface_hub import try_to_load_from_cache

    hub_id = getattr(cfg, "hf_hub_id", None)
    return bool(hub_id) and isinstance(try_to_load_from_cache(
        hub_id, getattr(cfg, "hf_hub_filename", None) or WEIGHTS_NAME, cache_dir=cache_dir), str)


# ---- what to tell a user without weights ---------------------------------------------------

def _timm_source(cfg) -> Optional[str]:
    """The timm model whose 2D weights ``cfg``'s inflated weights are built from (its origin_url)."""
    url = getattr(cfg, "origin_url", None) or ""
    prefix = "https://huggingface.co/timm/"
    return url[len(prefix):] if url.startswith(prefix) else None


def how_to_get(name: str, cfg=None, cli: Optional[str] = None) -> str:
    """How to get the weights of ``arch.tag`` with what a user has (the one such message): which file
    to download from where and where to put it, or which command builds them. ``cfg``: the registered
    one by default; ``cli``: the flag the user gave (``--pretrained k400``), to word it for the command
    line; None: for Python."""
    cfg = cfg if cfg is not None else registered_cfg(name)
    home = weights_home()
    original = getattr(cfg, "original_file", None)
    if original:
        url = getattr(cfg, "original_url", None) or getattr(cfg, "origin_url", None) or "the original model zoo"
        fetch = "add --download to this command" if cli else f"run `tada-zoo download {name}`"
        local = (f"or pass the downloaded file itself: --pretrained PATH/{original}" if cli else
                 f"or load a converted file: timm.create_model({name!r}, pretrained=True, "
                 f"pretrained_cfg_overlay=dict(file='DIR/{WEIGHTS_NAME}'))")
        return (f"{fetch} (pip install 'tada-zoo[download]'), or download {original} from {url} and save it as "
                f"{home / original} (converted on first use); or convert it yourself: tada-zoo convert --model "
                f"{name} --checkpoint {original} --output {home / name}; {local}")
    source = _timm_source(cfg)
    if source or name.endswith("_inflated"):
        src = f" (fetches timm's {source} from the Hugging Face Hub; offline: --source FILE with its 2D weights)" \
            if source else " --source 2D_WEIGHTS"
        return f"build them: tada-zoo inflate --model {name}{src}; it writes {home / name}/"
    arch = name.split(".")[0]
    others = [n for n in tags_with_weights(arch) if n != name]
    return (f"no weights exist for {name}: the original release has no such checkpoint (the tag only sets the "
            f"network and its data protocol); tags of {arch} with weights: {', '.join(others) or 'none'}"
            + ("; or start from --checkpoint-init / --inflate-from" if cli else "; build it with pretrained=False"))


def weights_help(name: str, cfg, cli: Optional[str] = None) -> str:
    """The whole message for ``arch.tag`` without weights (the reason, then ``how_to_get``)."""
    has_source = getattr(cfg, "original_file", None) or getattr(cfg, "hf_hub_id", None)
    where = f"{cli}: " if cli else ""
    if not has_source:
        return where + how_to_get(name, cfg, cli)
    hub = getattr(cfg, "hf_hub_id", None)
    return (f"{where}the weights of {name} are not published on the Hugging Face Hub yet ({hub}) and not in "
            f"{weights_home()} (TADA_ZOO_HOME); {how_to_get(name, cfg, cli)}")
