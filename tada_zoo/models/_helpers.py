"""The one checkpoint reader and the one way to put a checkpoint into a model.

``read_checkpoint`` opens every kind of weights file users have: our ``.safetensors``, our
``.pt`` training checkpoints and the original code's ``.pyth`` (pickles are read with
``torch.load(weights_only=True)``: code is never run). ``load_checkpoint`` maps the state
dict with the model family's ``checkpoint_filter_fn`` (timm's convention, found by model
name) and loads it with one strict report of what does not fit.
"""
import json
import pickle
import zipfile
from pathlib import Path
from typing import Dict, List, Tuple, Union

import torch
import torch.nn as nn
from timm.models import adapt_input_conv as _adapt_2d

from ._registry import checkpoint_filter

__all__ = ["load_pickle", "read_checkpoint", "map_checkpoint", "load_checkpoint", "load_inflated", "classifier_keys",
           "adapt_input_conv", "adapt_input_convs"]

PathLike = Union[str, Path]
_SHOW = 12  # keys listed per kind of mismatch
# where a state dict sits inside a checkpoint: ours (train), generic, the original code's
_STATE_KEYS = ("model", "state_dict", "model_state")


def load_pickle(path: PathLike):
    """``torch.load(path, weights_only=True)`` that never runs code and names the file in every error.

    A zip-format file (what ``torch.save`` writes) has its CRCs checked first, so a flipped
    byte in a weight is refused instead of loaded.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise ValueError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from None
        if bad is not None:
            raise ValueError(f"{path} is corrupt: the checksum of its entry {bad!r} does not match "
                             "(a damaged download or disk?); download or copy it again")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e):
            raise ValueError(
                f"{path} contains Python objects that need code to be unpickled; refusing to load it "
                f"(only tensors and plain containers are read, torch.load(weights_only=True)). Re-save "
                f"its state dict from a trusted environment: torch.save({{'model_state': sd}}, path)") from None
        raise ValueError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): "
                         f"{type(e).__name__}: {e}") from None


def read_checkpoint(path: PathLike, ema: bool = False) -> Tuple[Dict[str, torch.Tensor], dict]:
    """``(state_dict, info)`` of a weights file, without DDP ``module.`` prefixes.

    ``info``: ``state_key`` (where the weights were), ``epoch`` and the original config
    ``cfg`` (dict or None) when the file stores them, and ``metadata``: the str -> str
    metadata of a safetensors header or of a ``.pt``'s ``metadata`` entry (``{}`` if none;
    ``tada_zoo.engine.checkpoint.checkpoint_info`` reads what training put there). ``ema`` reads the original's
    ``model_ema_state``. A file that cannot be read, needs code to unpickle or holds no
    state dict is a ValueError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist" if not path.exists()
                                else f"checkpoint {path} is not a file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors import safe_open
        from safetensors.torch import load_file

        if ema:
            raise ValueError(f"{path} is a safetensors file: it holds one set of weights; drop --ema")
        try:
            with safe_open(str(path), "pt") as f:
                metadata = dict(f.metadata() or {})
            return load_file(str(path)), dict(state_key="(safetensors)", epoch=None, cfg=None, metadata=metadata)
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from None
    ckpt = load_pickle(path)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} holds a {type(ckpt).__name__}, expected a state dict or a dict with 'model_state'")

    if ema:
        if not isinstance(ckpt.get("model_ema_state"), dict):
            raise ValueError(f"{path} has no 'model_ema_state' (EMA was off in training); drop --ema")
        state_key = "model_ema_state"
    else:
        state_key = next((k for k in _STATE_KEYS if isinstance(ckpt.get(k), dict)), None)
    if state_key is not None:
        state_dict = ckpt[state_key]
    elif ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state_dict, state_key = ckpt, "(bare state dict)"
    else:
        raise ValueError(f"{path} has no 'model_state' or other state dict (top-level keys: {sorted(ckpt)[:10]}); "
                         "is it a model checkpoint?")
    if not state_dict or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path}: {state_key} is empty or not a state dict")
    state_dict = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    cfg = ckpt.get("cfg")
    if isinstance(cfg, str):
        try:
            cfg = json.loads(cfg)
        except ValueError:
            cfg = None
    metadata = ckpt.get("metadata")
    metadata = {k: v for k, v in metadata.items() if isinstance(k, str) and isinstance(v, str)} \
        if isinstance(metadata, dict) else {}
    return state_dict, dict(state_key=state_key, epoch=ckpt.get("epoch"), cfg=cfg if isinstance(cfg, dict) else None,
                            metadata=metadata)


def classifier_keys(model: nn.Module) -> set:
    """State-dict keys of the classifier (``get_classifier()``'s parameters)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if head is None:
        return set()
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)] for p in head.parameters() if id(p) in names}


def _listing(kind: str, keys) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return f"{len(keys)} {kind}: " + ", ".join(keys[:_SHOW]) + more


def map_checkpoint(state_dict: Dict[str, torch.Tensor], model: nn.Module, context: str = "",
                   head: str = "strict") -> Dict[str, torch.Tensor]:
    """Map ``state_dict`` onto ``model`` with its family's key map and check it fits exactly.

    ``head``: ``"strict"`` the classifier must fit like everything else; ``"fit"`` a
    classifier of another size (or none) is left out, for the model's own (fine-tuning on new
    classes); ``"ignore"`` the checkpoint's classifier is always left out (features).
    Anything else that does not fit is one ValueError listing the unmapped, missing and
    mis-shaped keys.
    """
    if head not in ("strict", "fit", "ignore"):
        raise ValueError(f"head must be 'strict', 'fit' or 'ignore', got {head!r}")
    fn = checkpoint_filter(model)
    mapped = dict(state_dict)
    if fn is not None:
        try:
            mapped = fn(mapped, model)
        except (KeyError, IndexError, RuntimeError, AttributeError, TypeError) as e:
            raise ValueError(f"the checkpoint does not map onto {type(model).__name__}: "
                             f"{type(e).__name__}: {e}. {context}") from None
    own = model.state_dict()
    optional = classifier_keys(model) if head != "strict" else set()
    mapped = {k: v for k, v in mapped.items() if not (
        k in optional and (head == "ignore" or tuple(v.shape) != tuple(own[k].shape)))}
    unexpected = set(mapped) - set(own)
    missing = set(own) - set(mapped) - optional
    shapes = {k: (tuple(mapped[k].shape), tuple(own[k].shape)) for k in set(mapped) & set(own)
              if tuple(mapped[k].shape) != tuple(own[k].shape)}
    if unexpected or missing or shapes:
        problems = []
        if unexpected:
            problems.append(_listing("checkpoint keys with no place in the model (unmapped)", unexpected))
        if missing:
            problems.append(_listing("model keys the checkpoint does not provide (missing)", missing))
        if shapes:
            problems.append(_listing("shape mismatches (checkpoint vs model)",
                                     [f"{k} {a} vs {b}" for k, (a, b) in shapes.items()]))
        raise ValueError(f"the checkpoint does not fit {type(model).__name__}; nothing was loaded.\n  "
                         + "\n  ".join(problems) + (f"\n  {context}" if context else ""))
    return mapped


def load_checkpoint(model: nn.Module, checkpoint: Union[PathLike, Dict[str, torch.Tensor]], ema: bool = False,
                    head: str = "strict", context: str = "") -> dict:
    """Put a checkpoint (a file, or a state dict already read) into ``model``, all or nothing.

    ``head`` as in ``map_checkpoint``. Returns the file's ``info`` plus ``classifier_kept``:
    the classifier keys left as the model had them.
    """
    if isinstance(checkpoint, dict):
        state_dict, info = checkpoint, dict(state_key="(state dict)", epoch=None, cfg=None)
    else:
        state_dict, info = read_checkpoint(checkpoint, ema=ema)
        context = context or f"file: {checkpoint}"
    mapped = map_checkpoint(state_dict, model, context, head=head)
    kept = sorted(set(model.state_dict()) - set(mapped))
    model.load_state_dict(mapped, strict=not kept)
    return dict(info, classifier_kept=kept)


def load_inflated(model: nn.Module, state_dict: Dict[str, torch.Tensor], new_parts=()) -> None:
    """Load inflated 2D weights: every model key must be covered, except those containing one of
    ``new_parts`` (what the 2D network does not have; they keep their identity init)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and not any(p in k for p in new_parts)]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [f"{k}: {tuple(v.shape)} vs model {tuple(own[k].shape)}"
             for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{len(x)} {what} (first: {x[:5]})"
                 for what, x in (("missing", missing), ("unexpected", unexpected), ("mismatched", wrong)) if x]
        raise ValueError(f"cannot inflate into {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=False)


def adapt_input_conv(in_chans: int, weight: torch.Tensor, base_chans: int = 3) -> torch.Tensor:
    """timm's ``adapt_input_conv`` for stems of any rank (timm's takes 2D ``(O, I, H, W)`` only):
    the same rule, the input channels summed for ``in_chans=1``, else repeated and scaled by
    ``base_chans / in_chans``. A Conv3d ``(O, I, T, H, W)`` is adapted as ``(O, I, T * H, W)``."""
    if weight.dim() < 3:
        raise ValueError(f"adapt_input_conv: expected a convolution weight (O, I, ...), got {tuple(weight.shape)}")
    out = _adapt_2d(in_chans, weight.reshape(*weight.shape[:2], -1, weight.shape[-1]), base_chans=base_chans)
    return out.reshape(out.shape[0], out.shape[1], *weight.shape[2:])


def adapt_input_convs(state_dict: Dict[str, torch.Tensor], model: nn.Module, base_chans: int) -> List[str]:
    """Adapt the 3D stems named by the model's ``first_conv`` (str or tuple) from ``base_chans`` to the
    model's input channels in ``state_dict`` (in place), where timm's pretrained loading would drop
    them for random init; 2D stems are left to timm. Returns the adapted names."""
    names = getattr(model, "_traits", {}).get("first_conv", (getattr(model, "pretrained_cfg", None) or {}).get(
        "first_conv"))
    adapted = []
    for name in (names,) if isinstance(names, str) else names or ():
        key, target = f"{name}.weight", model.get_submodule(name).weight
        weight = state_dict.get(key)
        if (weight is None or weight.dim() < 5 or weight.shape == target.shape or weight.shape[1] != base_chans
                or weight.shape[:1] + weight.shape[2:] != target.shape[:1] + target.shape[2:]):
            continue  # nothing to do, or not an input-channel change: the load reports it
        state_dict[key] = adapt_input_conv(target.shape[1], weight, base_chans)
        adapted.append(name)
    return adapted
