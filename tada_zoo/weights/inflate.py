"""2D ImageNet weights -> video model weights, as the papers initialise their video models.

Each family file declares its rule (``FAMILY.inflate``): ResNet -> TSN / TAda2D
(``inflate_resnet``), ConvNeXt -> TAdaConvNeXt(V2) (``inflate_convnext``), CLIP ViT ->
TAdaFormer (``inflate_clip_vit``), ResNet -> R3D / R(2+1)D / SlowOnly. Parameters the 2D
network does not have (route functions, the aggregation's BN2) keep their identity
initialisation, so the inflated video model starts out as its 2D source applied frame by
frame (paper Sec. 3.2 and 4). ``inflate_to_folder`` writes the result as a Hub-ready folder
(``tada-zoo inflate``; for a tag such as ``.in1k_inflated``, into the weights folder).
"""
import os
from pathlib import Path
from typing import Dict, Optional, Union

import timm
import torch
import torch.nn as nn

from tada_zoo import __version__
from .hub import check_output_dir, save_converted, sha256_file
from tada_zoo.models import create_video_model, family, read_checkpoint, registered_cfg
from tada_zoo.models._helpers import classifier_keys
from tada_zoo.models._weights import converted_path
from tada_zoo.models.tada2d import inflate_resnet
from tada_zoo.models.tadaconvnext import inflate_convnext
from tada_zoo.models.tadaformer import inflate_clip_vit

__all__ = ["inflate", "inflate_resnet", "inflate_convnext", "inflate_clip_vit", "inflate_to_folder", "read_2d",
           "default_source"]

_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".pyth")


def inflate(model: nn.Module, state_dict_2d: Dict[str, torch.Tensor]) -> nn.Module:
    """Inflate 2D weights into ``model`` with its family's rule (in place, returns the model)."""
    rule = family(model).inflate
    if rule is None:
        raise ValueError(f"the {family(model).name} family declares no 2D inflation rule for {type(model).__name__}")
    return rule(model, state_dict_2d)


def default_source(name: str) -> Optional[str]:
    """The timm 2D model a tag's inflated weights are built from (``.in1k_inflated``: its
    ``origin_url`` on the Hub, e.g. ``convnext_tiny.fb_in1k``), or None."""
    from tada_zoo.models._weights import _timm_source

    return _timm_source(registered_cfg(name)) if "." in name else None


def _is_file_source(source: str) -> bool:
    return Path(source).exists() or "/" in source or os.sep in source or Path(source).suffix in _FILE_SUFFIXES


def read_2d(source: str) -> Dict[str, torch.Tensor]:
    """2D weights: a local file (read by the one checkpoint reader) or a timm model name
    (its pretrained weights, from the Hub or the HF cache)."""
    if _is_file_source(source):
        return read_checkpoint(source)[0]
    if not timm.is_model(source.split(".")[0]):
        raise ValueError(f"--source {source}: neither an existing 2D weights file nor a timm model name "
                         "(e.g. convnext_tiny.fb_in1k, resnet50.tv_in1k, vit_base_patch16_clip_quickgelu_224.openai)")
    return timm.create_model(source, pretrained=True).state_dict()


def inflate_to_folder(model_name: str, source: Optional[str] = None, output: Optional[Union[str, Path]] = None,
                      num_classes: Optional[int] = None, model_kwargs: Optional[dict] = None) -> Path:
    """Inflate 2D weights into ``model_name`` (``arch.tag`` or an architecture) and write the folder
    ``output`` (model.safetensors, config.json, model card; all or nothing).

    ``source``: a 2D weights file or timm model name (default: the tag's, e.g. timm's
    ``convnext_tiny.fb_in1k`` for ``.in1k_inflated``). ``output`` (default for a tag: its place in
    the weights folder, where ``pretrained=True`` finds it). ``num_classes``: default the tag's,
    else the 2D classifier's when it has the model's classifier name, else the model's.
    """
    source = source or default_source(model_name)
    if not source:
        raise ValueError(f"{model_name}: give --source (a 2D weights file or a timm model name)")
    if _is_file_source(source) and not Path(source).is_file():
        raise FileNotFoundError(f"--source {source} does not exist")
    if output is None:
        if "." not in model_name:
            raise ValueError("give --output (a new folder); only a tag has a place in the weights folder")
        output = converted_path(model_name).parent
    output = check_output_dir(output)  # before the expensive part
    kwargs = dict(model_kwargs or {})
    sd2d = read_2d(source)
    model = create_video_model(model_name, num_classes, **kwargs)
    classifier = (model.pretrained_cfg or {}).get("classifier")
    head = sd2d.get(f"{classifier}.weight") if isinstance(classifier, str) else None
    if num_classes is None and "." not in model_name and head is not None and head.dim() == 2 \
            and head.shape[0] != model.num_classes:  # keep the 2D classifier (the ImageNet classes)
        model = create_video_model(model_name, int(head.shape[0]), **kwargs)
    own, head_keys = model.state_dict(), classifier_keys(model)
    inflate(model, {k: v for k, v in sd2d.items() if k not in head_keys or v.shape == own[k].shape})
    is_file = _is_file_source(source)
    provenance = dict(source_file=Path(source).name if is_file else f"timm:{source}",
                      source_sha256=sha256_file(source) if is_file else "n/a (timm Hub weights)",
                      state_key="(2D weights, inflated)", converter=f"tada-zoo {__version__} (tada-zoo inflate)",
                      model_kwargs=kwargs)
    return save_converted(model.eval(), model_name, output, provenance)
