"""The one factory users' commands go through (timm's ``_factory``): a registered model from at most
one source of weights (the Hub or the weights folder, a local checkpoint, 2D weights to inflate), for
train, evaluate, extract and profile."""
import json
from pathlib import Path
from typing import Optional, Union

import timm
import torch.nn as nn
from timm.models import get_pretrained_cfg

from ._helpers import classifier_keys, load_checkpoint, read_checkpoint
from ._registry import check_model_name, family, is_tag, registered_tags
from ._weights import WEIGHTS_NAME, check_against_cfg

__all__ = ["create_video_model"]


def _pretrained_file(name: str, arch: str, value) -> tuple:
    """``pretrained=PATH``: ``(name whose cfg goes with it, weights file)``. The tag: ``name``'s, else
    a converted folder's config.json's, else the release whose original file has this name."""
    path = Path(value).expanduser()
    if not path.exists():
        tags = ", ".join(registered_tags(arch)) or "none"
        raise FileNotFoundError(f"--pretrained {value}: neither a tag of {arch} ({tags}) nor an existing .pyth / "
                                ".safetensors file or converted folder")
    tag = name.partition(".")[2]
    if path.is_dir():
        folder, path = path, path / WEIGHTS_NAME
        if not path.is_file():
            raise FileNotFoundError(f"--pretrained {value}: the folder has no {WEIGHTS_NAME} (expected a folder "
                                    "written by tada-zoo convert or tada-zoo inflate)")
        try:
            tag = tag or json.loads((folder / "config.json").read_text())["pretrained_cfg"].get("tag") or ""
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
    if not tag:
        tag = next((t for t in registered_tags(arch)
                    if getattr(get_pretrained_cfg(f"{arch}.{t}"), "original_file", None) == path.name), "")
    if tag and not is_tag(arch, tag):
        tag = ""  # a folder of another version's tag: the architecture's default cfg
    return (f"{arch}.{tag}" if tag else arch), path


def _build(name: str, pretrained: bool, **kwargs) -> nn.Module:
    """``timm.create_model``, with a misspelt model argument (``--model-kwargs``) named."""
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as e:  # a misspelt model argument ends up in the constructor
        if "unexpected keyword argument" not in str(e):
            raise
        raise ValueError(f"{name} takes no argument {str(e).split('argument')[-1].strip()} (from --model-kwargs "
                         "or a flag); see the model class's docstring for its arguments") from None


def _load_into(model: nn.Module, name: str, checkpoint, head: str, from_file: bool) -> None:
    info = load_checkpoint(model, checkpoint, head=head, context=(
        f"file: {checkpoint}; check --model (architecture and frame count), --num-classes and "
        "--model-kwargs against it"))
    kept = info["classifier_kept"]
    if from_file and "." in name:  # an original's stored config must agree with the release
        check_against_cfg(name, info["cfg"])
    if kept and head == "fit":
        print(f"{checkpoint}: classifier {kept} re-initialised for {model.num_classes} classes")


def _inflate_into(model: nn.Module, source: str) -> None:
    """2D ImageNet weights (a timm model name or a state-dict file) by the family's rule."""
    rule = family(model).inflate
    if rule is None:
        raise ValueError(f"--inflate-from: the {family(model).name} family has no 2D inflation rule")
    sd2d = read_checkpoint(source)[0] if Path(source).is_file() else \
        timm.create_model(source, pretrained=True).state_dict()
    head_keys = classifier_keys(model)  # the ImageNet classifier never fits the new head
    own = model.state_dict()
    rule(model, {k: v for k, v in sd2d.items() if k not in head_keys or v.shape == own[k].shape})


def create_video_model(
        name: str,
        num_classes: Optional[int] = None,
        pretrained: Optional[Union[bool, str]] = None,
        checkpoint: Optional[Union[str, Path]] = None,
        inflate_from: Optional[str] = None,
        head: str = "fit",
        **kwargs,
) -> nn.Module:
    """A registered model started from at most one source of weights.

    Args:
        name: registered architecture, optionally ``name.tag`` (ValueError listing ours if unknown).
        num_classes: classifier size (default: the cfg's).
        pretrained: ``True`` (the default tag of ``name``) or a tag: weights from the local
            weights folder (``$TADA_ZOO_HOME``) or the Hub; or a path: an original ``.pyth``, a
            ``.safetensors`` or a converted folder, with the cfg of ``name``'s tag (else the
            folder's, the release of that original file name, the default). The head is
            replaced when ``num_classes`` differs.
        checkpoint: a local ``.safetensors``, training checkpoint or original ``.pyth``, read
            and mapped by ``load_checkpoint`` with ``head``: ``"fit"`` (fine-tuning: a
            classifier of another size is re-initialised, and says so), ``"strict"``
            (evaluation: everything must fit) or ``"ignore"`` (features).
        inflate_from: a timm 2D ImageNet model name or a 2D state-dict file, inflated by the
            family's rule (``FAMILY.inflate``).
        kwargs: more model arguments (``num_frames``, ``drop_path_rate``, ...).
    """
    arch = name.split(":")[-1].split(".")[0]
    if not name.startswith(("hf-hub:", "local-dir:")):
        check_model_name(arch)
    if len([s for s in (pretrained, checkpoint, inflate_from) if s]) > 1:
        raise ValueError("give at most one of --pretrained, --checkpoint-init, --inflate-from")
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    from_file = isinstance(pretrained, (str, Path)) and str(pretrained) and not is_tag(arch, str(pretrained))
    if from_file:  # --pretrained PATH: loaded like a checkpoint, with the cfg of its release
        name, checkpoint, pretrained = *_pretrained_file(name, arch, pretrained), None
    elif isinstance(pretrained, str) and pretrained:
        name, pretrained = f"{arch}.{pretrained}", True
    model = _build(name, bool(pretrained), **kwargs)
    if checkpoint:
        _load_into(model, name, checkpoint, head, bool(from_file))
    elif inflate_from:
        _inflate_into(model, inflate_from)
    return model
